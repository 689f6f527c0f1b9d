"""What `blazefl sweep` costs over running its runs one by one with `blazefl run`.

The same N tiny runs (synthetic data, seeds 0..N-1, inline executor so the
two sides use the same single core) run

* as N separate ``blazefl run --seed k`` commands, one after another (what a
  shell loop does: each command starts Python and imports torch);
* as one ``blazefl sweep --seeds 0-(N-1) --parallel 1`` (one worker process
  imports torch once and runs the N runs; the sweep then writes summary.csv,
  summary.md and two figures).

Both sides are timed from the outside (wall clock of the whole command(s)),
alternating A B A B over ``--repeats``; the ratio is sweep / loop of the
medians. The final models are checked bit for bit: run k of the sweep equals
the k-th single run. The claim the issue asks for: the sweep costs no more
than the N single runs plus a small constant (the figures and the summary).

Run from the repository root (about 1-2 minutes on 2 cores)::

    .venv/bin/python benchmarks/sweep_overhead.py             # N=4, 3 repeats
    .venv/bin/python benchmarks/sweep_overhead.py --runs 8 --repeats 2

Results go to ``benchmarks/results/sweep_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = [
    "--clients", "6", "--rounds", "4", "--sample-ratio", "0.5", "--epochs", "1",
    "--executor", "inline", "--quiet",
]  # fmt: skip
RESULTS = Path(__file__).with_name("results")


def _blazefl(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    subprocess.run(
        [sys.executable, "-m", "blazefl.cli", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _loop(root: Path, n: int) -> float:
    start = time.perf_counter()
    for k in range(n):
        _blazefl("run", *RUN, "--seed", str(k), "--out", str(root / f"run{k}"))
    return time.perf_counter() - start


def _sweep(root: Path, n: int) -> float:
    start = time.perf_counter()
    _blazefl("sweep", *RUN, "--seeds", f"0-{n - 1}", "--out", str(root / "sweep"))
    return time.perf_counter() - start


def _same_models(root: Path, n: int) -> bool:
    import torch

    from blazefl.sim import load_checkpoint

    manifest = json.loads((root / "sweep" / "manifest.json").read_text())
    for k, entry in enumerate(manifest["runs"]):
        ours = load_checkpoint(root / "sweep" / entry["folder"] / "checkpoint.ckpt")
        theirs = load_checkpoint(root / f"run{k}" / "checkpoint.ckpt")
        if not torch.equal(
            ours["sim"]["handler"]["params"], theirs["sim"]["handler"]["params"]
        ):
            return False
    return len(manifest["runs"]) == n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loops, sweeps, same = [], [], True
    for _ in range(args.repeats):
        root = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
        try:
            loops.append(_loop(root, args.runs))
            sweeps.append(_sweep(root, args.runs))
            same = same and _same_models(root, args.runs)
        finally:
            shutil.rmtree(root)
    loop, sweep = statistics.median(loops), statistics.median(sweeps)
    result = {
        "runs": args.runs,
        "repeats": args.repeats,
        "cpus": len(os.sched_getaffinity(0)),
        "run_options": RUN,
        "loop_seconds": loops,
        "sweep_seconds": sweeps,
        "median_loop_seconds": round(loop, 3),
        "median_sweep_seconds": round(sweep, 3),
        "ratio_sweep_over_loop": round(sweep / loop, 3),
        "constant_seconds": round(sweep - loop, 3),
        "bitwise_equal_models": same,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        "| N runs | N x `blazefl run` (s) | `blazefl sweep` (s) | sweep / loop | "
        "models bitwise equal |\n|---|---|---|---|---|\n"
        f"| {args.runs} | {loop:.2f} | {sweep:.2f} | {sweep / loop:.2f} | {same} |\n"
    )
    (RESULTS / "sweep_overhead.md").write_text(table)
    print(table, end="")
    if not same:
        raise SystemExit("the sweep's models differ from the single runs'")


if __name__ == "__main__":
    main()
