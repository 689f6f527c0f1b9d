"""Size-skewed and natural-ID splits, matching the partitioners of `flwr-datasets`.

Use `size_partition` when a paper's clients hold IID data in amounts that grow
with the client's index (``"linear"``, ``"square"`` or ``"exponential"``, as
Flower Datasets' ``LinearPartitioner``, ``SquarePartitioner`` and
``ExponentialPartitioner``), and `natural_id_partition` when the data already
say who owns each sample (a writer, user or speaker column, as LEAF's data
sets do and as ``NaturalIdPartitioner`` reads them).

Sizes follow Flower's rule: with client ids ``1 .. M`` and a weight ``f(id)``
(``id``, ``id ** 2`` or ``e ** id``), client ``id`` gets
``floor(N * f(id) / sum(f))`` samples and the rounding remainder goes to the
largest (last) client. Unlike Flower, the rows are a seeded shuffle rather than
consecutive rows, so a data set stored sorted by label still gives IID clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int

__all__ = [
    "natural_id_partition",
    "natural_ids",
    "size_partition",
    "size_partition_sizes",
]

SizeGrowth = Literal["linear", "square", "exponential"]
_GROWTHS: tuple[str, ...] = ("linear", "square", "exponential")
Indices = npt.NDArray[np.int64]


def _weights(growth: str, k: int) -> npt.NDArray[np.float64]:
    ids = np.arange(1, k + 1, dtype=np.float64)
    if growth == "linear":
        return ids
    if growth == "square":
        return ids**2
    # e ** id / sum(e ** id), computed as e ** (id - M) so that it cannot
    # overflow: the ratio is the same.
    return np.exp(ids - k)


def size_partition_sizes(
    num_samples: int, num_clients: int, growth: SizeGrowth
) -> npt.NDArray[np.int64]:
    """How many samples each client gets under `growth`; they sum to `num_samples`.

    Raises `ConfigurationError` if a client would get no sample (too many
    clients for the data, which ``"exponential"`` reaches quickly: its first
    client's share is about ``e ** -(M - 1)``).
    """
    n = check_int("num_samples", num_samples, 1)
    k = check_int("num_clients", num_clients, 1)
    if growth not in _GROWTHS:
        raise ConfigurationError(
            f"growth must be one of {', '.join(map(repr, _GROWTHS))}, got {growth!r}"
        )
    w = _weights(growth, k)
    sizes: npt.NDArray[np.int64] = np.floor(n * w / w.sum()).astype(np.int64)
    sizes[-1] += n - int(sizes.sum())
    if int(sizes.min()) < 1:
        empty = int(np.flatnonzero(sizes < 1).size)
        raise ConfigurationError(
            f"a {growth} size split of {n} samples over {k} clients leaves "
            f"{empty} client(s) with no sample; use fewer clients or another "
            "growth"
        )
    return sizes


def size_partition(
    num_samples: int, num_clients: int, *, growth: SizeGrowth, seed: int
) -> list[Indices]:
    """IID rows in amounts that grow with the client id (see the module docstring).

    Each client's indices are sorted; the same arguments always give the same
    split.
    """
    sizes = size_partition_sizes(num_samples, num_clients, growth)
    perm = np.random.default_rng(check_int("seed", seed, 0)).permutation(num_samples)
    parts = np.split(perm, np.cumsum(sizes)[:-1])
    return [np.sort(p).astype(np.int64) for p in parts]


def natural_id_partition(ids: Sequence[object] | npt.ArrayLike) -> list[Indices]:
    """One client per distinct value of `ids` (one owner id per sample).

    Clients are numbered in the order their id first appears, so a file that
    lists users in a fixed order gives the same client numbering every time;
    `natural_ids` returns that order, to map a client back to its owner.
    """
    owners = np.asarray(ids, dtype=object)
    if owners.ndim != 1 or owners.size == 0:
        raise ConfigurationError(
            f"ids must be a non-empty one-dimensional sequence (one owner per "
            f"sample), got shape {owners.shape}"
        )
    order: dict[object, list[int]] = {}
    for row, owner in enumerate(owners.tolist()):
        try:
            order.setdefault(owner, []).append(row)
        except TypeError:
            raise ConfigurationError(
                f"ids must be hashable (str or int), got {owner!r} at row {row}"
            ) from None
    return [np.asarray(rows, dtype=np.int64) for rows in order.values()]


def natural_ids(ids: Sequence[object] | npt.ArrayLike) -> list[object]:
    """The owner of each client of `natural_id_partition(ids)`, in client order."""
    return list(dict.fromkeys(np.asarray(ids, dtype=object).tolist()))
