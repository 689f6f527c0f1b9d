"""Folding a round's updates into the aggregate one at a time, in slot order.

A `Fold` takes the round's client models in slot order (`add`) and gives the
next global model (`result`). `WeightedMean` computes its mean through one
whichever way the updates reach it: all at once, collected (`next_model`), or
folded by the coordinator while the other clients still train (the slots
``0..k-1`` folded before slot k, so the order is the slot order whatever order
clients finish in). The two paths run the same additions in the same order,
so their results are bitwise equal: folding only moves work earlier.

How a folded mean reaches the algorithm: the coordinator hands it over with
`prefolded` (a context variable, like `blazefl._prechecked`: it follows the one
aggregation call), and `blazefl.algorithms.aggregate_model` /
`aggregate_delta` take it (`folded_model`) only when it was folded by the
aggregator in force, from the server's current parameters, of exactly the
updates they are given (the same objects, in the same order); anything else
is aggregated as before.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from blazefl._exceptions import ConfigurationError

if TYPE_CHECKING:
    import torch
else:
    from blazefl.algorithms._lazy import torch

__all__ = [
    "AggregateDtype",
    "Float64MeanFold",
    "Fold",
    "FoldedRound",
    "ModelDtypeMeanFold",
    "RoundFold",
    "folded_model",
    "prefolded",
]

#: Where `WeightedMean` accumulates: the parameters' own dtype, or float64.
AggregateDtype = Literal["model", "float64"]


class Fold(ABC):
    """One round's aggregate, built update by update in slot order.

    Made by `Aggregator.start` from the round's global model; ``aggregator``
    and ``params`` say which aggregation of which model it is.
    """

    def __init__(self, aggregator: Any, params: torch.Tensor) -> None:
        self.aggregator = aggregator
        self.params = params

    @abstractmethod
    def add(self, model: torch.Tensor, weight: float) -> None:
        """Fold in the next slot's client model, weighted by ``weight``."""

    @abstractmethod
    def result(self) -> torch.Tensor:
        """The next global model from every update folded in (call once)."""


def _check_total(total: float) -> None:
    if not total > 0:
        raise ConfigurationError(f"weights must sum to a positive number, got {total}")


class ModelDtypeMeanFold(Fold):
    """Σₖ wₖ·xₖ accumulated in the models' dtype in slot order, then divided by
    Σₖ wₖ (summed exactly): no total is needed before the last update, and no
    float64 copy of any update is made. The mean of one update is that update,
    exactly (as in float64: a central-DP or secure-sum round is one update)."""

    def __init__(self, aggregator: Any, params: torch.Tensor) -> None:
        super().__init__(aggregator, params)
        self._first: torch.Tensor | None = None
        self._acc: torch.Tensor | None = None
        self._weights: list[float] = []

    def add(self, model: torch.Tensor, weight: float) -> None:
        if self._first is None:
            self._first = model
        else:
            if self._acc is None:
                self._acc = torch.mul(self._first, self._weights[0])
            self._acc.add_(model, alpha=weight)
        self._weights.append(weight)

    def result(self) -> torch.Tensor:
        if self._first is None:
            raise ConfigurationError("cannot average zero tensors")
        total = math.fsum(self._weights)
        _check_total(total)
        if self._acc is None:
            return self._first.clone()
        acc, self._acc = self._acc, None
        return acc.div_(total)


class Float64MeanFold(Fold):
    """Σₖ (wₖ/Σw)·xₖ in float64, rounded once: the arithmetic of blazefl
    before the model-dtype mean (`blazefl.algorithms.weighted_average`). Each
    term needs the round's total weight, so this fold only collects, and
    computes everything in `result`."""

    def __init__(self, aggregator: Any, params: torch.Tensor) -> None:
        super().__init__(aggregator, params)
        self._models: list[torch.Tensor] = []
        self._weights: list[float] = []

    def add(self, model: torch.Tensor, weight: float) -> None:
        self._models.append(model)
        self._weights.append(weight)

    def result(self) -> torch.Tensor:
        from blazefl.algorithms._base import weighted_average

        return weighted_average(self._models, self._weights)


@dataclass(slots=True)
class FoldedRound:
    """A round's next model, folded by ``aggregator`` from ``params`` over
    ``updates`` (slot order) while the clients trained. Taken at most once
    (``taken``): a second aggregation of the same updates computes its own."""

    aggregator: Any
    params: torch.Tensor
    updates: tuple[Any, ...]
    model: torch.Tensor
    taken: bool = False


_FOLDED: ContextVar[FoldedRound | None] = ContextVar("blazefl_folded", default=None)


@contextmanager
def prefolded(folded: FoldedRound | None) -> Iterator[None]:
    """Within this block, the round's aggregation may take ``folded``."""
    token = _FOLDED.set(folded)
    try:
        yield
    finally:
        _FOLDED.reset(token)


def folded_model(
    aggregator: Any, params: torch.Tensor, updates: Sequence[Any]
) -> torch.Tensor | None:
    """The prefolded next model, if it is ``aggregator``'s of exactly these
    ``params`` and ``updates``; else None (aggregate them as usual)."""
    folded = _FOLDED.get()
    if (
        folded is None
        or folded.taken
        or folded.aggregator is not aggregator
        or folded.params is not params
        or len(folded.updates) != len(updates)
        or any(a is not b for a, b in zip(folded.updates, updates, strict=True))
    ):
        return None
    folded.taken = True
    return folded.model


class RoundFold:
    """One round's fold as the server hands it to the coordinator
    (`blazefl.algorithms.FederatedServer.round_fold`).

    The coordinator calls `add` with each checked `ClientUpdate` in slot order
    (from one thread at a time), then aggregates inside `applied`.
    """

    def __init__(self, fold: Fold) -> None:
        self._fold = fold
        self._updates: list[Any] = []

    def add(self, update: Any) -> None:
        """Fold in the next slot's update (its model, weighted by its samples)."""
        self._fold.add(update.params, float(update.num_samples))
        self._updates.append(update)

    @contextmanager
    def applied(self, updates: Sequence[Any]) -> Iterator[None]:
        """Within this block the round's aggregation of ``updates`` takes the
        folded mean, if exactly these were folded (else it computes its own)."""
        same = len(updates) == len(self._updates) and all(
            a is b for a, b in zip(updates, self._updates, strict=True)
        )
        if not same or not updates:  # an empty round fails in the algorithm
            yield
            return
        fold = self._fold
        folded = FoldedRound(
            fold.aggregator, fold.params, tuple(updates), fold.result()
        )
        with prefolded(folded):
            yield
