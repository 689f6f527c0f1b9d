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
from 1 to 2 workers on ``mlp-b1`` at least the GIL build's.

Run from the repository root::

    .venv/bin/python benchmarks/matrix.py --quick           # smoke run, < 3 min
    .venv/bin/python benchmarks/matrix.py --flower --update-readme   # ~20 min

Results: ``benchmarks/results/matrix.{json,csv,md,png}`` (``matrix-quick.*``
with ``--quick``); ``--update-readme`` rewrites the marked table in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from harness import (
    HERE,
    PROCESS_TARGET,
    QUIET,
    THREAD_TARGET,
    Config,
    Run,
    later,
    paired,
    quantile,
    summarise,
    update_readme,
)

ROOT = HERE.parent
RESULTS = HERE / "results"
TABLE_START = "<!-- matrix-table:start -->"
TABLE_END = "<!-- matrix-table:end -->"
#: Flower is compared on these workloads ("both models" of the issue).
FLOWER_WORKLOADS = ("cnn", "resnet18")
#: The Python-heavy workload of the free-threaded scaling target.
PYTHON_HEAVY = "mlp-b1"

#: What each workload is; rounds and repetitions are sized so that the full
#: default matrix with Flower stays under 25 minutes on 2 busy cores (18 min
#: measured) and --quick under 3 (2.5 min on 2 idle cores, without Flower).
WORKLOADS: dict[str, dict[str, Any]] = {
    "cnn": {
        "about": "small CNN (`ModelZoo` 'cnn', 1x12x12 synthetic images)",
        "config": {
            "clients": 30,
            "sampled": 10,
            "model": "cnn",
            "epochs": 1,
            "batch_size": 16,
            "lr": 0.05,
            "samples_per_client": 128,
        },
        "full": (6, 4),  # (rounds, repetitions)
        "quick": (2, 1),
    },
    "resnet18": {
        "about": "ResNet-18 (11.2 M parameters, 45 MB per payload; 3x32x32 "
        "`SyntheticCIFAR10`), little local work: communication-heavy",
        "config": {
            "clients": 8,
            "sampled": 4,
            "model": "resnet18",
            "epochs": 1,
            "batch_size": 2,
            "lr": 0.01,
            "samples_per_client": 2,
            "dataset": "cifar",
            "test_samples": 8,
            "eval_batch_size": 8,
        },
        "full": (5, 3),
        "quick": (2, 1),
        "quick_config": {"clients": 4, "sampled": 2},
    },
    "mlp-b1": {
        "about": "small MLP (`ModelZoo` 'mlp', 144-64-10) at batch size 1: "
        "Python-heavy",
        "config": {
            "clients": 20,
            "sampled": 10,
            "model": "mlp",
            "epochs": 1,
            "batch_size": 1,
            "lr": 0.02,
            "samples_per_client": 48,
            "test_samples": 100,
            "eval_batch_size": 100,
        },
        "full": (6, 4),
        "quick": (2, 1),
    },
}


def workload_config(
    name: str,
    workers: Sequence[int],
    quick: bool,
    rounds: int | None = None,
    repeats: int | None = None,
) -> Config:
    spec = WORKLOADS[name]
    default_rounds, default_repeats = spec["quick" if quick else "full"]
    fields = {**spec["config"], **(spec.get("quick_config", {}) if quick else {})}
    return Config(
        rounds=rounds or default_rounds,
        repeats=repeats or default_repeats,
        workers=tuple(workers),
        seed=0,
        quick=quick,
        **fields,
    )


# -- a cell: one interpreter, one workload (runs in that interpreter) --------


