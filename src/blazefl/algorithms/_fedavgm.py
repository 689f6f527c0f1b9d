"""FedAvgM (Hsu et al., 2019): FedAvg with server momentum."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from blazefl.algorithms._aggregation import aggregate_delta
from blazefl.algorithms._base import Algorithm, ClientUpdate
from blazefl.algorithms._settings import check_fraction, check_positive, setting

if TYPE_CHECKING:
    import torch
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["FedAvgM"]


@dataclass(frozen=True)
class FedAvgM(Algorithm):
    """Server momentum on the pseudo-gradient Δ = mean(xₖ) − x:

    v ← β·v + Δ;  x ← x + η·v.   (η = 1, β = 0 is FedAvg.)

    :param server_lr: η, the server learning rate.
    :param momentum: β in [0, 1).
    """

    name: ClassVar[str] = "fedavgm"
    pluggable_aggregation: ClassVar[bool] = True
    folds_updates: ClassVar[bool] = True
    server_lr: float = setting(1.0, check_positive, "Server learning rate η > 0.")
    momentum: float = setting(0.9, check_fraction, "FedAvgM server momentum in [0, 1).")

    def init_state(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"velocity": torch.zeros_like(params)}

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        delta = aggregate_delta(params, updates)
        velocity = state["velocity"].mul(self.momentum).add_(delta)
        state["velocity"] = velocity
        return params + self.server_lr * velocity
