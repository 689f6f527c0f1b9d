"""FedProx (Li et al., 2020): local SGD with a proximal term to the global model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from blazefl.algorithms._aggregation import aggregate_model
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate, LocalTraining
from blazefl.algorithms._settings import check_non_negative, setting

if TYPE_CHECKING:
    import torch
    from torch import nn

    from blazefl.sim import ClientContext

__all__ = ["FedProx", "proximal_hook"]


def proximal_hook(model: nn.Module, mu: float) -> tuple[list[torch.Tensor], object]:
    """A ``before_step`` hook adding μ·(w − w_global) to every gradient.

    That is the gradient of the proximal term (μ/2)·‖w − w_global‖², with
    w_global the parameters ``model`` holds when the hook is made.
    """
    anchor = [p.detach().clone() for p in model.parameters()]

    def hook(m: nn.Module) -> None:
        for p, g in zip(m.parameters(), anchor, strict=True):
            if p.grad is not None:
                p.grad.add_(p.detach() - g, alpha=mu)

    return anchor, hook


@dataclass(frozen=True)
class FedProx(Algorithm):
    """Each client minimises loss + (μ/2)·‖w − w_global‖²; the server averages.

    :param mu: μ ≥ 0, the proximal strength (μ = 0 is FedAvg).
    """

    name: ClassVar[str] = "fedprox"
    pluggable_aggregation: ClassVar[bool] = True
    folds_updates: ClassVar[bool] = True
    mu: float = setting(0.01, check_non_negative, "FedProx proximal strength μ >= 0.")

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        _, hook = proximal_hook(local.model, self.mu)
        result = local.run(before_step=hook)  # type: ignore[arg-type]
        ctx.metrics["loss"] = result.loss
        return ClientUpdate(ctx.cid, local.params(), local.num_samples)

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        return aggregate_model(params, updates)
