"""What an algorithm is: a client update and a server aggregation, nothing else.

Loops, sampling, scheduling, logging and checkpoints belong to the coordinator
and to the generic `FederatedServer` / `FederatedClient` pair; an algorithm
only says how one client turns the broadcast into an update, and how the
server turns a round's updates into the next global model.

Models travel as flat vectors (`blazefl.core.serialize_model`: every
``state_dict`` tensor, buffers included). Algorithm tensors that travel too
(SCAFFOLD's control variates) live in the ``extra`` mappings.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_fraction, check_number
from blazefl.algorithms._settings import check_settings

if TYPE_CHECKING:
    import torch
    from torch import nn

    from blazefl.sim import ClientContext
    from blazefl.training import TrainResult
else:
    from blazefl.algorithms._lazy import torch

__all__ = [
    "Algorithm",
    "Broadcast",
    "ClientUpdate",
    "LocalTraining",
    "check_fraction",
    "check_number",
    "weighted_average",
]


@dataclass(frozen=True, slots=True)
class Broadcast:
    """What the server sends every sampled client in a round."""

    round: int
    params: torch.Tensor
    extra: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """What one client sends back: its new model and how much data made it."""

    cid: int
    params: torch.Tensor
    num_samples: int
    extra: Mapping[str, torch.Tensor] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class LocalTraining:
    """One client's local training, ready to run: the model already holds the
    broadcast parameters. Algorithms call `run` (with a gradient hook if they
    need one) and read the result back with `params`."""

    model: nn.Module
    loader: Any
    epochs: int
    lr: float
    device: str
    stop_event: Any
    num_samples: int

    def run(
        self, before_step: Callable[[nn.Module], None] | None = None
    ) -> TrainResult:
        """The shared SGD loop (`blazefl.training.train`)."""
        from blazefl.training import train

        return train(
            self.model,
            self.loader,
            epochs=self.epochs,
            lr=self.lr,
            device=self.device,
            stop_event=self.stop_event,
            before_step=before_step,
        )

    def params(self) -> torch.Tensor:
        """The model's parameters as a flat CPU vector."""
        from blazefl.core import serialize_model

        return serialize_model(self.model)


class Algorithm(ABC):
    """Subclass this to write a federated algorithm.

    Override `aggregate` (server) and, when the client does more than plain
    local SGD, `client_update`. Keep server state in the ``state`` dict
    `init_state` returns (it is checkpointed with the server) and client state
    in ``ctx.state`` (kept per client by the coordinator). Algorithms are
    frozen dataclasses in practice: picklable, validated at construction.
    """

    name: ClassVar[str]
    #: Keys of ``ClientUpdate.extra`` every update carries, each a tensor shaped
    #: like the model vector (SCAFFOLD's ``delta_c``): the server checks their
    #: shape and dtype against the global model before aggregating.
    uplink_extras: ClassVar[tuple[str, ...]] = ()
    #: Whether `aggregate` goes through the aggregator seam
    #: (`blazefl.algorithms.aggregate_model` / `aggregate_delta`), so that the
    #: server's aggregator (a robust one of `blazefl.robust`) takes the
    #: weighted mean's place; a server refuses any other aggregator for an
    #: algorithm that does not declare it.
    pluggable_aggregation: ClassVar[bool] = False
    #: Whether `aggregate` hands the round's updates, as given, to
    #: `aggregate_model` or to a weighted `aggregate_delta`: the server then
    #: folds them into the mean as clients finish (when its aggregator
    #: `folds`), and the call finds the mean ready. Only a scheduling
    #: hint: the folded mean is bitwise the one the call would compute.
    folds_updates: ClassVar[bool] = False
    #: How many tensors shaped like the model vector `client_update` keeps in
    #: ``ctx.state`` per client (SCAFFOLD's control variate): `blazefl run`'s
    #: memory estimate counts them for every client whose state is kept.
    client_state_vectors: ClassVar[int] = 0
    #: Whether each client keeps a model of its own (`personalize` returns
    #: one): per-client evaluation then reports it beside the global model.
    personalized: ClassVar[bool] = False

    def __post_init__(self) -> None:
        """Check every declared `setting` (a subclass's dataclass fields)."""
        check_settings(self)

    def init_state(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """Server-side algorithm state, created once from the initial model."""
        return {}

    def init_model_state(
        self, model: nn.Module, params: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """`init_state`, for algorithms whose server state depends on the
        model's layout (FedPer's head, FedBN's BatchNorm entries): the server
        calls this one, with its freshly built model (default: `init_state`)."""
        return self.init_state(params)

    def broadcast_extra(
        self, state: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Server state every client needs besides the model (default: none)."""
        return {}

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        """Plain local SGD from the broadcast model."""
        result = local.run()
        ctx.metrics["loss"] = result.loss
        return ClientUpdate(ctx.cid, local.params(), local.num_samples)

    def personalize(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> torch.Tensor | None:
        """Client ``ctx.cid``'s own model as a model vector, for evaluation.

        Per-client evaluation calls it (never training does), after measuring
        the global model, with ``local.model`` holding the broadcast (global)
        model and ``local.loader`` over the client's training data, shuffled
        by an evaluation RNG suite rather than the client's training stream.
        Read ``ctx.state``; never rely on writing it (evaluation discards what
        it changes). ``None`` (the default): the client's model is the global
        one. Personalized algorithms (Ditto's vᵢ, FedPer's local head, fine-
        tuning) return theirs, and set `personalized`.
        """
        return None

    @abstractmethod
    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The next global model from this round's updates (slot order).

        ``state`` may be updated in place (momentum buffers, control variates).
        """


def weighted_average(
    tensors: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """Σ wᵢ·tᵢ / Σ wᵢ, accumulated in float64 in the given order.

    Elementwise, so the result does not depend on torch's thread count.
    """
    if not tensors:
        raise ConfigurationError("cannot average zero tensors")
    total = math.fsum(weights)
    if not total > 0:
        raise ConfigurationError(f"weights must sum to a positive number, got {total}")
    acc = torch.zeros_like(tensors[0], dtype=torch.float64)
    for tensor, weight in zip(tensors, weights, strict=True):
        acc.add_(tensor.to(torch.float64), alpha=weight / total)
    return acc.to(tensors[0].dtype)
