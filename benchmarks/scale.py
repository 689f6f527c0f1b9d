"""Scale: a million registered clients, and 10,000 clients in one round.

Two questions (from the issue tracker):

1. Does memory follow the clients *sampled*, not the clients *registered*? A
   federation of 1,000 or 1,000,000 registered clients samples 100 a round for
   ``--rounds`` rounds, with client states in memory (`MemoryStateStore`, the
   default) or in a SQLite file (``Simulation(client_state_path=...)``).
2. Do 10,000 clients in one round complete on the thread and process
   executors, and what does a round cost?

The workload is deliberately tiny (linear regression, 8 samples generated
from the client id, two gradient steps; see ``tests/sim/scale_fakes.py``, which
the tests share) so that what is measured is the coordinator: sampling, the
per-client RNG suites and states, scheduling, results and aggregation. Each
case runs in its own process, whose whole process tree (workers included) is
sampled by `procmon.TreeMonitor` for peak RSS; the case reports its per-round
times. Logging is set to warnings, as a large run would.

Run from the repository root::

    .venv/bin/python benchmarks/scale.py            # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/scale.py --quick    # under a minute

Results go to ``benchmarks/results/scale.{json,md}`` (``scale-quick.*`` with
``--quick``); ``--update-readme`` also rewrites the table in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "sim"), str(ROOT / "tests")]

from procmon import TreeMonitor, tree_sample  # noqa: E402

README_START = "<!-- scale-table:start -->"
README_END = "<!-- scale-table:end -->"


# -- one case, in its own process --------------------------------------------


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration here and return its per-round times."""
    import anyio
    import structlog
    from scale_fakes import TinyHandler, TinyWork
    from sim_fakes import quick_processes

    from blazefl.sim import InlineExecutor, Simulation, ThreadExecutor

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    executor = {
        "inline": InlineExecutor,
        "threads": lambda: ThreadExecutor(case["workers"]),
        "processes": lambda: quick_processes(case["workers"]),
    }[case["executor"]]()
    handler = TinyHandler(case["registered"], case["per_round"], case["rounds"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clients.sqlite" if case["store"] == "disk" else None
        sim = Simulation(
            handler, TinyWork(), executor=executor, seed=1, client_state_path=path
        )
        rss: list[float] = []

        async def main() -> list[Any]:
            results = []
            async with sim:
                while not handler.is_stopped():
                    results.append(await sim.run_round())
                    sample = tree_sample(os.getpid())
                    rss.append(sample.rss_mib if sample else float("nan"))
            return results

        start = time.perf_counter()
        results = anyio.run(main)
        total = time.perf_counter() - start
        stored = len(sim._runner.states)
        disk_mib = path.stat().st_size / 2**20 if path is not None else None
    return {
        "round_s": [r.seconds for r in results],
        "rss_after_round_mib": rss,
        "total_s": total,
        "clients_with_state": stored,
        "store_file_mib": disk_mib,
        "weights_norm": float(handler.params.norm()),
    }


def measure(case: dict[str, Any]) -> dict[str, Any]:
    """Run ``case`` in a child process, sampling its process tree."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(case)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    with TreeMonitor(proc.pid, interval=0.05) as child:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    rounds = result["round_s"]
    steady = rounds[1:] or rounds
    after = result["rss_after_round_mib"]
    return {
        **case,
        **result,
        "round1_s": rounds[0],
        "median_round_s": statistics.median(steady),
        "per_client_ms": 1000 * statistics.median(steady) / case["per_round"],
        "peak_rss_mib": child.peak_rss_mib,
        "rss_slope_mib_per_100_rounds": (
            100 * slope(after[1:]) if len(after) > 2 else None
        ),
    }


def slope(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    n = len(values)
    mx, my = (n - 1) / 2, statistics.fmean(values)
    sxx = sum((x - mx) ** 2 for x in range(n))
    return sum((x - mx) * (y - my) for x, y in enumerate(values)) / sxx


# -- the suite ---------------------------------------------------------------


def cases(quick: bool, rounds: int) -> list[dict[str, Any]]:
    registered_rounds = 10 if quick else rounds
    out = [
        {
            "question": "registered",
            "registered": registered,
            "per_round": 100,
            "rounds": registered_rounds,
            "executor": "threads",
            "workers": 2,
            "store": store,
        }
        for store in ("memory", "disk")
        for registered in (1_000, 1_000_000)
    ]
    per_round = 2_000 if quick else 10_000
    out += [
        {
            "question": "per_round",
            "registered": 2 * per_round,
            "per_round": per_round,
            "rounds": 2 if quick else 3,
            "executor": kind,
            "workers": 2,
            "store": "memory",
        }
        for kind in ("threads", "processes")
    ]
    return out


def markdown(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"Tiny linear-regression FedAvg; ThreadExecutor(2) unless stated; logging at "
        f"warnings. Machine: {info['cpus']} CPUs, Python {info['python']}, torch "
        f"{info['torch']}, blazefl {info['blazefl']} ({info['commit'][:10]}), "
        f"{info['when']}.",
        "",
        "**Registered vs sampled** (100 clients a round):",
        "",
        "| registered | client states | rounds | clients with state | peak RSS MiB "
        "| RSS slope MiB/100 rounds | store file MiB | median round ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines.extend(
        f"| {r['registered']:,} | {r['store']} | {r['rounds']} "
        f"| {r['clients_with_state']:,} | {r['peak_rss_mib']:.0f} "
        f"| {num(r['rss_slope_mib_per_100_rounds'], '.1f')} "
        f"| {num(r['store_file_mib'], '.1f')} "
        f"| {1000 * r['median_round_s']:.0f} |"
        for r in rows
        if r["question"] == "registered"
    )
    lines += [
        "",
        "**Clients per round**:",
        "",
        "| executor | clients per round | round 1 s | median round s (rounds >= 2) "
        "| per client ms | peak RSS MiB (all processes) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines.extend(
        f"| {r['executor']}({r['workers']}) | {r['per_round']:,} "
        f"| {r['round1_s']:.1f} | {r['median_round_s']:.1f} "
        f"| {r['per_client_ms']:.2f} | {r['peak_rss_mib']:.0f} |"
        for r in rows
        if r["question"] == "per_round"
    )
    return "\n".join(lines) + "\n"


def update_readme(table: str) -> None:
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = text.index(README_START), text.index(README_END)
    readme.write_text(text[: start + len(README_START)] + "\n" + table + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument(
        "--rounds", type=int, default=40, help="rounds of the registered cases"
    )
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    from harness import run_info  # imports torch: the parent only

    info = run_info()
    rows = []
    for case in cases(args.quick, args.rounds):
        row = measure(case)
        rows.append(row)
        print(
            f"{case['question']}: {case['executor']} registered={case['registered']:,} "
            f"per_round={case['per_round']:,} store={case['store']}: peak RSS "
            f"{row['peak_rss_mib']:.0f} MiB, median round {row['median_round_s']:.2f}s",
            flush=True,
        )
    stem = "scale-quick" if args.quick else "scale"
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{stem}.json").write_text(
        json.dumps({"machine": info, "rows": rows}, indent=2) + "\n"
    )
    table = markdown(info, rows)
    (out / f"{stem}.md").write_text(table)
    print(table)
    if args.update_readme:
        update_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
