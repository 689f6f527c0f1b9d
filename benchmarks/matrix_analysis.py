"""The matrix's numbers, drawn from the raw cells alone (so a saved run can be
analysed again: ``matrix.py --render``).

Per cell (one workload in one interpreter): each variant's round-time
medians and its paired ratio to the bare loop at the same parallelism; the
ratios the targets are about (threads(p) / bare(p), processes(p) /
threads(p)), each with the 95% bootstrap interval of its median
(`matrix_ci`); the speedups from 1 to p workers; the other load on the
machine. Then Flower's runs against the bare runs beside them, and every
target as a row with its verdict.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from harness import (
    PROCESS_TARGET,
    QUIET,
    THREAD_TARGET,
    Run,
    paired,
    quantile,
    summarise,
)
from matrix_ci import median_ci, method, verdict
from matrix_workloads import FLOWER_WORKLOADS, LABELS, PYTHON_HEAVY


def _runs(cell: dict[str, Any]) -> list[Run]:
    return [Run(**r) for r in cell["runs"]]


def _bare_of(variant: str) -> str:
    """The bare loop at the same parallelism: bare(p) for X(p), bare(1) inline."""
    if variant == "inline":
        return "bare(1)"
    return f"bare({variant.split('(')[1]}"


def workers_of(variant: str) -> int:
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
            "vs_bare_ci95": None if name == bare else median_ci(steady),
            "vs_bare_quiet": _median(quiet),
            "quiet_n": len(quiet),
            "peak_rss_mib": memory.get(name, {}).get("peak_rss_mib"),
            "processes": memory.get(name, {}).get("processes"),
        }
    ratios = {}
    workers = sorted({workers_of(n) for n in names})
    for p in workers:
        for num, den in (
            (f"threads({p})", f"bare({p})"),
            (f"processes({p})", f"threads({p})"),
        ):
            xs = paired(runs, num, den, first=False)
            ratios[f"{num} / {den}"] = {
                "all": _median(xs),
                "ci95": median_ci(xs),
                "quiet": _median(paired(runs, num, den, first=False, quiet=True)),
                "minima": medians[num]["steady_min_s"] / medians[den]["steady_min_s"],
            }
    speedups = {}  # from 1 worker: only where the cell ran on 1
    for kind in ("bare", "threads", "processes"):
        for p in workers[1:] if workers[0] == 1 else []:
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
        ci: list[float] | None = None,
        ci_verdict: str | None = None,
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
                "ci95": ci,
                # Targets without an interval: the point verdict.
                "ci_verdict": ci_verdict
                or {True: "PASS", False: "MISS", None: "n/a"}[met],
            }
        )

    for w in workloads:
        for label in ("GIL", "FT"):
            cell = cells.get((w, label))
            if cell is None:
                continue
            for p in workers:
                for num, den, limit in (
                    ("threads", "bare", THREAD_TARGET),
                    ("processes", "threads", PROCESS_TARGET),
                ):
                    r = cell["ratios"][f"{num}({p}) / {den}({p})"]
                    add(
                        f"{num}(p) / {den}(p)",
                        f"{w}, {label}, p={p}",
                        r["all"],
                        f"<= {limit}",
                        r["all"] <= limit,
                        r["quiet"],
                        ci=r.get("ci95"),
                        ci_verdict=verdict(r["all"], r.get("ci95"), limit),
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
    result["ci_method"] = method()
    result["targets"] = check_targets(
        result["workloads_run"], result["workers"], cells, flower_analysis
    )
    return result
