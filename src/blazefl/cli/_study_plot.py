"""The study's figures: accuracy per round with 95% bands, and final accuracy bars.

``accuracy.png``: per setting, the mean test accuracy over seeds at each
evaluated round, with a shaded Student's t 95% confidence band (rounds every
seed of the setting evaluated). ``final_acc.png``: the mean final accuracy
per setting, with the 95% interval as error bars. Both are drawn with
matplotlib's Agg backend, as ``metrics.png`` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blazefl._exceptions import MissingDependencyError
from blazefl.cli._study import SettingSummary, Stat

__all__ = ["ACCURACY_PLOT", "FINAL_PLOT", "plot_study"]

ACCURACY_PLOT = "accuracy.png"
FINAL_PLOT = "final_acc.png"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "plots", extra="cli", package="matplotlib"
        ) from exc
    return plt


def _band(curves: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, Stat]]:
    """Per round that every curve has: the statistics across curves."""
    by_round: dict[int, list[float]] = {}
    for curve in curves:
        for k, acc in curve:
            by_round.setdefault(k, []).append(acc)
    return [
        (k, Stat.of(values))
        for k, values in sorted(by_round.items())
        if len(values) == len(curves)
    ]


def _save(fig: Any, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    tmp.replace(target)


def plot_study(
    summaries: Sequence[SettingSummary], folder: Path, title: str
) -> list[Path]:
    """Draw both figures into ``folder``; returns their paths."""
    plt = _pyplot()
    drawn = [s for s in summaries if s.n_seeds > 0]
    targets = [folder / ACCURACY_PLOT, folder / FINAL_PLOT]
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    try:
        for s in drawn:
            points = _band(s.curves)
            x = [k for k, _ in points]
            mean = [st.mean for _, st in points]
            (line,) = ax.plot(x, mean, label=f"{s.label} (n={s.n_seeds})")
            if s.n_seeds > 1:
                ax.fill_between(
                    x,
                    [st.ci95_low for _, st in points],
                    [st.ci95_high for _, st in points],
                    color=line.get_color(),
                    alpha=0.2,
                    linewidth=0,
                )
        ax.set(
            xlabel="round",
            ylabel="test accuracy",
            title=f"{title}: test accuracy, mean and 95% CI (Student's t) over seeds",
        )
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small", loc="lower right")
        _save(fig, targets[0])
    finally:
        plt.close(fig)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 1.2 * len(drawn) + 2), 5), layout="constrained"
    )
    try:
        means = [s.stats["final_acc"].mean or 0.0 for s in drawn]
        errors = [
            (st.ci95_high - st.mean)
            if st.ci95_high is not None and st.mean is not None
            else 0.0
            for st in (s.stats["final_acc"] for s in drawn)
        ]
        positions = range(len(drawn))
        ax.bar(positions, means, yerr=errors, capsize=6, color="tab:blue", alpha=0.8)
        ax.set_xticks(
            list(positions),
            [s.label.replace(", ", "\n") for s in drawn],
            fontsize="small",
        )
        for place, m in zip(positions, means, strict=True):
            ax.annotate(
                f"{m:.3f}",
                (place - 0.38, m),
                xytext=(0, 3),
                textcoords="offset points",
                ha="left",
                fontsize="small",
            )
        ax.set(
            ylabel="final test accuracy",
            title=f"{title}: final accuracy, mean and 95% CI over seeds",
        )
        low = (
            min(
                (s.stats["final_acc"].ci95_low or m)
                for s, m in zip(drawn, means, strict=True)
            )
            if drawn
            else 0.0
        )
        ax.set_ylim(max(0.0, low - 0.1), 1.0)
        ax.grid(axis="y", alpha=0.3)
        _save(fig, targets[1])
    finally:
        plt.close(fig)
    return targets
