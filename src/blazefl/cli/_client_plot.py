"""The per-client panels of ``metrics.png`` (runs with ``--evaluate-clients``):
the p10-p90 band and median of client accuracy over rounds, and the
histogram of client accuracies at the latest evaluation
(``client_accuracy.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["draw_client_spread"]


def _points(rows: list[dict[str, Any]], *keys: str) -> list[tuple[float, ...]]:
    """(round, *keys) of every row where all of ``keys`` are numbers."""
    out = []
    for row in rows:
        values = [row.get(k) for k in ("round", *keys)]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out.append(tuple(float(v) for v in values))  # type: ignore[arg-type]
    return out


def _latest(folder: Path) -> dict[str, Any] | None:
    """``client_accuracy.json``, or None when it is missing or unreadable."""
    try:
        data = json.loads((folder / "client_accuracy.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def draw_client_spread(
    band_ax: Any, hist_ax: Any, rows: list[dict[str, Any]], folder: Path
) -> None:
    """Draw the band over rounds on ``band_ax`` and the histogram on ``hist_ax``."""
    personalized = any(
        r.get("client_global_acc_p50") != r.get("client_acc_p50") for r in rows
    )
    series = [("client_acc", "tab:blue", "own model" if personalized else "clients")]
    if personalized:
        series.append(("client_global_acc", "tab:gray", "global model"))
    for prefix, color, label in series:
        points = _points(rows, f"{prefix}_p10", f"{prefix}_p50", f"{prefix}_p90")
        if not points:
            continue
        x, low, mid, high = (list(c) for c in zip(*points, strict=True))
        band_ax.fill_between(x, low, high, color=color, alpha=0.2)
        band_ax.plot(x, mid, marker="o", markersize=3, color=color, label=label)
    band_ax.set(
        xlabel="round",
        ylabel="client accuracy",
        title="Clients: median, p10-p90 band",
        ylim=(0, 1),
    )
    band_ax.xaxis.get_major_locator().set_params(integer=True)
    band_ax.legend()
    band_ax.grid(alpha=0.3)
    latest = _latest(folder)
    bins = [i / 20 for i in range(21)]
    if latest is not None:
        own = [float(v) for v in latest.get("client_acc", [])]
        hist_ax.hist(own, bins=bins, color="tab:blue", alpha=0.7, label="clients")
        heldout = [float(v) for v in latest.get("heldout_acc", [])]
        if heldout:
            hist_ax.hist(
                heldout, bins=bins, color="tab:orange", alpha=0.6, label="held-out"
            )
        threshold = latest.get("threshold")
        if isinstance(threshold, int | float):
            hist_ax.axvline(threshold, color="tab:red", linestyle="--", linewidth=1)
        hist_ax.legend()
        title = f"Client accuracy after round {latest.get('round')}"
    else:
        title = "Client accuracy (no client_accuracy.json)"
    hist_ax.set(xlabel="accuracy", ylabel="clients", title=title, xlim=(0, 1))
    hist_ax.yaxis.get_major_locator().set_params(integer=True)
    hist_ax.grid(alpha=0.3)
