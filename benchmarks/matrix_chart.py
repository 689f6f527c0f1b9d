"""The matrix's chart: round time and peak RSS per variant, per workload.

One column per workload, a bar per interpreter (and Flower) for every
variant: the median round time with its p25-p75 range above, the peak RSS
of the whole process tree below. Needs matplotlib (the ``cli`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matrix_workloads import LABELS


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
