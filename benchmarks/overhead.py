"""Overhead of blazefl.sim's executors against a hand-written FedAvg loop.

The same FedAvg workload (same sampled clients, same per-client RNG streams,
same batch order, same `blazefl.training.train` call, same server
aggregation and evaluation) runs

* through a *bare* loop written by hand, without `blazefl.sim`: a plain
  for-loop at parallelism 1, a `concurrent.futures.ThreadPoolExecutor(p)` with
  one cached model per thread at parallelism p > 1;
* through `Simulation` on `InlineExecutor` (p = 1), `ThreadExecutor(p)` and
  `ProcessExecutor(p)`.

Variants alternate within each repetition (A B C A B C ...). Every round is
timed on its own; round 1 (first touch, worker warm-up) is reported apart from
the median of rounds >= 2. The final global model of every run must equal the
bare loop's bit for bit, which the script asserts: that is what makes the
comparison one of overhead only.

The workload, the bare loop, the interleaved timing loop and the statistics
live in ``harness.py``, shared with ``matrix.py``.

Run from the repository root::

    .venv/bin/python benchmarks/overhead.py            # full run, 3-6 min
    .venv/bin/python benchmarks/overhead.py --quick    # smoke run, < 1 min

Results go to ``benchmarks/results/overhead.{json,md}`` (``overhead-quick.*``
with ``--quick``); ``--update-readme`` also rewrites the table in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import structlog
import torch
from harness import (
    HERE,
    PROCESS_TARGET,
    QUIET,
    THREAD_TARGET,
    Config,
    LoadMonitor,
    Run,
    Workload,
    later,
    machine_info,
    ms,
    paired,
    quantile,
    run_repeat,
    summarise,
    update_readme,
    variants,
)

from blazefl.reproducibility import set_torch_threads

TABLE_START = "<!-- overhead-table:start -->"
TABLE_END = "<!-- overhead-table:end -->"

# -- statistics ------------------------------------------------------------


def ratios(
    cfg: Config, runs: list[Run], medians: dict[str, Any]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(num: str, den: str, target: float | None) -> None:
        steady = paired(runs, num, den, first=False)
        first = paired(runs, num, den, first=True)
        calm = paired(runs, num, den, first=False, quiet=True)
        extra = paired(runs, num, den, first=False, op=lambda x, y: x - y)
        if not steady:
            return
        row: dict[str, Any] = {
            "ratio": f"{num} / {den}",
            "steady_median": statistics.median(steady),
            "steady_p25": quantile(steady, 0.25),
            "steady_p75": quantile(steady, 0.75),
            "steady_of_minima": medians[num]["steady_min_s"]
            / medians[den]["steady_min_s"],
            "round1_median": statistics.median(first),
            "quiet_median": statistics.median(calm) if calm else None,
            "quiet_count": len(calm),
            "extra_s_median": statistics.median(extra),
            "steady_pairs": steady,
            "target": target,
        }
        if target is not None:
            row["met"] = row["steady_median"] <= target
            row["met_quiet"] = (
                None if row["quiet_median"] is None else row["quiet_median"] <= target
            )
        rows.append(row)

    for p in cfg.workers:
        if p == 1:
            add("inline", "bare(1)", None)
        add(f"threads({p})", f"bare({p})", THREAD_TARGET)
        add(f"processes({p})", f"threads({p})", PROCESS_TARGET)
        add(f"processes({p})", f"bare({p})", None)
    if len(cfg.workers) > 1:
        lo, hi = min(cfg.workers), max(cfg.workers)
        add(f"bare({hi})", f"bare({lo})", None)
        add(f"processes({hi})", f"bare({lo})", None)
    return rows


# -- output ----------------------------------------------------------------


def markdown(
    cfg: Config,
    info: dict[str, Any],
    names: Sequence[str],
    medians: dict[str, Any],
    rows: list[dict[str, Any]],
    load: dict[str, Any],
) -> str:
    git = info.get("git") or {}
    commit = (git.get("commit") or "unknown commit")[:10]
    if git.get("src_modified"):
        commit += " + local changes to src"
    lines = [
        f"FedAvg, {cfg.model}, {cfg.clients} clients / {cfg.sampled} per round, "
        f"{cfg.samples_per_client} samples per client, {cfg.epochs} local "
        f"epoch(s), batch {cfg.batch_size}; {cfg.rounds} rounds x {cfg.repeats} "
        f"repetitions, rounds interleaved across variants; torch threads 1. "
        f"Machine: {info['cpu_affinity']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}"
        f"{' free-threaded' if info['free_threaded_build'] else ' (GIL)'}, "
        f"torch {info['torch']}, blazefl {info['blazefl']} "
        f"({commit}), {info['date']}.",
        "",
        "| variant | start-up ms | round 1 ms | rounds >= 2: median ms (p25-p75) "
        "| rounds >= 2: min ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for n in names:
        m = medians[n]
        lines.append(
            f"| {n} | {ms(m['startup_s'])} | {ms(m['round1_s'])} | "
            f"{ms(m['steady_s'])} ({ms(m['steady_p25_s'])}-{ms(m['steady_p75_s'])})"
            f" | {ms(m['steady_min_s'])} |"
        )
    lines += [
        "",
        "| ratio | rounds >= 2: paired median (p25-p75) | quiet rounds only (n) "
        "| ratio of minima | extra ms per round | round 1 | target | verdict: "
        "all rounds / quiet |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        target = row["target"]
        verdict = ""
        if target is not None:
            verdict = "PASS" if row["met"] else "MISS"
            if row["met_quiet"] is not None:
                verdict += " / " + ("PASS" if row["met_quiet"] else "MISS")
        limit = "" if target is None else f"<= {target:.2f}"
        quiet = (
            "-"
            if row["quiet_median"] is None
            else f"{row['quiet_median']:.3f} ({row['quiet_count']})"
        )
        lines.append(
            f"| {row['ratio']} | {row['steady_median']:.3f} "
            f"({row['steady_p25']:.3f}-{row['steady_p75']:.3f}) | {quiet} "
            f"| {row['steady_of_minima']:.3f} | {row['extra_s_median'] * 1e3:+.1f} "
            f"| {row['round1_median']:.3f} "
            f"| {limit} | {verdict} |"
        )
    lines += [
        "",
        "Paired ratio: the two variants' times for the same round of the same "
        "repetition (run in the same round-robin cycle), median over all "
        "rounds >= 2 of all repetitions; targets are checked on it. Quiet "
        f"rounds: only cycles in which other processes used <= {QUIET:.0%} of "
        "the CPUs. Ratio of minima: fastest round >= 2 of each, the least "
        "noise-prone estimate. Extra ms: paired median of the difference. "
        "Start-up is not part of any round.",
    ]
    if load["cycles"]:
        lines += [
            "",
            f"Other load during the run: median {load['median']:.0%}, max "
            f"{load['max']:.0%} of all CPUs per cycle; {load['quiet']} of "
            f"{load['cycles']} cycles quiet.",
        ]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run")
    parser.add_argument("--clients", type=int, default=30, help="clients in total")
    parser.add_argument("--sampled", type=int, default=10, help="clients per round")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--samples-per-client", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run (< 1 min on 2 cores)"
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="rewrite the table in benchmarks/README.md",
    )
    args = parser.parse_args(argv)
    if args.quick:
        rounds, repeats, epochs = args.rounds or 4, args.repeats or 1, 1
    else:
        rounds, repeats, epochs = args.rounds or 8, args.repeats or 5, args.epochs
    if rounds < 1 or repeats < 1 or not 1 <= args.sampled <= args.clients:
        parser.error("need rounds >= 1, repeats >= 1 and 1 <= sampled <= clients")
    if any(p < 1 for p in args.workers):
        parser.error("--workers must be >= 1")
    cfg = Config(
        rounds=rounds,
        clients=args.clients,
        sampled=args.sampled,
        repeats=repeats,
        workers=tuple(dict.fromkeys(args.workers)),
        model=args.model,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        samples_per_client=args.samples_per_client,
        seed=args.seed,
        quick=args.quick,
    )
    return cfg, args.update_readme


def main(argv: Sequence[str] | None = None) -> int:
    cfg, readme = parse_args(argv)
    # The coordinator logs every event at info; a benchmark keeps warnings only
    # (a GIL re-enabled warning, say) so that printing is not what is measured.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    set_torch_threads(1)
    info = machine_info()
    info["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    wl = Workload(cfg)
    plan = variants(cfg)
    names = [n for n, _ in plan]
    print(
        f"overhead: {', '.join(names)}; {cfg.rounds} rounds x {cfg.repeats} "
        f"repetitions on {info['cpu_affinity']} CPUs",
        flush=True,
    )

    runs: list[Run] = []
    reference: list[torch.Tensor] = []
    monitor = LoadMonitor()
    began = time.perf_counter()
    for repeat in range(cfg.repeats):
        batch = run_repeat(wl, plan, repeat, reference, monitor)
        runs.extend(batch)
        for run in batch:
            print(
                f"  rep {repeat} {run.variant:>14}: start {ms(run.startup_s):>7} ms,"
                f" round 1 {ms(run.rounds_s[0]):>7} ms, rounds>=2 median "
                f"{ms(statistics.median(later(run))):>7} ms",
                flush=True,
            )
    elapsed = time.perf_counter() - began
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    medians = summarise(runs, names)
    rows = ratios(cfg, runs, medians)
    cycles = [
        f for r in runs if r.variant == names[0] for f in r.foreign if f is not None
    ]
    load = {
        "cycles": len(cycles),
        "median": statistics.median(cycles) if cycles else None,
        "max": max(cycles) if cycles else None,
        "quiet": sum(f <= QUIET for f in cycles),
        "quiet_threshold": QUIET,
    }
    table = markdown(cfg, info, names, medians, rows, load)
    print()
    print(table)

    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stem = "overhead-quick" if cfg.quick else "overhead"
    result = {
        "machine": info,
        "config": asdict(cfg),
        "elapsed_s": elapsed,
        "bitwise_identical": True,
        "variants": names,
        "runs": [
            {
                "variant": r.variant,
                "repeat": r.repeat,
                "startup_s": r.startup_s,
                "rounds_s": r.rounds_s,
                "close_s": r.close_s,
                "foreign_load": r.foreign,
            }
            for r in runs
        ],
        "other_load": load,
        "medians": medians,
        "ratios": rows,
        "targets": {
            row["ratio"]: {
                "target": row["target"],
                "met": row["met"],
                "met_quiet_rounds": row["met_quiet"],
            }
            for row in rows
            if row["target"] is not None
        },
    }
    (out_dir / f"{stem}.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8"
    )
    (out_dir / f"{stem}.md").write_text(table, encoding="utf-8")
    if readme:
        update_readme(table, TABLE_START, TABLE_END)
    print(f"wrote {out_dir / stem}.json/.md in {elapsed:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
