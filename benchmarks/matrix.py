"""The benchmark matrix: executors x workers x workloads x interpreters (+ Flower).

One command measures blazefl.sim's executors (inline, threads, processes) at
1 and 2 workers (``--workers 1 2 4`` where cores allow) on three FedAvg
workloads, on the GIL interpreter (``.venv``) and on free-threaded CPython
(``.venv-ft``), always next to the bare hand-written loop doing the same
arithmetic in the same interpreter (`harness.Bare`), and optionally a Flower
simulation of the same workload (``--flower``, ``.venv-flower``):

* ``cnn``: the small CNN of `overhead.py`;
* ``resnet18``: ResNet-18 (11.2 M parameters, 45 MB per payload) on 3x32x32
  images with two samples per client, so moving and averaging parameters is
  a large share of each round (communication-heavy);
* ``mlp-b1``: a small MLP at batch size 1: per-step Python overhead dominates,
  for the free-threaded scaling target.

Each (interpreter, workload) is one *cell*, a child process of that
interpreter (``<python> benchmarks/matrix.py --cell ...``). A cell first runs
each variant alone in a forked child, sampling the peak RSS of all its
processes (`harness.measure_memory`), then times the variants with their
rounds interleaved, exactly as `overhead.py` does (`harness.run_repeat`:
rotating order, every round timed, round 1 apart, medians of rounds >= 2,
final models checked bit for bit against the bare loop). The Flower cell
(`flower_app.py --cell`) alternates whole Flower runs with bare-loop runs.

Targets (reported PASS/MISS, never asserted): threads(p) within 1.05x of
bare(p); processes(p) within 1.3x of threads(p) from round 2; blazefl faster
than Flower on cnn and resnet18; on free-threaded Python, threads' speedup
from 1 to 2 workers on ``mlp-b1`` at least the GIL build's. The two ratio
targets also get the 95% bootstrap interval of their median and a verdict
that allows for the run's noise (PASS, within noise, MISS: `matrix_ci.py`).

Run from the repository root::

    .venv/bin/python benchmarks/matrix.py --quick           # smoke run, < 3 min
    .venv/bin/python benchmarks/matrix.py --flower --update-readme   # ~20 min
    .venv/bin/python benchmarks/matrix.py --render saved.json --stem again

Results: ``benchmarks/results/matrix.{json,csv,md,png}`` (``matrix-quick.*``
with ``--quick``, ``<stem>.*`` with ``--stem``); ``--update-readme`` rewrites
the marked table in ``benchmarks/README.md``. ``--render`` analyses and
writes a saved matrix JSON again, running nothing.

This file is the command line and the driver; the rest is in
``matrix_workloads.py`` (the workloads, and a cell), ``matrix_analysis.py``
(the numbers), ``matrix_ci.py`` (their intervals), ``matrix_report.py`` (the
Markdown and the CSV) and ``matrix_chart.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from harness import HERE, update_readme
from matrix_analysis import analyse
from matrix_chart import chart
from matrix_report import markdown, write_csv
from matrix_workloads import (
    FLOWER_WORKLOADS,
    LABELS,
    WORKLOADS,
    run_cell,
    workload_config,
)

ROOT = HERE.parent
RESULTS = HERE / "results"
TABLE_START = "<!-- matrix-table:start -->"
TABLE_END = "<!-- matrix-table:end -->"


# -- the driver ----------------------------------------------------------------


def _free_threaded(python: Path) -> bool:
    try:
        done = subprocess.run(
            [
                str(python),
                "-c",
                "import sysconfig; print(sysconfig.get_config_var('Py_GIL_DISABLED'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout.strip() == "1"


def _launch(cmd: list[str], what: str) -> dict[str, Any] | None:
    """Run a cell in its own interpreter; its JSON, or None when it failed."""
    with tempfile.TemporaryDirectory(prefix="blazefl-matrix-") as tmp:
        out = Path(tmp) / "cell.json"
        print(f"== {what}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([*cmd, "--json-out", str(out)], cwd=ROOT)
        if code != 0 or not out.exists():
            print(f"== {what}: FAILED (exit {code})", flush=True)
            return None
        print(f"== {what}: {time.perf_counter() - t0:.0f} s", flush=True)
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, < 3 min")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS)
    )
    parser.add_argument("--rounds", type=int, help="override every workload's rounds")
    parser.add_argument("--repeats", type=int, help="override every workload's repeats")
    parser.add_argument(
        "--memory-rounds",
        type=int,
        help="rounds of each variant's solo memory run (default 2, quick 1; 0: skip)",
    )
    parser.add_argument(
        "--gil-python",
        type=Path,
        default=Path(sys.executable),
        help="the GIL interpreter (default: this one)",
    )
    parser.add_argument(
        "--ft-python",
        type=Path,
        default=ROOT / ".venv-ft/bin/python",
        help="the free-threaded interpreter (scripts/provision-free-threaded.sh)",
    )
    parser.add_argument("--no-ft", action="store_true", help="skip free-threaded cells")
    parser.add_argument(
        "--no-gil", action="store_true", help="skip the GIL build's cells"
    )
    parser.add_argument(
        "--flower",
        action="store_true",
        help="add the Flower column (needs scripts/provision-flower.sh)",
    )
    parser.add_argument(
        "--flower-python", type=Path, default=ROOT / ".venv-flower/bin/python"
    )
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="redo analysis, tables and chart from a saved matrix.json; run nothing",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--stem",
        help="the output files' name (default: matrix, or matrix-quick)",
    )
    # A cell, run by the driver in the interpreter under test.
    parser.add_argument("--cell", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(p < 1 for p in args.workers):
        parser.error("--workers must be >= 1")
    args.workers = sorted(set(args.workers))
    if args.memory_rounds is None:
        args.memory_rounds = 1 if args.quick else 2
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cell:
        from harness import config_from_json

        run_cell(config_from_json(args.config_json), args.memory_rounds, args.json_out)
        return 0

    if args.render:
        saved = json.loads(args.render.read_text(encoding="utf-8"))
        write_outputs(analyse(saved), args)
        return 0

    from harness import machine_info

    began = time.perf_counter()
    skipped: list[str] = []
    interpreters: list[tuple[str, Path]] = []
    if args.no_gil:
        skipped.append("GIL cells (--no-gil).")
    else:
        interpreters.append(("GIL", args.gil_python))
    if args.no_ft:
        skipped.append("free-threaded cells (--no-ft).")
    elif not args.ft_python.exists():
        skipped.append(
            f"free-threaded cells: {args.ft_python} does not exist; run "
            "scripts/provision-free-threaded.sh or pass --ft-python."
        )
    elif not _free_threaded(args.ft_python):
        skipped.append(f"free-threaded cells: {args.ft_python} is not free-threaded.")
    else:
        interpreters.append(("FT", args.ft_python))
    flower_workloads = [w for w in args.workloads if w in FLOWER_WORKLOADS]
    if args.flower and not args.flower_python.exists():
        skipped.append(
            f"Flower column: {args.flower_python} does not exist; run "
            "scripts/provision-flower.sh first."
        )
        flower_workloads = []
    elif not args.flower:
        flower_workloads = []
    for note in skipped:
        print(f"matrix: skipping {note}", flush=True)

    configs = {
        w: workload_config(w, args.workers, args.quick, args.rounds, args.repeats)
        for w in args.workloads
    }
    raw: list[dict[str, Any]] = []
    for w in args.workloads:
        for label, python in interpreters:
            cell = _launch(
                [
                    str(python),
                    str(HERE / "matrix.py"),
                    "--cell",
                    "--config-json",
                    json.dumps(asdict(configs[w])),
                    "--memory-rounds",
                    str(args.memory_rounds),
                ],
                f"{w} on {LABELS[label]} ({python})",
            )
            if cell is None:
                skipped.append(f"{w} on {LABELS[label]}: the cell failed (see log).")
                continue
            cell.update(workload=w, interpreter=label)
            raw.append(cell)
    flower_raw: dict[str, Any] = {}
    for w in flower_workloads:
        # Flower's runs are whole simulations (start-up 10-20 s each): three
        # repetitions at most.
        cfg = replace(configs[w], repeats=min(configs[w].repeats, 3))
        cell = _launch(
            [
                str(args.flower_python),
                str(HERE / "flower_app.py"),
                "--cell",
                "--config-json",
                json.dumps(asdict(cfg)),
            ],
            f"{w} on Flower ({args.flower_python})",
        )
        if cell is None:
            skipped.append(f"Flower on {w}: the cell failed (see log).")
            continue
        flower_raw[w] = cell

    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "workers": args.workers,
        "workloads": args.workloads,
        "machine": machine_info(),
        "configs": {w: asdict(c) for w, c in configs.items()},
        "skipped": skipped,
        "elapsed_s": time.perf_counter() - began,
        "cells": raw,
        "flower_cells": flower_raw,
    }
    write_outputs(analyse(result), args)
    return 0


def write_outputs(result: dict[str, Any], args: argparse.Namespace) -> None:
    """matrix.{json,csv,md,png}, and the README table with --update-readme."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = args.stem or ("matrix-quick" if result["quick"] else "matrix")
    stem = args.out_dir / name
    # The measurements first: a report that fails must not lose them.
    Path(f"{stem}.json").write_text(
        json.dumps(result, indent=1) + "\n", encoding="utf-8"
    )
    table = markdown(result)
    Path(f"{stem}.md").write_text(table, encoding="utf-8")
    write_csv(result, Path(f"{stem}.csv"))
    try:
        chart(result, Path(f"{stem}.png"))
    except ImportError:
        print("matrix: matplotlib is missing; no chart (pip install matplotlib)")
    if args.update_readme:
        update_readme(table, TABLE_START, TABLE_END)
    print()
    print(table)
    print(f"wrote {stem}.{{json,csv,md,png}} in {result['elapsed_s'] / 60:.1f} min")


if __name__ == "__main__":
    raise SystemExit(main())
