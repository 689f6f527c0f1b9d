"""SCAFFOLD (Karimireddy et al., 2020): control variates against client drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._aggregation import (
    WeightedMean,
    aggregate_delta,
    current_aggregator,
)
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate, LocalTraining
from blazefl.algorithms._settings import check_count, check_positive, setting

if TYPE_CHECKING:
    import torch
    from torch import nn

    from blazefl.sim import ClientContext
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["Scaffold", "parameter_views"]


def parameter_views(model: nn.Module, flat: torch.Tensor) -> list[torch.Tensor]:
    """Views of ``flat`` (a `serialize_model`-shaped vector) aligned with
    ``model.parameters()``: element i has the shape of parameter i.

    Control variates live in the same layout as the model vector; buffers
    (BatchNorm statistics) get a zero correction because SGD does not train
    them.
    """
    offsets: dict[str, tuple[int, torch.Size]] = {}
    offset = 0
    for name, tensor in model.state_dict().items():
        offsets[name] = (offset, tensor.shape)
        offset += tensor.numel()
    if offset != flat.numel():
        raise ConfigurationError(
            f"vector has {flat.numel()} elements; the model's state has {offset}"
        )
    views = []
    for name, param in model.named_parameters():
        start, shape = offsets[name]
        views.append(flat[start : start + param.numel()].view(shape))
    return views


@dataclass(frozen=True)
class Scaffold(Algorithm):
    """SCAFFOLD, option II of the paper.

    Client i, from the global model x with server variate c and its own cᵢ,
    takes K local SGD steps with gradients corrected by (c − cᵢ), ending at yᵢ,
    then sets cᵢ⁺ = cᵢ − c + (x − yᵢ)/(K·η_l) and uploads yᵢ and Δcᵢ = cᵢ⁺ − cᵢ.
    The server sets x ← x + η_g·mean(yᵢ − x) and c ← c + (|S|/N)·mean(Δcᵢ)
    (plain means over the round's clients, as in the paper). With a server
    aggregator other than the mean, it takes the place of mean(yᵢ − x), with
    every client weighted alike; the control variates keep their plain mean.

    :param num_clients: N, the number of clients in the federation.
    :param server_lr: η_g.
    """

    name: ClassVar[str] = "scaffold"
    uplink_extras: ClassVar[tuple[str, ...]] = ("delta_c",)
    pluggable_aggregation: ClassVar[bool] = True
    client_state_vectors: ClassVar[int] = 1  # c_i in ctx.state
    num_clients: int = setting(
        1, check_count, "N, the federation's size.", federation_size=True
    )
    server_lr: float = setting(1.0, check_positive, "Server learning rate η_g > 0.")

    def init_state(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"c": torch.zeros_like(params)}

    def broadcast_extra(
        self, state: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"c": state["c"]}

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        x = broadcast.params
        c = broadcast.extra["c"]
        c_i = ctx.state.get("c")
        if c_i is None:
            c_i = torch.zeros_like(x)
        correction = [v.to(local.device) for v in parameter_views(local.model, c - c_i)]

        def hook(model: nn.Module) -> None:
            for p, corr in zip(model.parameters(), correction, strict=True):
                if p.grad is not None:
                    p.grad.add_(corr)

        result = local.run(before_step=hook)
        y = local.params()
        if result.steps > 0:
            c_plus = c_i - c + (x - y) / (result.steps * local.lr)
        else:
            c_plus = c_i.clone()
        ctx.state["c"] = c_plus
        ctx.metrics["loss"] = result.loss
        return ClientUpdate(
            ctx.cid, y, local.num_samples, extra={"delta_c": c_plus - c_i}
        )

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        k = len(updates)
        delta_c = torch.zeros_like(params)
        for update in updates:
            delta_c.add_(update.extra["delta_c"])
        state["c"] = state["c"] + (k / self.num_clients) * (delta_c / k)
        if not isinstance(current_aggregator(), WeightedMean):
            return params + self.server_lr * aggregate_delta(
                params, updates, uniform=True
            )
        delta_y = torch.zeros_like(params)
        for update in updates:
            delta_y.add_(update.params - params)
        return params + self.server_lr * (delta_y / k)
