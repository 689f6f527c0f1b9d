"""The aggregator seam: how a round's client updates become one server step.

Every built-in algorithm turns its updates into the next model through this
module instead of computing the weighted mean itself, so a robust aggregator
(`blazefl.robust`: median, trimmed mean, Krum, Bulyan, norm bounding) or a
privacy one (central DP: clip, sum, noise) can take the mean's place under any
algorithm::

    FederatedServer(FedAdam(), zoo, "cnn", ..., aggregator=Median(f=2))

An `Aggregator` sees the round as a `RoundUpdates`: the global model the round
started from, each client's model and weight (its sample count) in slot
order, and the server's RNG suite (for an aggregator that draws noise: its
draws are checkpointed with the server). It returns the aggregate *delta*.

`FederatedServer` makes its aggregator current (a context variable, as
`blazefl._prechecked` does: it follows the one aggregation call, also into
the worker thread anyio runs it on) around ``algorithm.aggregate``; the
algorithms ask `aggregate_model` or `aggregate_delta`. The default,
`WeightedMean`, accumulates in the model's dtype; ``WeightedMean(dtype=
"float64")`` is the arithmetic of earlier versions, bit for bit.

An aggregator that `folds` (the model-dtype mean) can take the round's updates
one at a time as clients finish (`start`, `blazefl.algorithms._fold`): the
coordinator folds the completed prefix of slots while the others train, and
the algorithm's `aggregate_model` / `aggregate_delta` then finds that mean
ready, bitwise what it would have computed from the collected updates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms._base import ClientUpdate
from blazefl.algorithms._fold import (
    AggregateDtype,
    Float64MeanFold,
    Fold,
    ModelDtypeMeanFold,
    folded_model,
)

if TYPE_CHECKING:
    import torch

    from blazefl.reproducibility import RNGSuite

__all__ = [
    "AggregateDtype",
    "Aggregator",
    "Fold",
    "RoundUpdates",
    "WeightedMean",
    "aggregate_delta",
    "aggregate_model",
    "aggregating",
    "current_aggregator",
]


@dataclass(frozen=True)
class RoundUpdates:
    """One round as an aggregator sees it (slot order throughout).

    ``deltas`` (``models[k] - params``) are computed once, on first use.
    """

    params: torch.Tensor
    models: tuple[torch.Tensor, ...]
    weights: tuple[float, ...]
    cids: tuple[int, ...] = ()
    rng: RNGSuite | None = None

    @classmethod
    def of(
        cls,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        *,
        uniform: bool = False,
        rng: RNGSuite | None = None,
    ) -> RoundUpdates:
        """The round of ``updates``, weighted by sample count (or 1 each)."""
        return cls(
            params,
            tuple(u.params for u in updates),
            tuple(1.0 if uniform else float(u.num_samples) for u in updates),
            tuple(u.cid for u in updates),
            rng,
        )

    def __len__(self) -> int:
        return len(self.models)

    @cached_property
    def deltas(self) -> tuple[torch.Tensor, ...]:
        return tuple(m - self.params for m in self.models)


class Aggregator(ABC):
    """Subclass this to aggregate a round's updates your own way.

    Override `aggregate` (the aggregate delta) and, if the aggregator only
    holds under an assumption on the number of updates n (at most f of them
    Byzantine), `check`: the server calls it at construction with its clients
    per round, and again each round with the updates that actually arrived.
    An aggregator that keeps state across rounds (an adaptive clipping norm)
    returns it from `state_dict`; the server checkpoints it.
    """

    name: ClassVar[str]
    #: Whether it needs each client's update (a secure sum only reveals their
    #: sum: median, Krum and the like cannot run on it).
    needs_individual_updates: ClassVar[bool] = True

    @property
    def folds(self) -> bool:
        """Whether `start` folds updates as they arrive (False: the aggregator
        needs the whole round first, as a median, Krum, a clip to the round's
        norms or a secure sum do). The coordinator folds only when True."""
        return False

    def start(self, params: torch.Tensor) -> Fold:
        """A `Fold` of the round starting from ``params`` (aggregators that
        `folds`; the others collect first and have none)."""
        raise ConfigurationError(
            f"{type(self).__name__} aggregates the whole round at once; it has "
            "no fold (see Aggregator.folds)"
        )

    def check(self, n: int) -> None:  # noqa: B027 - optional hook
        """Raise `ConfigurationError` if ``n`` updates a round break the
        aggregator's assumption (default: any n >= 1 will do)."""

    @abstractmethod
    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        """The aggregate delta, shaped and typed like ``updates.params``."""

    def next_model(self, updates: RoundUpdates) -> torch.Tensor:
        """The next global model: ``params + aggregate(updates)``."""
        return updates.params + self.aggregate(updates)

    def state_dict(self) -> dict[str, Any]:
        """State carried across rounds, for checkpoints (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        if state:
            raise ConfigurationError(
                f"{type(self).__name__} keeps no state, but the checkpoint holds "
                f"aggregator state with keys {sorted(state)}"
            )

    def describe(self) -> dict[str, Any]:
        """Name and settings, for a run's summary."""
        return {"name": self.name}


