"""The matrix as a reader sees it: the Markdown report and the CSV.

`markdown` writes, from an analysed result (`matrix_analysis.analyse`): the
machine and interpreters, each workload, the round times and ratios of
every variant (and Flower's), the speedups from 1 to p workers, and the
targets with their verdicts, the point estimate's and the one that allows
for the run's noise (`matrix_ci`). `write_csv` writes one row per variant
and interpreter. The chart is `matrix_chart.py`.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from harness import QUIET
from matrix_analysis import workers_of
from matrix_workloads import LABELS, WORKLOADS


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"{ci[0]:.4f}-{ci[1]:.4f}"


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
    if hi > 1 and 1 in result["workers"]:
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
        "| 95% CI, all rounds | verdict with CI | note |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for t in result["targets"]:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["met"]]
        lines.append(
            f"| {t['target']} | {t['where']} | {_x(t['value'])} | {_x(t['quiet'])} "
            f"| {t['limit']} | {verdict} | {_ci(t.get('ci95'))} "
            f"| {t.get('ci_verdict', verdict)} | {t['note']} |"
        )
    lines += [
        "",
        "95% CI: the bootstrap interval of the median of the paired per-cycle "
        f"ratios ({result.get('ci_method', 'not computed')}). Verdict with CI: "
        "PASS where the ratio meets the limit, within noise where it does not "
        "but the interval includes the limit, MISS where the whole interval is "
        "beyond it.",
    ]
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


def _times_ms(r: dict[str, Any]) -> dict[str, float]:
    """A row's start-up, round-1 and steady round times, in ms."""
    keys = {
        "startup_ms": "startup_s",
        "round1_ms": "round1_s",
        "median_ms": "steady_s",
        "p25_ms": "steady_p25_s",
        "p75_ms": "steady_p75_s",
        "min_ms": "steady_min_s",
    }
    return {ms: r[s] * 1e3 for ms, s in keys.items()}


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
        "x_bare_ci_low",
        "x_bare_ci_high",
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
                    "workers": workers_of(name),
                    "measured": "per round, rounds interleaved across variants",
                    **_times_ms(r),
                    "x_bare": r["vs_bare"],
                    "x_bare_quiet": r["vs_bare_quiet"],
                    "peak_rss_mib": r["peak_rss_mib"],
                    "processes": r["processes"],
                    "x_bare_ci_low": (r.get("vs_bare_ci95") or [None])[0],
                    "x_bare_ci_high": (r.get("vs_bare_ci95") or [None, None])[1],
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
                    "workers": workers_of(name),
                    "measured": "per round in the ServerApp; whole runs alternate "
                    "with bare runs",
                    **_times_ms(fl),
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
