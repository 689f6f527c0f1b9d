"""What a round returns: per-client reports, the round result, metric means.

A `RoundResult` is the committed round as data (slot order, failures kept
beside successes); `aggregate_metrics` is how client metrics become round
metrics, independent of the order clients finished in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from blazefl.sim._jobs import ClientFailure

__all__ = ["ClientReport", "RoundResult", "aggregate_metrics"]


@dataclass(frozen=True, slots=True)
class ClientReport:
    """What happened to one sampled client in a round."""

    slot: int
    cid: int
    worker: str
    seconds: float
    metrics: Mapping[str, float]
    failure: ClientFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What `Simulation.run_round` returns: one committed round.

    ``clients`` is in slot order (``clients[i].cid == cids[i]``); ``metrics``
    aggregates the surviving clients' metrics; ``summary`` is the handler's
    ``get_summary()`` after aggregation in rounds the simulation evaluates
    (see ``evaluate_every``), ``{}`` in the others.
    """

    round: int
    cids: tuple[int, ...]
    clients: tuple[ClientReport, ...]
    seconds: float
    metrics: Mapping[str, float]
    summary: Mapping[str, Any]
    #: the virtual clock after the round (None without simulated time)
    virtual_time: float | None = None
    #: sampled clients dropped for the deadline, over-selection or going offline
    stragglers: tuple[int, ...] = ()

    @property
    def failures(self) -> tuple[ClientReport, ...]:
        return tuple(c for c in self.clients if not c.ok)


def aggregate_metrics(reports: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over the clients that reported it.

    Weighted by ``num_samples`` when every such client reports it (so a loss
    averages like it would over the pooled data). Exact summation keeps the
    result independent of completion order.
    """
    reports = [{k: v for k, v in r.items() if _is_number(v)} for r in reports]
    keys = sorted({k for r in reports for k in r if k != "num_samples"})
    out: dict[str, float] = {}
    for key in keys:
        rows = [r for r in reports if key in r]
        if all("num_samples" in r for r in rows):
            total = math.fsum(r["num_samples"] for r in rows)
            if total > 0:
                out[key] = math.fsum(r[key] * r["num_samples"] for r in rows) / total
                continue
        out[key] = math.fsum(r[key] for r in rows) / len(rows)
    if reports and all("num_samples" in r for r in reports):
        out["num_samples"] = math.fsum(r["num_samples"] for r in reports)
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