_DTYPES = ("model", "float64")


@dataclass(frozen=True)
class WeightedMean(Aggregator):
    """Σₖ nₖ·xₖ / Σₖ nₖ (McMahan et al., 2017): every algorithm's default.

    Not robust: one client can move it arbitrarily far. It averages the
    client *models* (not their deltas), in slot order.

    :param dtype: ``"model"`` (the default) accumulates Σₖ nₖ·xₖ in the
        parameters' own dtype and divides by Σₖ nₖ at the end: it needs no
        total in advance, so it `folds` (the coordinator adds each update as
        the slots before it are in, while the other clients train) and copies
        nothing. ``"float64"`` is the arithmetic of earlier versions, bit for
        bit: Σₖ (nₖ/Σn)·xₖ accumulated in float64 and rounded once, a little
        more accurate for large or low-precision (float16, bfloat16) models;
        each term needs the round's total weight, so it collects the round
        first (no folding) and converts every update to float64.
    """

    name: ClassVar[str] = "mean"
    needs_individual_updates: ClassVar[bool] = False
    dtype: AggregateDtype = "model"

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ConfigurationError(
                f"WeightedMean(dtype={self.dtype!r}): expected one of "
                f"{', '.join(map(repr, _DTYPES))}"
            )

    @property
    def folds(self) -> bool:
        return self.dtype == "model"

    def start(self, params: torch.Tensor) -> Fold:
        if self.dtype == "model":
            return ModelDtypeMeanFold(self, params)
        return Float64MeanFold(self, params)

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        return self.next_model(updates) - updates.params

    def next_model(self, updates: RoundUpdates) -> torch.Tensor:
        fold = self.start(updates.params)
        for model, weight in zip(updates.models, updates.weights, strict=True):
            fold.add(model, weight)
        return fold.result()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


_MEAN = WeightedMean()
_CURRENT: ContextVar[tuple[Aggregator, RNGSuite | None]] = ContextVar(
    "blazefl_aggregator", default=(_MEAN, None)
)


@contextmanager
def aggregating(aggregator: Aggregator, rng: RNGSuite | None = None) -> Iterator[None]:
    """Within this block, algorithms aggregate with ``aggregator``."""
    token = _CURRENT.set((aggregator, rng))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_aggregator() -> Aggregator:
    """The aggregator in force (`WeightedMean` outside `aggregating`)."""
    return _CURRENT.get()[0]


def _round(
    params: torch.Tensor, updates: Sequence[ClientUpdate], uniform: bool
) -> tuple[Aggregator, RoundUpdates, torch.Tensor | None]:
    """The aggregator in force, the round, and its next model if the
    coordinator already folded it (weighted rounds only)."""
    aggregator, rng = _CURRENT.get()
    if not updates:
        raise ConfigurationError("cannot aggregate a round of zero client updates")
    aggregator.check(len(updates))
    folded = None if uniform else folded_model(aggregator, params, updates)
    return (
        aggregator,
        RoundUpdates.of(params, updates, uniform=uniform, rng=rng),
        folded,
    )


def aggregate_model(
    params: torch.Tensor, updates: Sequence[ClientUpdate]
) -> torch.Tensor:
    """The next global model from ``updates`` (FedAvg, FedProx): the weighted
    mean of the client models, or what the current aggregator makes of them."""
    aggregator, round_, folded = _round(params, updates, uniform=False)
    return folded if folded is not None else aggregator.next_model(round_)


def aggregate_delta(
    params: torch.Tensor, updates: Sequence[ClientUpdate], *, uniform: bool = False
) -> torch.Tensor:
    """The aggregate pseudo-gradient Δ (FedAvgM, FedOpt, SCAFFOLD's uniform
    mean): ``mean(xₖ) − x`` by default, or the current aggregator's delta."""
    aggregator, round_, folded = _round(params, updates, uniform=uniform)
    if folded is not None:  # what `WeightedMean.aggregate` computes
        return folded - params
    return aggregator.aggregate(round_)
