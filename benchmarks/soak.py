"""Soak: many rounds of a tiny federation per local executor; RSS, threads and
open file descriptors must stay flat.

Each executor (``InlineExecutor()``, ``ThreadExecutor(2)``,
``ProcessExecutor(2)``) runs in a fresh child interpreter, so one run's
leftovers cannot bias the next. The child runs what a real user runs, so a
leak anywhere on that path shows: FedAvg through `FederatedServer` /
`FederatedClient` (a tiny MLP on `SyntheticPartitionedDataset`, 8 clients,
4 sampled a round, server evaluation every round), one `sim.events()`
subscriber reading every event, structlog configured for JSON lines into a
file, and a checkpoint written every ``--checkpoint-every`` rounds.

Between rounds (nothing in flight) every ``--sample-every`` rounds it reads
the whole process tree with `procmon.tree_sample`: summed RSS, threads, open
fds and process count (worker processes included), plus the number of
objects the parent's garbage collector tracks. Over the second half of the
run (the first half is warm-up: allocator arenas, caches, lazily started
threads) it fits a least-squares line per metric and reports the slope per
1,000 rounds. Verdict (see `FLAT` and benchmarks/README.md for why):

* RSS: slope <= 3 MiB per 1,000 rounds (judged when that half spans at
  least `MIN_RSS_WINDOW` rounds, so not with ``--quick``);
* threads and fds: the fitted drift over the second half within +-1 in total.

Run from the repository root::

    .venv/bin/python benchmarks/soak.py              # 1,000 rounds each, minutes
    .venv/bin/python benchmarks/soak.py --quick      # 100 rounds each
    .venv/bin/python benchmarks/soak.py --rounds 5000 --executors threads
    .venv/bin/python benchmarks/soak.py --update-readme   # ... and README's table

Results go to ``benchmarks/results/soak.{json,md}`` (``soak-quick.*`` with
``--quick``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EXECUTORS = ("inline", "threads", "processes")

#: Verdict thresholds. RSS: the smallest leak worth catching is one copy of
#: this model's parameter vector per round (1,738 float32 = 6.8 KiB, i.e.
#: 6.6 MiB per 1,000 rounds); the limit is under half of that, and well
#: above what glibc's arenas wander by on a flat run. Threads and fds are
#: counts: a leak is a steady +1 per N rounds, so the fitted line may drift
#: by less than one over the measured half (a thread that anyio's pool
#: retires and respawns between samples is not a trend).
FLAT = {"rss_mib_per_1000": 3.0, "threads_total": 1.0, "fds_total": 1.0}
#: RSS is only judged over a window at least this long: with ProcessExecutor
#: the tree's RSS still creeps up, ever slower, for the first ~300 rounds
#: (allocator arenas and page touches in three processes), which a 50-round
#: window (``--quick``) would read as a slope. Threads and fds are judged always.
MIN_RSS_WINDOW = 400


# -- the measured child ---------------------------------------------------------


def _executor(kind: str) -> Any:
    from blazefl.sim import InlineExecutor, ProcessExecutor, ThreadExecutor

    if kind == "inline":
        return InlineExecutor()
    if kind == "threads":
        return ThreadExecutor(2)
    return ProcessExecutor(2)


def child(
    kind: str, rounds: int, sample_every: int, checkpoint_every: int
) -> dict[str, Any]:
    """Run the soak for one executor in this interpreter; return its samples."""
    import anyio
    import torch
    from procmon import tree_sample

    from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
    from blazefl.data import SyntheticPartitionedDataset
    from blazefl.models import ModelZoo
    from blazefl.reproducibility import set_torch_threads
    from blazefl.sim import (
        ClientFailed,
        RoundFinished,
        Simulation,
        configure_logging,
        save_checkpoint,
    )

    set_torch_threads(1)
    shape = (1, 4, 4)
    data = SyntheticPartitionedDataset(
        8, seed=0, image_shape=shape, samples_per_client=32, test_samples=64
    )
    zoo = ModelZoo(input_shape=shape, num_classes=10)
    algorithm = FedAvg()
    server = FederatedServer(
        algorithm,
        zoo,
        "mlp",
        dataset=data,
        num_clients=8,
        rounds=rounds,
        sample_ratio=0.5,
        seed=0,
    )
    client = FederatedClient(algorithm, zoo, "mlp", data, epochs=1, batch_size=16)
    sim = Simulation(server, client, executor=_executor(kind), seed=0)
    params = int(server.params.numel())

    work = Path(tempfile.mkdtemp(prefix=f"blazefl-soak-{kind}-"))
    log_path = work / "log.jsonl"
    samples: list[dict[str, Any]] = []
    seen = {"events": 0, "round_finished": 0, "client_failed": 0}
    round_seconds: list[float] = []
    pid = os.getpid()
    t0 = time.perf_counter()

    def sample(done: int) -> None:
        s = tree_sample(pid, time.perf_counter() - t0)
        if s is None:
            raise SystemExit("soak.py needs Linux /proc")
        samples.append(
            {
                "round": done,
                "t": round(s.t, 3),
                "rss_mib": round(s.rss_mib, 3),
                "threads": s.threads,
                "fds": s.fds,
                "processes": s.processes,
                "py_objects": len(gc.get_objects()),
            }
        )

    async def consume(stream: Any) -> None:
        # A progress display would do this: read every event as it comes.
        async with stream:
            async for event in stream:
                seen["events"] += 1
                if isinstance(event, RoundFinished):
                    seen["round_finished"] += 1
                elif isinstance(event, ClientFailed):
                    seen["client_failed"] += 1

    async def main() -> None:
        # The subscriber's task outlives the simulation: closing it ends the
        # stream, and the task group then waits for the last events.
        async with anyio.create_task_group() as tg, sim:
            tg.start_soon(consume, sim.events())
            sample(0)
            for done in range(1, rounds + 1):
                start = time.perf_counter()
                await sim.run_round()
                round_seconds.append(time.perf_counter() - start)
                if done % checkpoint_every == 0:
                    save_checkpoint(work / "checkpoint.ckpt", sim.state_dict())
                if done % sample_every == 0:
                    sample(done)

    with log_path.open("w", encoding="utf-8") as log_file:
        configure_logging("json", level="info", stream=log_file)
        started = time.perf_counter()
        anyio.run(main)
        seconds = time.perf_counter() - started
    log_lines = sum(1 for _ in log_path.open(encoding="utf-8"))
    log_bytes = log_path.stat().st_size
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    assert server.round == rounds, (server.round, rounds)
    assert seen["round_finished"] == rounds, seen
    return {
        "executor": kind,
        "describe": sim.executor.describe(),
        "rounds": rounds,
        "model_parameters": params,
        "seconds": seconds,
        "round_ms_median": 1000 * statistics.median(round_seconds),
        "events": seen,
        "log_lines": log_lines,
        "log_bytes": log_bytes,
        "final_accuracy": float(server.get_summary()["server_acc"]),
        "torch": torch.__version__,
        "samples": samples,
    }


# -- analysis ---------------------------------------------------------------------


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    """Slopes per 1,000 rounds over the second half, and the verdicts."""
    half = run["rounds"] / 2
    tail = [s for s in run["samples"] if s["round"] >= half]
    xs = [s["round"] for s in tail]
    span = xs[-1] - xs[0]
    out: dict[str, Any] = {"window": [xs[0], xs[-1]], "points": len(tail)}
    for key in ("rss_mib", "threads", "fds", "processes", "py_objects"):
        ys = [s[key] for s in tail]
        per_round = slope(xs, ys)
        out[key] = {
            "slope_per_1000": 1000 * per_round,
            "drift_over_window": per_round * span,
            "min": min(ys),
            "max": max(ys),
            "first": ys[0],
            "last": ys[-1],
        }
    checks = {
        "rss": out["rss_mib"]["slope_per_1000"] <= FLAT["rss_mib_per_1000"]
        if span >= MIN_RSS_WINDOW
        else None,
        "threads": abs(out["threads"]["drift_over_window"]) <= FLAT["threads_total"],
        "fds": abs(out["fds"]["drift_over_window"]) <= FLAT["fds_total"],
    }
    out["checks"] = checks
    out["flat"] = all(ok is not False for ok in checks.values())
    return out


# -- output ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import blazefl

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=HERE.parent,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "src")
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "blazefl": getattr(blazefl, "__version__", "unknown"),
        "commit": git("rev-parse", "--short=10", "HEAD"),
        "src_modified": bool(dirty) if dirty is not None else None,
        "loadavg_start": os.getloadavg(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def markdown(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        f"# Soak: {cfg['rounds']} rounds per executor",
        "",
        f"FedAvg, MLP of {report['runs'][0]['model_parameters']} parameters on "
        "1x4x4 synthetic images, 8 clients / 4 per round, 32 samples each, 1 "
        "epoch, batch 16, server evaluation every round; one event subscriber, "
        f"JSON logs to a file, a checkpoint every {cfg['checkpoint_every']} "
        f"rounds; the process tree sampled every {cfg['sample_every']} rounds. "
        f"Machine: {m['cpu_count']} CPUs, Python {m['python']}"
        f"{' (free-threaded)' if m['free_threaded_build'] else ''}, torch "
        f"{report['runs'][0]['torch']}, blazefl {m['blazefl']} ({m['commit']}"
        f"{', src modified' if m['src_modified'] else ''}), {m['date']}.",
        "",
        "Slopes: least squares over the second half of the run (rounds "
        f">= {cfg['rounds'] // 2}), per 1,000 rounds. Flat: RSS <= "
        f"{FLAT['rss_mib_per_1000']:g} MiB per 1,000 rounds (judged on windows "
        f"of >= {MIN_RSS_WINDOW} rounds); threads and fds drift within +-1 over "
        "that half.",
        "",
        "| executor | wall s | round ms (median) | RSS MiB start / end | "
        "RSS slope MiB/1k | threads (range) | threads slope /1k | fds (range) "
        "| fds slope /1k | processes | GC objects slope /1k | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    for run in report["runs"]:
        a = run["analysis"]
        first, last = run["samples"][0], run["samples"][-1]
        failed = [k for k, ok in a["checks"].items() if ok is False]
        verdict = "PASS" if a["flat"] else "FAIL (" + ", ".join(failed) + ")"
        if a["checks"]["rss"] is None:
            verdict += " (RSS not judged: window too short)"
        lines.append(
            f"| {run['executor']} | {run['seconds']:.1f} | "
            f"{run['round_ms_median']:.1f} | {first['rss_mib']:.1f} / "
            f"{last['rss_mib']:.1f} | {a['rss_mib']['slope_per_1000']:+.2f} | "
            f"{a['threads']['min']}-{a['threads']['max']} | "
            f"{a['threads']['slope_per_1000']:+.2f} | "
            f"{a['fds']['min']}-{a['fds']['max']} | "
            f"{a['fds']['slope_per_1000']:+.2f} | {last['processes']} | "
            f"{a['py_objects']['slope_per_1000']:+.0f} | {verdict} |"
        )
    lines += [
        "",
        "Events seen by the subscriber, log lines written: "
        + "; ".join(
            f"{r['executor']}: {r['events']['events']} events, "
            f"{r['log_lines']} log lines ({r['log_bytes'] / 2**20:.1f} MiB)"
            for r in report["runs"]
        )
        + ".",
        "",
        f"Overall: {'PASS' if report['flat'] else 'FAIL'}.",
    ]
    return "\n".join(lines) + "\n"


def update_readme(report: dict[str, Any]) -> None:
    """Put the table of `markdown` between the soak markers of README.md."""
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = "<!-- soak-table:start -->", "<!-- soak-table:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} section")
    body = markdown(report).split("\n", 2)[2].strip()  # without the title
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(f"{head}{start}\n{body}\n{end}{tail}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="default 1000")
    parser.add_argument(
        "--quick", action="store_true", help="100 rounds; writes soak-quick.*"
    )
    parser.add_argument(
        "--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS)
    )
    parser.add_argument(
        "--sample-every", type=int, default=None, help="default rounds // 100"
    )
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="also put the table into benchmarks/README.md",
    )
    parser.add_argument("--child", choices=EXECUTORS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 100 if args.quick else 1000
    if args.rounds < 20:
        parser.error(f"--rounds must be >= 20, got {args.rounds}")
    if args.sample_every is None:
        args.sample_every = max(1, args.rounds // 100)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        run = child(args.child, args.rounds, args.sample_every, args.checkpoint_every)
        args.child_out.write_text(json.dumps(run))
        return 0
    runs = []
    for kind in args.executors:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run.json"
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                kind,
                "--child-out",
                str(out),
                "--rounds",
                str(args.rounds),
                "--sample-every",
                str(args.sample_every),
                "--checkpoint-every",
                str(args.checkpoint_every),
            ]
            print(f"soak: {kind}, {args.rounds} rounds ...", flush=True)
            subprocess.run(command, check=True)
            run = json.loads(out.read_text())
        run["analysis"] = analyse(run)
        a = run["analysis"]
        print(
            f"  {run['seconds']:.1f} s; RSS {a['rss_mib']['slope_per_1000']:+.2f} "
            f"MiB/1k, threads {a['threads']['slope_per_1000']:+.2f}/1k, fds "
            f"{a['fds']['slope_per_1000']:+.2f}/1k: "
            f"{'PASS' if a['flat'] else 'FAIL'}",
            flush=True,
        )
        runs.append(run)
    report = {
        "machine": machine(),
        "config": {
            "rounds": args.rounds,
            "sample_every": args.sample_every,
            "checkpoint_every": args.checkpoint_every,
            "executors": args.executors,
            "thresholds": {**FLAT, "min_rss_window_rounds": MIN_RSS_WINDOW},
        },
        "runs": runs,
        "flat": all(r["analysis"]["flat"] for r in runs),
    }
    stem = "soak-quick" if args.quick else "soak"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(report))
    if args.update_readme:
        update_readme(report)
    print(markdown(report))
    return 0 if report["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
