"""Algorithms that keep part of the model on the client (FedPer, FedRep, FedBN).

`LocalParts` is the shared shape of these: some entries of the model vector
(a classifier head, the BatchNorm parameters and statistics) are the
client's own. Each client keeps its entries in ``ctx.state["local"]``, loads
them over the broadcast before training, stores them again afterwards, and
uploads the vector with the broadcast's values in their place, so they never
leave the client. The server averages the shared entries only: it finds the
local ones from its model when it is built (`Algorithm.init_model_state`, a
0/1 mask in its state, checkpointed with it) and keeps the global model's
values there, so the global head (or BatchNorm) never changes.

A client's personalized model (`Algorithm.personalize`) is the broadcast
with its own entries; a client that has never trained has the global ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._aggregation import aggregate_model
from blazefl.algorithms._base import Algorithm, Broadcast, ClientUpdate, LocalTraining

if TYPE_CHECKING:
    import torch
    from torch import nn

    from blazefl.sim import ClientContext
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["LocalParts", "batchnorm_entries", "entry_mask", "head_entries"]

_MASK = "local_mask"


def entry_mask(model: nn.Module, names: Iterable[str]) -> torch.Tensor:
    """A bool vector shaped like `serialize_model(model)`: True on the
    ``state_dict`` entries named in ``names``."""
    wanted = set(names)
    state = model.state_dict()
    unknown = wanted - set(state)
    if unknown:
        raise ConfigurationError(f"the model has no state entries {sorted(unknown)}")
    parts = [
        torch.full((t.numel(),), name in wanted, dtype=torch.bool)
        for name, t in state.items()
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


def head_entries(model: nn.Module, count: int) -> list[str]:
    """The names of the model's last ``count`` parameter tensors (its head:
    2 is the last layer's weight and bias)."""
    names = [name for name, _ in model.named_parameters()]
    if count >= len(names):
        raise ConfigurationError(
            f"head_tensors={count} would make every one of the model's "
            f"{len(names)} parameter tensors local, leaving nothing to share; "
            f"pass a number below {len(names)}"
        )
    return names[-count:]


def batchnorm_entries(model: nn.Module) -> list[str]:
    """Every ``state_dict`` entry of the model's BatchNorm layers (affine
    parameters and running statistics)."""
    found: list[str] = []
    for prefix, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._NormBase):
            found.extend(
                f"{prefix}.{key}" if prefix else key
                for key in module.state_dict(keep_vars=True)
            )
    if not found:
        raise ConfigurationError(
            "FedBN keeps BatchNorm layers local, but the model has none; use a "
            "model with BatchNorm (the zoo's 'cnn_bn')"
        )
    return found


class LocalParts(Algorithm):
    """Base of the algorithms that keep some model entries on the client.

    Subclasses say which entries (`local_entries`) and may train differently
    (`train_local`); aggregation is FedAvg over the shared entries.
    """

    personalized: ClassVar[bool] = True
    pluggable_aggregation: ClassVar[bool] = True
    folds_updates: ClassVar[bool] = True
    client_state_vectors: ClassVar[int] = 1  # at most the whole vector

    def local_entries(self, model: nn.Module) -> list[str]:
        """The ``state_dict`` names this algorithm keeps on each client."""
        raise NotImplementedError

    def train_local(self, ctx: ClientContext, local: LocalTraining) -> float:
        """Train ``local.model`` (holding the client's model); the mean loss."""
        return local.run().loss

    def mask(self, model: nn.Module) -> torch.Tensor:
        return entry_mask(model, self.local_entries(model))

    def init_model_state(
        self, model: nn.Module, params: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {_MASK: self.mask(model).to(params.dtype)}

    def own_model(self, ctx: ClientContext, local: LocalTraining) -> torch.Tensor:
        """The broadcast with the client's own entries (if it has any yet)."""
        params = local.params()
        mine = ctx.state.get("local")
        if mine is None:
            return params
        mask = self.mask(local.model)
        if mine.numel() != int(mask.sum()):
            raise ConfigurationError(
                f"client {ctx.cid}'s stored local entries have {mine.numel()} "
                f"elements; the model's local entries have {int(mask.sum())}"
            )
        params[mask] = mine
        return params

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        from blazefl.core import deserialize_model

        deserialize_model(local.model, self.own_model(ctx, local))
        ctx.metrics["loss"] = self.train_local(ctx, local)
        trained = local.params()
        mask = self.mask(local.model)
        ctx.state["local"] = trained[mask].clone()
        # The local entries never leave the client: the broadcast's go up.
        trained[mask] = broadcast.params[mask]
        return ClientUpdate(ctx.cid, trained, local.num_samples)

    def personalize(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> torch.Tensor | None:
        return self.own_model(ctx, local)

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        keep = state[_MASK].to(torch.bool)
        return torch.where(keep, params, aggregate_model(params, updates))
