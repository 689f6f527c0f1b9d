"""``metrics.png``: loss and accuracy per round, drawn from ``metrics.jsonl``
(accuracy against virtual time in runs with ``--profiles``).

matplotlib is imported only here, with the Agg backend (no display needed),
and only when a plot is drawn: at the end of a run and by `blazefl plot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError, MissingDependencyError
from blazefl.cli._client_plot import draw_client_spread
from blazefl.cli._jsonl import metrics_problem, read_records

__all__ = ["plot_metrics", "read_metrics"]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (a torn last line is skipped).

    Raises `ConfigurationError` naming a line blazefl did not write.
    """
    return [row for _, row in read_records(path, metrics_problem)]


def _series(
    rows: list[dict[str, Any]], key: str, x: str = "round"
) -> tuple[list[float], list[float]]:
    pairs = [
        (r[x], r[key])
        for r in rows
        if isinstance(r.get(key), int | float) and isinstance(r.get(x), int | float)
    ]
    return [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]


def plot_metrics(folder: Path, output: Path | None = None) -> Path:
    """Draw ``folder/metrics.jsonl`` into ``output`` (default ``folder/metrics.png``).

    Raises `ConfigurationError` when the folder has no metrics yet and
    `MissingDependencyError` without matplotlib.
    """
    source = folder / "metrics.jsonl"
    if not source.is_file():
        raise ConfigurationError(
            f"{folder} holds no metrics.jsonl; is it a blazefl run folder?"
        )
    rows = read_metrics(source)
    if not rows:
        raise ConfigurationError(f"{source} holds no finished round yet")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "plots", extra="cli", package="matplotlib"
        ) from exc

    target = output or folder / "metrics.png"
    spread = bool(_series(rows, "client_acc_p50")[0])  # --evaluate-clients
    if spread:
        fig, axes = plt.subplots(2, 2, figsize=(10, 8), layout="constrained")
        (loss_ax, acc_ax), (band_ax, hist_ax) = axes
    else:
        fig, (loss_ax, acc_ax) = plt.subplots(
            1, 2, figsize=(10, 4), layout="constrained"
        )
    try:
        if spread:
            draw_client_spread(band_ax, hist_ax, rows, folder)
        for key, label in (("train_loss", "train loss"), ("test_loss", "test loss")):
            x, y = _series(rows, key)
            loss_ax.plot(x, y, marker="o", markersize=3, label=label)
        loss_ax.set(xlabel="round", ylabel="loss", title="Loss")
        loss_ax.legend()
        timed = any(isinstance(r.get("virtual_time"), int | float) for r in rows)
        x_key = "virtual_time" if timed else "round"  # --profiles: the clock
        x, y = _series(rows, "test_acc", x=x_key)
        acc_ax.plot(x, y, marker="o", markersize=3, color="tab:green", label="test")
        acc_ax.set(
            xlabel="virtual time (s)" if timed else "round",
            ylabel="test accuracy",
            title="Test accuracy",
        )
        if not timed:
            acc_ax.xaxis.get_major_locator().set_params(integer=True)
        x, y = _series(rows, "attack_success_rate", x=x_key)
        if x:  # an attacked run (--attack)
            acc_ax.plot(
                x, y, marker="o", markersize=3, color="tab:red", label="attack success"
            )
            acc_ax.legend()
        acc_ax.set_ylim(0, 1)
        loss_ax.xaxis.get_major_locator().set_params(integer=True)
        x, y = _series(rows, "epsilon")
        if x:  # a DP run: the privacy spent, on a second axis
            eps_ax = acc_ax.twinx()
            eps_ax.plot(x, y, marker=".", markersize=3, color="tab:red")
            eps_ax.set_ylabel("epsilon (privacy spent)", color="tab:red")
        for ax in (loss_ax, acc_ax):
            ax.grid(alpha=0.3)
        fig.suptitle(folder.resolve().name)
        tmp = target.with_name(f".{target.name}.tmp")
        fig.savefig(tmp, dpi=100, format="png")
        tmp.replace(target)
    finally:
        plt.close(fig)
    return target
