"""Asynchronous algorithms: FedBuff and FedAsync, which apply stale updates.

In asynchronous mode (`blazefl.simtime.SimTime` with ``mode="async"``) a
client's update may have been computed on an older global model than the one
the server holds when it arrives. An `AsyncAlgorithm` receives each update as
a `StaleUpdate`: the update, its staleness (server versions since the client's
model) and that base model, so it can apply the client's *change*. Run
synchronously (every staleness 0) they are ordinary round-based algorithms.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from blazefl._validate import check_fraction
from blazefl.algorithms._base import Algorithm, ClientUpdate
from blazefl.algorithms._settings import check_non_negative, check_positive, setting
from blazefl.algorithms._staleness import Staleness, check_staleness

if TYPE_CHECKING:
    import torch
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["AsyncAlgorithm", "FedAsync", "FedBuff", "StaleUpdate"]


@dataclass(frozen=True, slots=True)
class StaleUpdate:
    """One arrived update with the model version it was computed from."""

    update: ClientUpdate
    staleness: int
    base: torch.Tensor


class AsyncAlgorithm(Algorithm):
    """An algorithm that can apply stale updates (asynchronous mode needs one).

    ``buffer_size`` is how many arrivals make one server update by default.
    """

    default_buffer_size: ClassVar[int] = 1
    #: whether the server may take several arrivals per update
    buffered: ClassVar[bool] = True

    staleness: str
    staleness_a: float
    staleness_b: float

    def staleness_weight(self, staleness: int) -> float:
        kind = check_staleness("staleness", self.staleness)
        return Staleness(kind, self.staleness_a, self.staleness_b)(staleness)  # type: ignore[arg-type]

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """Synchronous use: every update is fresh (staleness 0)."""
        return self.aggregate_stale(
            params, [StaleUpdate(u, 0, params) for u in updates], state
        )

    @abstractmethod
    def aggregate_stale(
        self,
        params: torch.Tensor,
        updates: Sequence[StaleUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The next global model from arrived updates, in application order."""


# The staleness settings both algorithms declare, written once. Each class
# declares them at its own place among its fields (field order is the order
# of the command line's options and of a run's config file).
def _staleness_kind() -> Any:
    return setting(
        "polynomial",
        check_staleness,
        "Staleness function: constant, polynomial or hinge.",
    )


def _staleness_a() -> Any:
    return setting(
        0.5, check_positive, "Staleness exponent/slope a > 0 (polynomial, hinge)."
    )


def _staleness_b() -> Any:
    return setting(4.0, check_non_negative, "Hinge staleness threshold b >= 0.")


@dataclass(frozen=True)
class FedBuff(AsyncAlgorithm):
    """FedBuff (Nguyen et al., 2022, "Federated Learning with Buffered
    Asynchronous Aggregation", AISTATS): every K arrivals,

    x ← x + η · (1/K) · Σᵢ s(τᵢ) · (xᵢ − baseᵢ)

    where baseᵢ is the model client i started from and s the staleness
    weight (polynomial, a = 0.5, in the paper).
    """

    name: ClassVar[str] = "fedbuff"
    default_buffer_size: ClassVar[int] = 10
    server_lr: float = setting(1.0, check_positive, "Server learning rate η > 0.")
    staleness: str = _staleness_kind()
    staleness_a: float = _staleness_a()
    staleness_b: float = _staleness_b()

    def aggregate_stale(
        self,
        params: torch.Tensor,
        updates: Sequence[StaleUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        acc = torch.zeros_like(params, dtype=torch.float64)
        for u in updates:
            delta = u.update.params.to(torch.float64) - u.base.to(torch.float64)
            acc.add_(delta, alpha=self.staleness_weight(u.staleness))
        step = acc.mul_(self.server_lr / len(updates))
        return (params.to(torch.float64) + step).to(params.dtype)


@dataclass(frozen=True)
class FedAsync(AsyncAlgorithm):
    """FedAsync (Xie et al., 2019, "Asynchronous Federated Optimization",
    arXiv:1903.03934): each arrival is mixed in at once,

    x ← (1 − αₜ) · x + αₜ · xᵢ,   αₜ = α · s(τᵢ).
    """

    name: ClassVar[str] = "fedasync"
    buffered: ClassVar[bool] = False
    mixing: float = setting(0.6, check_fraction, "FedAsync mixing weight α in [0, 1).")
    staleness: str = _staleness_kind()
    staleness_a: float = _staleness_a()
    staleness_b: float = _staleness_b()

    def aggregate_stale(
        self,
        params: torch.Tensor,
        updates: Sequence[StaleUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        x = params.to(torch.float64)
        for u in updates:
            alpha = self.mixing * self.staleness_weight(u.staleness)
            x = x.mul(1.0 - alpha).add_(u.update.params.to(torch.float64), alpha=alpha)
        return x.to(params.dtype)
