"""FedAvgM (Hsu et al., 2019): FedAvg with server momentum."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from blazefl.algorithms._base import (
    Algorithm,
    ClientUpdate,
    check_fraction,
    check_number,
)
from blazefl.algorithms._fedavg import mean_update

__all__ = ["FedAvgM"]


@dataclass(frozen=True)
class FedAvgM(Algorithm):
    """Server momentum on the pseudo-gradient Δ = mean(xₖ) − x:

    v ← β·v + Δ;  x ← x + η·v.   (η = 1, β = 0 is FedAvg.)

    :param server_lr: η, the server learning rate.
    :param momentum: β in [0, 1).
    """

    name: ClassVar[str] = "fedavgm"
    server_lr: float = 1.0
    momentum: float = 0.9

    def __post_init__(self) -> None:
        check_number("server_lr", self.server_lr)
        check_fraction("momentum", self.momentum)

    def init_state(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"velocity": torch.zeros_like(params)}

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        delta = mean_update(updates) - params
        velocity = state["velocity"].mul(self.momentum).add_(delta)
        state["velocity"] = velocity
        return params + self.server_lr * velocity
