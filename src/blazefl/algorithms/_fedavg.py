"""FedAvg (McMahan et al., 2017): local SGD, average weighted by data size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from blazefl.algorithms._aggregation import aggregate_model
from blazefl.algorithms._base import Algorithm, ClientUpdate, weighted_average

if TYPE_CHECKING:
    import torch

__all__ = ["BlazeFLFedAvg", "FedAvg", "mean_update"]


def mean_update(updates: Sequence[ClientUpdate]) -> torch.Tensor:
    """The data-size-weighted mean of a round's client models (slot order)."""
    return weighted_average(
        [u.params for u in updates], [u.num_samples for u in updates]
    )


@dataclass(frozen=True)
class FedAvg(Algorithm):
    """x ← Σₖ nₖ·xₖ / Σₖ nₖ over the round's clients (or the server's
    aggregator in place of the mean)."""

    name: ClassVar[str] = "fedavg"
    pluggable_aggregation: ClassVar[bool] = True
    folds_updates: ClassVar[bool] = True

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        return aggregate_model(params, updates)


@dataclass(frozen=True)
class BlazeFLFedAvg(FedAvg):
    """FedAvg in BlazeFL 3.0's arithmetic, for its FedAvg handler.

    BlazeFL accumulates ``Σ xₖ·(nₖ/N)`` in the parameters' own dtype (float32),
    into zeros, in buffer order; `FedAvg` accumulates the same sum in float64
    and rounds once. Kept apart so `FedAvg` (and ``blazefl run``) keep their
    numbers and config digests. Its arithmetic is BlazeFL's own, so it takes
    no other aggregator.
    """

    pluggable_aggregation: ClassVar[bool] = False
    folds_updates: ClassVar[bool] = False

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        total = sum(u.num_samples for u in updates)
        acc = updates[0].params.clone().zero_()
        for u in updates:
            acc.add_(u.params, alpha=u.num_samples / total)
        return acc