def run_cell(cfg: Config, memory_rounds: int, out: Path) -> None:
    """Peak memory of each variant alone, then the interleaved timing runs."""
    import structlog
    import torch
    from harness import (
        LoadMonitor,
        Workload,
        machine_info,
        measure_memory,
        run_repeat,
        variants,
    )

    from blazefl.reproducibility import set_torch_threads
    from blazefl.sim import gil_enabled

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    set_torch_threads(1)
    info = machine_info()
    plan = variants(cfg)
    began = time.perf_counter()
    memory = []
    if memory_rounds:  # first: see measure_memory
        for name, make in plan:
            mem = measure_memory(cfg, name, make, memory_rounds)
            memory.append(asdict(mem))
            print(
                f"  memory {name:>14}: peak {mem.peak_rss_mib or 0:7.0f} MiB over "
                f"{mem.processes} process(es){'' if mem.ok else ' (FAILED)'}",
                flush=True,
            )
    wl = Workload(cfg)
    runs: list[Run] = []
    reference: list[torch.Tensor] = []
    monitor = LoadMonitor()
    for repeat in range(cfg.repeats):
        batch = run_repeat(wl, plan, repeat, reference, monitor)
        runs.extend(batch)
        print(
            f"  rep {repeat}: "
            + ", ".join(
                f"{r.variant} {statistics.median(later(r)) * 1e3:.0f}" for r in batch
            )
            + " ms (rounds >= 2 median)",
            flush=True,
        )
    info["gil_enabled_end"] = gil_enabled()
    result = {
        "machine": info,
        "config": asdict(cfg),
        "elapsed_s": time.perf_counter() - began,
        "bitwise_identical": True,  # run_repeat raises otherwise
        "variants": [n for n, _ in plan],
        "memory": memory,
        "runs": [asdict(r) for r in runs],
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


# -- analysis ----------------------------------------------------------------


def _runs(cell: dict[str, Any]) -> list[Run]:
    return [Run(**r) for r in cell["runs"]]


def _bare_of(variant: str) -> str:
    """The bare loop at the same parallelism: bare(p) for X(p), bare(1) inline."""
    if variant == "inline":
        return "bare(1)"
    return f"bare({variant.split('(')[1]}"


def _workers_of(variant: str) -> int:
    return 1 if variant == "inline" else int(variant.split("(")[1].rstrip(")"))


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def analyse_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Medians, ratios against the bare loop, speedups and memory of one cell."""
    runs = _runs(cell)
    names = cell["variants"]
    medians = summarise(runs, names)
    memory = {m["variant"]: m for m in cell.get("memory", [])}
    rows = {}
    for name in names:
        bare = _bare_of(name)
        steady = paired(runs, name, bare, first=False)
        quiet = paired(runs, name, bare, first=False, quiet=True)
        rows[name] = {
            **medians[name],
            "vs_bare": _median(steady),
            "vs_bare_quiet": _median(quiet),
            "quiet_n": len(quiet),
            "peak_rss_mib": memory.get(name, {}).get("peak_rss_mib"),
            "processes": memory.get(name, {}).get("processes"),
        }
    ratios = {}
    workers = sorted({_workers_of(n) for n in names})
    for p in workers:
        for num, den in (
            (f"threads({p})", f"bare({p})"),
            (f"processes({p})", f"threads({p})"),
        ):
            ratios[f"{num} / {den}"] = {
                "all": _median(paired(runs, num, den, first=False)),
                "quiet": _median(paired(runs, num, den, first=False, quiet=True)),
                "minima": medians[num]["steady_min_s"] / medians[den]["steady_min_s"],
            }
    speedups = {}
    for kind in ("bare", "threads", "processes"):
        for p in workers[1:]:
            one, many = f"{kind}(1)", f"{kind}({p})"
            xs = paired(runs, one, many, first=False)
            speedups[f"{kind} 1->{p}"] = {
                "all": _median(xs),
                "p25": quantile(xs, 0.25) if xs else None,
                "p75": quantile(xs, 0.75) if xs else None,
                "quiet": _median(paired(runs, one, many, first=False, quiet=True)),
            }
    cycles = [
        f for r in runs if r.variant == names[0] for f in r.foreign if f is not None
    ]
    load = {
        "cycles": len(cycles),
        "median": _median(cycles),
        "max": max(cycles) if cycles else None,
        "quiet": sum(f <= QUIET for f in cycles),
    }
    return {"rows": rows, "ratios": ratios, "speedups": speedups, "load": load}


def analyse_flower(cell: dict[str, Any]) -> dict[str, Any]:
    """Flower's per-run medians (rounds >= 2) against the bare runs beside them."""
    out: dict[str, Any] = {}
    runs = cell["runs"]
    for p in cell["config"]["workers"]:
        fl = [r for r in runs if r["kind"] == "flower" and r["workers"] == p]
        bare = {
            r["repeat"]: r for r in runs if r["kind"] == "bare" and r["workers"] == p
        }
        steady = [t for r in fl for t in (r["rounds_s"][1:] or r["rounds_s"])]
        ratio = [
            statistics.median(r["rounds_s"][1:] or r["rounds_s"])
            / statistics.median(
                bare[r["repeat"]]["rounds_s"][1:] or bare[r["repeat"]]["rounds_s"]
            )
            for r in fl
            if r["repeat"] in bare
        ]
        bare_steady = [
            t for r in bare.values() for t in (r["rounds_s"][1:] or r["rounds_s"])
        ]
        out[f"flower({p})"] = {
            "steady_s": statistics.median(steady),
            "steady_p25_s": quantile(steady, 0.25),
            "steady_p75_s": quantile(steady, 0.75),
            "steady_min_s": min(steady),
            "round1_s": statistics.median(r["rounds_s"][0] for r in fl),
            "startup_s": statistics.median(
                r["wall_s"] - sum(r["rounds_s"]) for r in fl
            ),
            "setup_s": statistics.median(r["setup_s"] for r in fl),
            "vs_bare": _median(ratio),
            "bare_steady_s": statistics.median(bare_steady),
            "peak_rss_mib": max(r["peak_rss_mib"] or 0 for r in fl),
            "processes": max(r["processes"] for r in fl),
            "loopback_only": all(r["loopback_only"] for r in fl),
            "listeners": sorted({x for r in fl for x in r["listeners"]}),
            "ray_outside_tree": sorted(
                {x for r in fl for x in r["ray_processes_outside_tree"]}
            ),
            "leftover_processes": sum(r["leftover_processes"] for r in fl),
            "other_load": _median(
                [r["other_load"] for r in fl if r["other_load"] is not None]
            ),
        }
    return out


def check_targets(
    workloads: Sequence[str],
    workers: Sequence[int],
    cells: dict[tuple[str, str], dict[str, Any]],
    flower: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every target as a row: value, limit, PASS/MISS (or n/a where not run)."""
    out: list[dict[str, Any]] = []

    def add(
        target: str,
        where: str,
        value: float | None,
        limit: str,
        met: bool | None,
        quiet: float | None = None,
        note: str = "",
    ) -> None:
        out.append(
            {
                "target": target,
                "where": where,
                "value": value,
                "quiet": quiet,
                "limit": limit,
                "met": met,
                "note": note,
            }
        )

    for w in workloads:
        for label in ("GIL", "FT"):
            cell = cells.get((w, label))
            if cell is None:
                continue
            for p in workers:
                r = cell["ratios"][f"threads({p}) / bare({p})"]
                add(
                    "threads(p) / bare(p)",
                    f"{w}, {label}, p={p}",
                    r["all"],
                    f"<= {THREAD_TARGET}",
                    r["all"] <= THREAD_TARGET,
                    r["quiet"],
                )
                r = cell["ratios"][f"processes({p}) / threads({p})"]
                add(
                    "processes(p) / threads(p)",
                    f"{w}, {label}, p={p}",
                    r["all"],
                    f"<= {PROCESS_TARGET}",
                    r["all"] <= PROCESS_TARGET,
                    r["quiet"],
                )
    for w in FLOWER_WORKLOADS:
        if w not in flower or (w, "GIL") not in cells:
            continue
        rows = cells[(w, "GIL")]["rows"]
        for p in workers:
            fl = flower[w].get(f"flower({p})")
            if fl is None:
                continue
            for executor in ("threads", "processes"):
                ours = rows[f"{executor}({p})"]
                # Each against the bare loop run beside it, so the drift of the
                # shared machine between the two cells cancels.
                value = ours["vs_bare"] / fl["vs_bare"]
                raw = ours["steady_s"] / fl["steady_s"]
                add(
                    f"{executor}(p) / flower(p)",
                    f"{w}, GIL, p={p}",
                    value,
                    "< 1",
                    value < 1,
                    note=f"raw medians {raw:.3f}",
                )
    g, f = cells.get((PYTHON_HEAVY, "GIL")), cells.get((PYTHON_HEAVY, "FT"))
    hi = max(workers)
    key = f"threads 1->{hi}"
    if g is not None and f is not None and hi > 1:
        sg, sf = g["speedups"][key]["all"], f["speedups"][key]["all"]
        add(
            f"speedup threads(1)/threads({hi}), FT >= GIL",
            PYTHON_HEAVY,
            sf / sg,
            ">= 1",
            sf >= sg,
            note=f"FT {sf:.2f}x, GIL {sg:.2f}x; bare: FT "
            f"{f['speedups'][f'bare 1->{hi}']['all']:.2f}x, GIL "
            f"{g['speedups'][f'bare 1->{hi}']['all']:.2f}x",
        )
    else:
        add(
            "speedup threads(1)/threads(2), FT >= GIL",
            PYTHON_HEAVY,
            None,
            ">= 1",
            None,
            note="needs the mlp-b1 workload, both interpreters and 2+ workers",
        )
    return out


# -- output ------------------------------------------------------------------

LABELS = {"GIL": "GIL", "FT": "free-threaded"}


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _interp_line(label: str, info: dict[str, Any]) -> str:
    kind = "free-threaded" if info["free_threaded_build"] else "GIL"
    gil = ""
    if info["free_threaded_build"]:
        off = not info["gil_enabled"] and not info.get("gil_enabled_end")
        gil = ", GIL off throughout" if off else ", **GIL was ON** (see warnings)"
    return f"{label}: Python {info['python']} ({kind}{gil}), torch {info['torch']}"


def markdown(result: dict[str, Any]) -> str:
    workloads: list[str] = result["workloads_run"]
    labels: list[str] = result["interpreters_run"]
    cells = {(c["workload"], c["interpreter"]): c for c in result["analysis"]}
    flower = result["flower_analysis"]
    info = result["machine"]
    git = info.get("git") or {}
    commit = (git.get("commit") or "unknown commit")[:10]
    if git.get("src_modified"):
        commit += " + local changes to src"
    interps = "; ".join(
        _interp_line(LABELS[lb], result["interpreters"][lb]) for lb in labels
    )
    fl_versions = ""
    if flower:
        fi = result["flower_machine"]
        fl_versions = (
            f"; Flower {fi['flwr']} with Ray {fi['ray']} (Python {fi['python']})"
        )
    lines = [
        f"{result['date']}, {info['cpu_affinity']} CPUs ({info['cpu_model']}), "
        f"blazefl {info['blazefl']} ({commit}). {interps}{fl_versions}. "
        f"Torch threads 1 everywhere; whole matrix {result['elapsed_s'] / 60:.1f} min"
        f"{' (--quick)' if result['quick'] else ''}.",
        "",
    ]
    for w in workloads:
        cfg = result["configs"][w]
        lines.append(
            f"- `{w}`: {WORKLOADS[w]['about']}; {cfg['clients']} clients, "
            f"{cfg['sampled']} per round, {cfg['samples_per_client']} samples "
            f"each, {cfg['epochs']} local epoch(s) at batch {cfg['batch_size']}; "
            f"the server evaluates {cfg['test_samples']} samples; "
            f"{cfg['rounds']} rounds x {cfg['repeats']} repetitions."
        )
    head = "| workload | variant |"
    rule = "| --- | --- |"
    for lb in labels:
        name = LABELS[lb]
        head += (
            f" {name}: ms per round (p25-p75) | {name}: x bare(p) "
            f"| {name}: peak RSS MiB (procs) |"
        )
        rule += " ---: | ---: | ---: |"
    lines += ["", head, rule]
    for w in workloads:
        names = next(cells[(w, lb)] for lb in labels if (w, lb) in cells)["variants"]
        for name in names:
            row = f"| {w} | {name} |"
            for lb in labels:
                c = cells.get((w, lb))
                if c is None:
                    row += " - | - | - |"
                    continue
                r = c["rows"][name]
                ratio = "1" if name.startswith("bare") else _x(r["vs_bare"])
                row += (
                    f" {_ms(r['steady_s'])} ({_ms(r['steady_p25_s'])}-"
                    f"{_ms(r['steady_p75_s'])}) | {ratio} | "
                    f"{_mib(r['peak_rss_mib'])} ({r['processes'] or '-'}) |"
                )
            lines.append(row)
        for name, fl in sorted(flower.get(w, {}).items()):
            row = f"| {w} | {name} [Flower] |"
            for lb in labels:
                if lb == "GIL":
                    row += (
                        f" {_ms(fl['steady_s'])} ({_ms(fl['steady_p25_s'])}-"
                        f"{_ms(fl['steady_p75_s'])}) | {_x(fl['vs_bare'])} | "
                        f"{_mib(fl['peak_rss_mib'])} ({fl['processes']}) |"
                    )
                else:
                    row += " - | - | - |"
            lines.append(row)
    lines += [
        "",
        "ms per round: median over rounds >= 2 of all repetitions (round 1, with "
        "first touch and worker warm-up, and start-up are in matrix.json). "
        "x bare(p): paired median of the variant's round time over the bare "
        "loop's at the same parallelism in the same round-robin cycle (inline: "
        "bare(1)). Peak RSS: all processes of a run of that variant alone "
        "(process workers included), sampled from /proc every 50 ms.",
    ]
    if flower:
        fl_all = [fl for per in flower.values() for fl in per.values()]
        startup = statistics.median(fl["startup_s"] for fl in fl_all)
        lines += [
            "",
            "[Flower] rows: a Flower simulation of the same workload "
            "(`benchmarks/flower_app.py`: Message API ServerApp/ClientApp, "
            "`run_simulation`, Ray backend on 127.0.0.1, one Ray actor per "
            "worker), final model bitwise equal to the bare loop's: "
            f"{'yes' if result['flower_bitwise'] else 'NO'}. Not interleaved by "
            "round: whole Flower runs alternate with bare-loop runs in "
            "`.venv-flower`; ms per round is timed by the ServerApp around each "
            "round (sample, send and receive, aggregate, evaluate); x bare(p) is "
            "against the bare runs beside them. Start-up (Ray, actors, node "
            f"discovery), median {startup:.1f} s per run, is excluded. RSS covers "
            "the run's whole process tree (Ray daemons and actors).",
        ]
    speed_kinds = ("bare", "threads", "processes")
    hi = max(result["workers"])
    if hi > 1:
        lines += [
            "",
            f"Speedup from 1 to {hi} workers (paired median of round(1) / round({hi}), "
            "rounds >= 2):",
            "",
            "| workload | interpreter | " + " | ".join(speed_kinds) + " |",
            "| --- | --- |" + " ---: |" * len(speed_kinds),
        ]
        for w in workloads:
            for lb in labels:
                c = cells.get((w, lb))
                if c is None:
                    continue
                vals = [c["speedups"][f"{k} 1->{hi}"] for k in speed_kinds]
                lines.append(
                    f"| {w} | {LABELS[lb]} | "
                    + " | ".join(
                        f"{v['all']:.2f}x ({v['p25']:.2f}-{v['p75']:.2f})"
                        if v["all"] is not None
                        else "-"
                        for v in vals
                    )
                    + " |"
                )
    lines += [
        "",
        "| target | where | value, all rounds | quiet rounds | limit | verdict "
        "| note |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for t in result["targets"]:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["met"]]
        lines.append(
            f"| {t['target']} | {t['where']} | {_x(t['value'])} | {_x(t['quiet'])} "
            f"| {t['limit']} | {verdict} | {t['note']} |"
        )
    loads = ", ".join(
        f"{w} {LABELS[lb]} {_pct(cells[(w, lb)]['load']['median'])} "
        f"({cells[(w, lb)]['load']['quiet']}/{cells[(w, lb)]['load']['cycles']} quiet)"
        for w in workloads
        for lb in labels
        if (w, lb) in cells
    )
    fl_loads = ", ".join(
        f"{w} {name} {_pct(fl['other_load'])}"
        for w, per in flower.items()
        for name, fl in sorted(per.items())
    )
    lines += [
        "",
        "Quiet rounds: only cycles in which other processes used <= "
        f"{QUIET:.0%} of the CPUs. Other load (median share of all CPUs used by "
        f"other processes per cycle): {loads}"
        + (f"; during Flower runs: {fl_loads}" if fl_loads else "")
        + ".",
    ]
    for note in result["skipped"]:
        lines += ["", f"Not run: {note}"]
    return "\n".join(lines) + "\n"


def write_csv(result: dict[str, Any], path: Path) -> None:
    fields = [
        "workload",
        "interpreter",
        "python",
        "free_threaded",
        "torch",
        "variant",
        "executor",
        "workers",
        "measured",
        "startup_ms",
        "round1_ms",
        "median_ms",
        "p25_ms",
        "p75_ms",
        "min_ms",
        "x_bare",
        "x_bare_quiet",
        "peak_rss_mib",
        "processes",
    ]
    rows = []
    for c in result["analysis"]:
        interp = result["interpreters"][c["interpreter"]]
        for name in c["variants"]:
            r = c["rows"][name]
            rows.append(
                {
                    "workload": c["workload"],
                    "interpreter": c["interpreter"],
                    "python": interp["python"],
                    "free_threaded": interp["free_threaded_build"],
                    "torch": interp["torch"],
                    "variant": name,
                    "executor": name.split("(")[0],
                    "workers": _workers_of(name),
                    "measured": "per round, rounds interleaved across variants",
                    "startup_ms": r["startup_s"] * 1e3,
                    "round1_ms": r["round1_s"] * 1e3,
                    "median_ms": r["steady_s"] * 1e3,
                    "p25_ms": r["steady_p25_s"] * 1e3,
                    "p75_ms": r["steady_p75_s"] * 1e3,
                    "min_ms": r["steady_min_s"] * 1e3,
                    "x_bare": r["vs_bare"],
                    "x_bare_quiet": r["vs_bare_quiet"],
                    "peak_rss_mib": r["peak_rss_mib"],
                    "processes": r["processes"],
                }
            )
    fi = result.get("flower_machine") or {}
    for w, per in result["flower_analysis"].items():
        for name, fl in sorted(per.items()):
            rows.append(
                {
                    "workload": w,
                    "interpreter": "flower",
                    "python": fi.get("python"),
                    "free_threaded": False,
                    "torch": fi.get("torch"),
                    "variant": name,
                    "executor": f"flower {fi.get('flwr')} (ray {fi.get('ray')})",
                    "workers": _workers_of(name),
                    "measured": "per round in the ServerApp; whole runs alternate "
                    "with bare runs",
                    "startup_ms": fl["startup_s"] * 1e3,
                    "round1_ms": fl["round1_s"] * 1e3,
                    "median_ms": fl["steady_s"] * 1e3,
                    "p25_ms": fl["steady_p25_s"] * 1e3,
                    "p75_ms": fl["steady_p75_s"] * 1e3,
                    "min_ms": fl["steady_min_s"] * 1e3,
                    "x_bare": fl["vs_bare"],
                    "x_bare_quiet": None,
                    "peak_rss_mib": fl["peak_rss_mib"],
                    "processes": fl["processes"],
                }
            )
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row.items()}
            )


def chart(result: dict[str, Any], path: Path) -> None:
    """Round time and peak RSS per variant, one column per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = result["workloads_run"]
    labels = result["interpreters_run"]
    cells = {(c["workload"], c["interpreter"]): c for c in result["analysis"]}
    flower = result["flower_analysis"]
    fig, axes = plt.subplots(
        2, len(workloads), figsize=(5.2 * len(workloads), 7.5), squeeze=False
    )
    colours = {"GIL": "tab:blue", "FT": "tab:orange", "flower": "tab:gray"}
    for col, w in enumerate(workloads):
        names = next(cells[(w, lb)] for lb in labels if (w, lb) in cells)["variants"]
        fl_names = sorted(flower.get(w, {}))
        xs = list(range(len(names) + len(fl_names)))
        series = [(lb, LABELS[lb]) for lb in labels] + (
            [("flower", "Flower (GIL)")] if fl_names else []
        )
        width = 0.8 / len(series)
        for row, (key, unit, scale) in enumerate(
            (
                ("steady_s", "ms per round (median, rounds >= 2)", 1e3),
                ("peak_rss_mib", "peak RSS, all processes (MiB)", 1.0),
            )
        ):
            ax = axes[row][col]
            for i, (lb, legend) in enumerate(series):
                vals, errs = [], []
                for name in [*names, *fl_names]:
                    if lb == "flower":
                        r = flower[w].get(name)
                    else:
                        c = cells.get((w, lb))
                        r = c["rows"].get(name) if c else None
                    v = r.get(key) if r else None
                    # NaN draws no bar (a variant this series did not run).
                    vals.append(float("nan") if v is None else v * scale)
                    if row == 0 and r and v is not None:
                        errs.append(
                            (
                                (v - r["steady_p25_s"]) * scale,
                                (r["steady_p75_s"] - v) * scale,
                            )
                        )
                    else:
                        errs.append((0.0, 0.0))
                offs = [x - 0.4 + width * (i + 0.5) for x in xs]
                ax.bar(
                    offs,
                    vals,
                    width,
                    label=legend,
                    color=colours[lb],
                    yerr=list(zip(*errs, strict=True)) if row == 0 else None,
                    capsize=2,
                )
            ax.set_xticks(xs, [*names, *fl_names], rotation=40, ha="right", fontsize=8)
            ax.set_ylabel(unit, fontsize=8)
            if row == 0:
                ax.set_title(w)
            ax.grid(axis="y", alpha=0.3)
            if col == 0 and row == 0:
                ax.legend(fontsize=8)
    fig.suptitle(
        "blazefl executors vs the bare loop (and Flower), "
        f"{result['machine']['cpu_affinity']} CPUs, {result['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    interpreters: list[tuple[str, Path]] = [("GIL", args.gil_python)]
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


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    """Add the analysis, drawn from the raw cells alone, to a result."""
    raw, flower_raw = result["cells"], result["flower_cells"]
    analysis = [
        {
            "workload": c["workload"],
            "interpreter": c["interpreter"],
            "variants": c["variants"],
            **analyse_cell(c),
        }
        for c in raw
    ]
    infos: dict[str, Any] = {}
    for c in raw:
        infos.setdefault(c["interpreter"], c["machine"])
    cells = {(a["workload"], a["interpreter"]): a for a in analysis}
    flower_analysis = {w: analyse_flower(c) for w, c in flower_raw.items()}
    result.update(
        interpreters=infos,
        interpreters_run=[lb for lb in LABELS if lb in infos],
        workloads_run=[w for w in result["configs"] if any(k[0] == w for k in cells)],
        flower_machine=next(iter(flower_raw.values()))["machine"]
        if flower_raw
        else None,
        flower_bitwise=all(c["bitwise_identical"] for c in flower_raw.values()),
        analysis=analysis,
        flower_analysis=flower_analysis,
    )
    result["targets"] = check_targets(
        result["workloads_run"], result["workers"], cells, flower_analysis
    )
    return result


def write_outputs(result: dict[str, Any], args: argparse.Namespace) -> None:
    """matrix.{json,csv,md,png}, and the README table with --update-readme."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / ("matrix-quick" if result["quick"] else "matrix")
    table = markdown(result)
    Path(f"{stem}.json").write_text(
        json.dumps(result, indent=1) + "\n", encoding="utf-8"
    )
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
