"""Distance-based robust aggregators: Krum, Multi-Krum and Bulyan.

Krum scores every update by its squared distances to its n − f − 2 nearest
neighbours and keeps the lowest-scoring one: honest updates sit in a cluster,
a Byzantine one far from it (or alone) scores high. The pairwise distances
make it O(n²·d) per round (d: the model's size): see docs/robustness.md for
what that costs at 10, 100 and 1,000 clients a round.

Distances come from one float64 Gram matrix (‖a‖² + ‖b‖² − 2a·b); the
server's torch thread count is pinned by the executor, so the scores (and any
tie, broken by slot order) are the same on every executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int
from blazefl.algorithms import Aggregator, RoundUpdates
from blazefl.robust._aggregators import (
    check_byzantine,
    coordinate_median,
    need,
    stack,
    unflatten,
)

if TYPE_CHECKING:
    import torch
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["Bulyan", "Krum", "MultiKrum", "krum_scores", "pairwise_sq_distances"]


def pairwise_sq_distances(rows: torch.Tensor) -> torch.Tensor:
    """``D[i, j] = ‖rows[i] − rows[j]‖²`` for a float64 ``(n, d)`` matrix."""
    norms = (rows * rows).sum(dim=1)
    gram = rows @ rows.T
    distances = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min_(0)
    distances.fill_diagonal_(0)
    return distances


def krum_scores(distances: torch.Tensor, f: int) -> torch.Tensor:
    """Each row's Krum score: the sum of its n − f − 2 smallest distances to
    the other rows (at least one neighbour; 0 when it is alone)."""
    n = distances.shape[0]
    neighbours = max(n - f - 2, 1)
    if n == 1:
        return torch.zeros(1, dtype=distances.dtype)
    others = distances + torch.diag(torch.full((n,), float("inf"), dtype=torch.float64))
    return others.sort(dim=1).values[:, :neighbours].sum(dim=1)


def _ranked(scores: torch.Tensor) -> list[int]:
    """Slots from the lowest score up; ties in slot order."""
    return [int(i) for i in scores.sort(stable=True).indices]


@dataclass(frozen=True)
class Krum(Aggregator):
    """Krum (Blanchard et al., 2017, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent"): the one client update closest to
    its n − f − 2 nearest neighbours becomes the round's update.

    Tolerates f Byzantine clients when n >= 2f + 3 (the paper: 2f + 2 < n).
    Very robust to large or flipped updates, but it keeps a single client's
    update, so it throws away the variance reduction of averaging and, with
    non-IID clients, learns slowly; see `MultiKrum`.

    :param f: the number of Byzantine clients a round must tolerate.
    """

    name: ClassVar[str] = "krum"
    f: int = 0

    def __post_init__(self) -> None:
        check_byzantine(type(self).__name__, self.f)

    def check(self, n: int) -> None:
        need(self, n, 2 * self.f + 3, "2f + 3", "Blanchard et al., 2017: n > 2f + 2")

    def select(self, updates: RoundUpdates) -> list[int]:
        """The slots Krum keeps (one)."""
        self.check(len(updates))
        scores = krum_scores(pairwise_sq_distances(stack(updates)), self.f)
        return _ranked(scores)[:1]

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        (chosen,) = self.select(updates)
        return updates.deltas[chosen].clone()

    def next_model(self, updates: RoundUpdates) -> torch.Tensor:
        (chosen,) = self.select(updates)
        return updates.models[chosen].clone()  # exactly that client's model

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f}


@dataclass(frozen=True)
class MultiKrum(Krum):
    """Multi-Krum (Blanchard et al., 2017, section 5): the mean of the ``m``
    updates with the lowest Krum scores (default m = n − f).

    The same f-of-n assumption as `Krum` (n >= 2f + 3), with m <= n − f so
    the average can leave every Byzantine update out. Averages like FedAvg
    among the updates it trusts, so it learns nearly as fast without attack.

    :param f: the number of Byzantine clients a round must tolerate.
    :param m: how many updates to average [default: n − f].
    """

    name: ClassVar[str] = "multi-krum"
    m: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.m is not None:
            check_int(
                "m",
                self.m,
                wording="MultiKrum(m={value!r}): m, the number of updates to "
                "average, must be an integer >= {minimum}",
            )

    def kept(self, n: int) -> int:
        return n - self.f if self.m is None else self.m

    def check(self, n: int) -> None:
        super().check(n)
        if self.kept(n) > n - self.f:
            raise ConfigurationError(
                f"{self!r} averages m={self.m} updates, but with n={n} and f="
                f"{self.f} at most n − f = {n - self.f} are sure to be honest: "
                "lower m (or leave it out: m = n − f)"
            )

    def select(self, updates: RoundUpdates) -> list[int]:
        self.check(len(updates))
        scores = krum_scores(pairwise_sq_distances(stack(updates)), self.f)
        return _ranked(scores)[: self.kept(len(updates))]

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        rows = stack(updates)[self.select(updates)]
        return unflatten(rows.sum(dim=0) / rows.shape[0], updates.params)

    def next_model(self, updates: RoundUpdates) -> torch.Tensor:
        return updates.params + self.aggregate(updates)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f, "m": self.m}


@dataclass(frozen=True)
class Bulyan(Aggregator):
    """Bulyan (El Mhamdi et al., 2018, "The Hidden Vulnerability of
    Distributed Learning in Byzantium") over Krum.

    First θ = n − 2f updates are chosen by Krum, one at a time (each removed
    before the next choice); then, coordinate by coordinate, the β = θ − 2f
    chosen values closest to their median are averaged. Tolerates f Byzantine
    clients when n >= 4f + 3, and also bounds what an attacker can do in any
    single coordinate (Krum alone lets a far-off coordinate through). The
    strongest of these defences and the most demanding: 15 clients a round
    for f = 3.

    :param f: the number of Byzantine clients a round must tolerate.
    """

    name: ClassVar[str] = "bulyan"
    f: int = 0

    def __post_init__(self) -> None:
        check_byzantine("Bulyan", self.f)

    def check(self, n: int) -> None:
        need(self, n, 4 * self.f + 3, "4f + 3", "El Mhamdi et al., 2018: n >= 4f + 3")

    def select(self, updates: RoundUpdates) -> list[int]:
        """The θ = n − 2f slots chosen by repeated Krum, in order of choice."""
        n = len(updates)
        self.check(n)
        distances = pairwise_sq_distances(stack(updates))
        remaining = list(range(n))
        chosen: list[int] = []
        for _ in range(n - 2 * self.f):
            sub = distances[remaining][:, remaining]
            best = _ranked(krum_scores(sub, self.f))[0]
            chosen.append(remaining.pop(best))
        return chosen

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        rows = stack(updates)[self.select(updates)]
        beta = rows.shape[0] - 2 * self.f
        median = coordinate_median(rows)
        nearest = (rows - median).abs().argsort(dim=0, stable=True)[:beta]
        kept = rows.gather(0, nearest)
        return unflatten(kept.sum(dim=0) / beta, updates.params)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f}
