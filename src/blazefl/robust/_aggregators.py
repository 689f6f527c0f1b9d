"""Coordinate-wise and norm-based robust aggregators: median, trimmed mean,
norm bounding.

Each replaces the weighted mean of a round's client deltas (see
`blazefl.algorithms.Aggregator`) and states how many Byzantine clients f of
the n a round aggregates it tolerates; `check` refuses an n that breaks it,
at the server's construction and again in a round that lost clients.

The coordinate-wise rules ignore the clients' sample counts, as in their
papers: a Byzantine client could claim any count. Everything is computed in
float64 and rounded once to the model's dtype; sorting and elementwise
arithmetic only, so the result is the same on every executor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number
from blazefl.algorithms import Aggregator, RoundUpdates, weighted_average

if TYPE_CHECKING:
    import torch
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["Median", "NormBound", "TrimmedMean", "coordinate_median", "stack"]


def stack(updates: RoundUpdates) -> torch.Tensor:
    """The round's deltas as one float64 ``(n, d)`` matrix, slot order."""
    return torch.stack([d.reshape(-1).to(torch.float64) for d in updates.deltas])


def coordinate_median(rows: torch.Tensor) -> torch.Tensor:
    """The median of each column of ``rows`` (the mean of the middle two for
    an even count, not torch's lower median)."""
    ordered = rows.sort(dim=0).values
    n, mid = rows.shape[0], rows.shape[0] // 2
    if n % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def unflatten(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``vector`` (float64, flat) in ``like``'s shape and dtype."""
    return vector.reshape(like.shape).to(like.dtype)


def check_byzantine(name: str, f: object) -> int:
    """f, the number of Byzantine clients to tolerate: an integer >= 0."""
    return check_int(
        "f",
        f,
        minimum=0,
        wording=f"{name}(f={{value!r}}): f, the number of Byzantine clients to "
        "tolerate, must be an integer >= {minimum}",
    )


def need(aggregator: Aggregator, n: int, minimum: int, rule: str, why: str) -> None:
    """Refuse ``n`` updates a round when the aggregator needs ``minimum``."""
    if n < minimum:
        raise ConfigurationError(
            f"{aggregator!r} needs n >= {rule} = {minimum} client updates a round "
            f"({why}), got n={n}: lower f or aggregate more clients per round"
        )


@dataclass(frozen=True)
class Median(Aggregator):
    """Coordinate-wise median (Yin et al., 2018, "Byzantine-Robust Distributed
    Learning: Towards Optimal Statistical Rates").

    Each coordinate of the aggregate delta is the median of the clients'
    values. It tolerates f < n/2 Byzantine clients (its breakdown point), so
    it needs n >= 2f + 1. Use it when attackers send large or flipped
    updates; with non-IID clients it also drops honest minorities, so it
    converges slower than the mean without attack.

    :param f: the number of Byzantine clients a round must tolerate.
    """

    name: ClassVar[str] = "median"
    f: int = 0

    def __post_init__(self) -> None:
        check_byzantine("Median", self.f)

    def check(self, n: int) -> None:
        need(self, n, 2 * self.f + 1, "2f + 1", "the median's breakdown point")

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        self.check(len(updates))
        return unflatten(coordinate_median(stack(updates)), updates.params)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f}


@dataclass(frozen=True)
class TrimmedMean(Aggregator):
    """Coordinate-wise trimmed mean (Yin et al., 2018).

    For each coordinate, drop the k largest and k smallest client values and
    average the rest, with k = f, or ⌊beta·n⌋ when ``beta`` is given. It
    tolerates f <= k Byzantine clients, so it needs k >= f and n >= 2k + 1.
    Gentler than the median when there is no attack (it averages n − 2k
    values), as robust when k covers the attackers.

    :param f: the number of Byzantine clients a round must tolerate.
    :param beta: the fraction trimmed from each side, in [0, 0.5).
    """

    name: ClassVar[str] = "trimmed-mean"
    f: int = 0
    beta: float | None = None

    def __post_init__(self) -> None:
        check_byzantine("TrimmedMean", self.f)
        if self.beta is not None:
            beta = check_number("beta", self.beta, allow_zero=True)
            if not beta < 0.5:
                raise ConfigurationError(
                    f"TrimmedMean(beta={self.beta!r}): beta, the fraction trimmed "
                    "from each side, must be in [0, 0.5)"
                )

    def trimmed(self, n: int) -> int:
        """k, the values dropped from each side of each coordinate."""
        if self.beta is None:
            return self.f
        return math.floor(self.beta * n)

    def check(self, n: int) -> None:
        k = self.trimmed(n)
        if k < self.f:
            raise ConfigurationError(
                f"{self!r} trims k = floor(beta * n) = {k} of n={n} updates from "
                f"each side, so it tolerates at most {k} Byzantine clients, not "
                f"f={self.f} (Yin et al., 2018: k >= f): raise beta or leave it "
                "out (then k = f)"
            )
        need(self, n, 2 * k + 1, "2k + 1", f"k = {k} trimmed from each side")

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        n = len(updates)
        self.check(n)
        k = self.trimmed(n)
        kept = stack(updates).sort(dim=0).values[k : n - k]
        return unflatten(kept.sum(dim=0) / (n - 2 * k), updates.params)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f, "beta": self.beta}


@dataclass(frozen=True)
class NormBound(Aggregator):
    """Norm bounding (Sun et al., 2019, "Can You Really Backdoor Federated
    Learning?"): clip each client's delta to L2 norm ``bound``, then take the
    sample-weighted mean.

    It makes no assumption on f: it caps what any one client can do (a
    boosted, model-replacement update shrinks to ``bound``) but does not
    remove a bad direction, so many small attackers still pull the mean.
    Pick ``bound`` around the norm of honest deltas (the paper: a little
    above their median norm).

    :param bound: M > 0, the largest L2 norm an update keeps.
    """

    name: ClassVar[str] = "norm-bound"
    bound: float = 1.0

    def __post_init__(self) -> None:
        check_number(
            "bound",
            self.bound,
            wording="NormBound(bound={value!r}): the norm bound must be a finite "
            "number > 0",
        )

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        clipped = []
        for delta in updates.deltas:
            wide = delta.to(torch.float64)
            norm = float(torch.linalg.vector_norm(wide))
            scale = min(1.0, self.bound / norm) if norm > 0 else 1.0
            clipped.append(wide * scale)
        return weighted_average(clipped, updates.weights).to(updates.params.dtype)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "bound": self.bound}
