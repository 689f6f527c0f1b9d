"""Split a data set's indices over clients, IID or non-IID, from a seed.

Use these to turn any labelled data set into a federated one: each function
returns one sorted ``int64`` index array per client, and the same arguments
(including `seed`) always give the same split. Every function draws from its
own ``numpy.random.default_rng(seed)``, never from global state. Check a split
with `partition_report` before training on it.

Labels may be a NumPy array, a list or a `torch.Tensor` of non-negative
integers, one per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number

__all__ = [
    "client_inner_dirichlet_partition",
    "dirichlet_partition",
    "iid_partition",
    "label_skew_partition",
    "shard_partition",
    "unbalanced_partition",
    "unbalanced_sizes",
]

Indices = npt.NDArray[np.int64]
LabelsLike = npt.ArrayLike | torch.Tensor
SizeDistribution = Literal["lognormal", "powerlaw"]


def _rng(seed: object) -> np.random.Generator:
    return np.random.default_rng(check_int("seed", seed, 0))


def _check_clients(num_clients: object, num_samples: int) -> int:
    k = check_int("num_clients", num_clients, 1)
    if k > num_samples:
        raise ConfigurationError(
            f"num_clients={k} is more than the {num_samples} samples; every "
            "client needs at least one sample, so use fewer clients"
        )
    return k


def as_labels(labels: LabelsLike) -> npt.NDArray[np.int64]:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ConfigurationError(
            f"labels must be one-dimensional (one label per sample), got shape "
            f"{y.shape}"
        )
    if y.size == 0:
        raise ConfigurationError("labels must not be empty")
    if y.dtype.kind not in "iu":
        raise ConfigurationError(
            f"labels must be integers, got dtype {y.dtype}; convert class names "
            "to integer ids first"
        )
    if y.min() < 0:
        raise ConfigurationError(f"labels must be >= 0, got the label {int(y.min())}")
    return y.astype(np.int64)


def _finish(chunks: Sequence[Sequence[npt.NDArray[np.integer]]]) -> list[Indices]:
    """Join each client's chunks into one sorted int64 array."""
    return [
        np.sort(np.concatenate([np.asarray(c, dtype=np.int64) for c in parts]))
        if parts
        else np.empty(0, dtype=np.int64)
        for parts in chunks
    ]


def _by_class(y: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
    return [np.flatnonzero(y == c) for c in np.unique(y)]


def iid_partition(num_samples: int, num_clients: int, *, seed: int) -> list[Indices]:
    """Shuffle ``range(num_samples)`` and deal it out; sizes differ by at most 1."""
    n = check_int("num_samples", num_samples, 1)
    k = _check_clients(num_clients, n)
    perm = _rng(seed).permutation(n)
    return _finish([[part] for part in np.array_split(perm, k)])


def dirichlet_partition(
    labels: LabelsLike,
    num_clients: int,
    *,
    alpha: float,
    seed: int,
    min_size: int = 10,
    max_retries: int = 100,
) -> list[Indices]:
    """Label skew by class: split each class over clients by Dirichlet(`alpha`).

    The scheme of Hsu et al. (2019) as in FedLab and NIID-Bench: for each class,
    its shuffled samples are cut by proportions drawn from Dirichlet(`alpha`)
    over clients, skipping clients that already hold more than the mean, so
    sizes stay roughly even. Small `alpha` (0.1) gives each client few classes;
    large `alpha` (100) is close to IID. A draw in which some client holds
    fewer than `min_size` samples is discarded and the same generator draws
    again, up to `max_retries` times, so the result is still fixed by `seed`.
    """
    y = as_labels(labels)
    k = _check_clients(num_clients, y.size)
    a = check_number("alpha", alpha)
    min_size = check_int("min_size", min_size, 0)
    max_retries = check_int("max_retries", max_retries, 0)
    if min_size * k > y.size:
        raise ConfigurationError(
            f"min_size={min_size} for {k} clients needs {min_size * k} samples "
            f"but there are only {y.size}; lower min_size or use fewer clients"
        )
    rng = _rng(seed)
    classes = _by_class(y)
    mean = y.size / k
    smallest = 0
    for _ in range(max_retries + 1):
        chunks: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(k)]
        sizes = np.zeros(k, dtype=np.int64)
        for idx in classes:
            shuffled = rng.permutation(idx)
            open_ = sizes < mean
            p = rng.dirichlet(np.full(k, a)) * open_
            # Tiny alpha can put all the mass (in floating point) on full clients.
            p = p / p.sum() if p.sum() > 0 else open_ / open_.sum()
            cuts = (np.cumsum(p) * shuffled.size).astype(np.int64)[:-1]
            for cid, part in enumerate(np.split(shuffled, cuts)):
                chunks[cid].append(part)
                sizes[cid] += part.size
        smallest = int(sizes.min())
        if smallest >= min_size:
            return _finish(chunks)
    raise ConfigurationError(
        f"dirichlet_partition gave some client fewer than min_size={min_size} "
        f"samples in all {max_retries + 1} draws (the last draw's smallest client "
        f"had {smallest}) with alpha={alpha} and {k} clients; alpha is too small "
        "or there are too many clients: raise alpha, lower min_size, use fewer "
        "clients or allow more max_retries"
    )


def shard_partition(
    labels: LabelsLike,
    num_clients: int,
    *,
    shards_per_client: int = 2,
    seed: int,
) -> list[Indices]:
    """Pathological non-IID split of McMahan et al. (2017): a few label shards each.

    Samples are sorted by label (shuffled within a label), cut into
    ``num_clients * shards_per_client`` contiguous shards of (nearly) equal
    size, and the shards dealt out at random. When every class's size is a
    multiple of the shard size, a client sees at most `shards_per_client`
    classes.
    """
    y = as_labels(labels)
    k = _check_clients(num_clients, y.size)
    s = check_int("shards_per_client", shards_per_client, 1)
    if k * s > y.size:
        raise ConfigurationError(
            f"{k} clients x shards_per_client={s} needs {k * s} shards of at "
            f"least one sample but there are only {y.size} samples"
        )
    rng = _rng(seed)
    perm = rng.permutation(y.size)
    order = perm[np.argsort(y[perm], kind="stable")]
    shards = np.array_split(order, k * s)
    owner = rng.permutation(k * s)
    return _finish([[shards[i] for i in owner[c * s : (c + 1) * s]] for c in range(k)])


def label_skew_partition(
    labels: LabelsLike,
    num_clients: int,
    *,
    classes_per_client: int,
    seed: int,
) -> list[Indices]:
    """Quantity-based label skew ("#C=k" of NIID-Bench): exactly k classes each.

    Each client is given `classes_per_client` distinct classes, chosen at random
    among those held by the fewest clients so far, so every class is held once
    before any is held twice; a class's samples are split evenly among its
    holders. Needs ``num_clients * classes_per_client >= number of classes``.
    """
    y = as_labels(labels)
    k = _check_clients(num_clients, y.size)
    per = check_int("classes_per_client", classes_per_client, 1)
    classes = _by_class(y)
    num_classes = len(classes)
    if per > num_classes:
        raise ConfigurationError(
            f"classes_per_client={per} is more than the {num_classes} classes "
            "present in labels"
        )
    if k * per < num_classes:
        raise ConfigurationError(
            f"{k} clients x classes_per_client={per} cannot cover all "
            f"{num_classes} classes; raise classes_per_client or num_clients"
        )
    rng = _rng(seed)
    held = np.zeros(num_classes, dtype=np.int64)
    holders: list[list[int]] = [[] for _ in range(num_classes)]
    for cid in range(k):
        for c in np.lexsort((rng.random(num_classes), held))[:per]:
            held[c] += 1
            holders[c].append(cid)
    for c, idx in enumerate(classes):
        if idx.size < held[c]:
            raise ConfigurationError(
                f"a class has {idx.size} samples but is held by {held[c]} "
                "clients, so some would get none of it; lower num_clients or "
                "classes_per_client"
            )
    chunks: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(k)]
    for idx, owners in zip(classes, holders, strict=True):
        for cid, part in zip(
            owners, np.array_split(rng.permutation(idx), len(owners)), strict=True
        ):
            chunks[cid].append(part)
    return _finish(chunks)


def client_inner_dirichlet_partition(
    labels: LabelsLike,
    client_sizes: Sequence[int] | npt.NDArray[np.integer],
    *,
    alpha: float,
    seed: int,
) -> list[Indices]:
    """Clients of given sizes, each with its own label mix (FedLab's client-inner).

    Client ``i`` gets exactly ``client_sizes[i]`` samples. Its label mix is drawn
    from Dirichlet(``alpha * prior``), ``prior`` being the class frequencies in
    `labels` (Hsu et al., 2019); samples are then drawn without replacement, one
    at a time in a random client order, each from the client's mix restricted
    to the classes not yet used up. Samples left over are assigned to nobody.
    """
    y = as_labels(labels)
    sizes_in = np.asarray(client_sizes)
    if sizes_in.ndim != 1 or sizes_in.size == 0:
        raise ConfigurationError(
            f"client_sizes must be a non-empty 1-D sequence, got {client_sizes!r}"
        )
    sizes = np.array([check_int("each client size", v, 1) for v in sizes_in.tolist()])
    if sizes.sum() > y.size:
        raise ConfigurationError(
            f"client_sizes sum to {int(sizes.sum())} but there are only {y.size} "
            "samples"
        )
    a = check_number("alpha", alpha)
    rng = _rng(seed)
    classes = [rng.permutation(idx) for idx in _by_class(y)]
    left = np.array([idx.size for idx in classes], dtype=np.int64)
    prior = left / left.sum()
    mixes = rng.dirichlet(a * prior, size=sizes.size)
    order = rng.permutation(np.repeat(np.arange(sizes.size), sizes))
    draws = rng.random(order.size)
    chunks: list[list[int]] = [[] for _ in range(sizes.size)]
    cdf = np.cumsum(mixes, axis=1)
    for cid, u in zip(order.tolist(), draws.tolist(), strict=True):
        row = cdf[cid]
        c = min(int(np.searchsorted(row, u * row[-1], side="right")), left.size - 1)
        if left[c] == 0 or row[-1] <= 0:
            # Mix (in floating point) only on used-up classes: fall back to
            # the classes still left, in proportion to what is left.
            p = left / left.sum()
            c = min(int(np.searchsorted(np.cumsum(p), u, side="right")), left.size - 1)
            while left[c] == 0:
                c -= 1
        left[c] -= 1
        chunks[cid].append(int(classes[c][left[c]]))
        if left[c] == 0:
            cdf = np.cumsum(mixes * (left > 0), axis=1)
    return _finish([[np.array(ch, dtype=np.int64)] for ch in chunks])


def _unbalanced_sizes(
    rng: np.random.Generator,
    n: int,
    k: int,
    distribution: str,
    sigma: float,
    exponent: float,
) -> npt.NDArray[np.int64]:
    # Log-weights, so heavy tails (a small exponent) cannot overflow: the log
    # of a Pareto(exponent) variable with minimum 1 is Exponential(exponent).
    if distribution == "lognormal":
        log_w = sigma * rng.standard_normal(k)
    else:
        log_w = rng.standard_exponential(k) / exponent
    weights = np.exp(log_w - log_w.max())
    # Everyone gets one sample; the rest goes by largest remainder, so the
    # sizes sum exactly to n.
    quota = weights / weights.sum() * (n - k)
    sizes = np.floor(quota).astype(np.int64)
    short = (n - k) - int(sizes.sum())
    sizes[np.argsort(-(quota - sizes), kind="stable")[:short]] += 1
    out: npt.NDArray[np.int64] = sizes + 1
    return out


def _check_sizes_args(
    num_samples: object,
    num_clients: object,
    distribution: object,
    sigma: object,
    exponent: object,
) -> tuple[int, int, str, float, float]:
    n = check_int("num_samples", num_samples, 1)
    k = _check_clients(num_clients, n)
    if distribution not in ("lognormal", "powerlaw"):
        raise ConfigurationError(
            f"distribution must be 'lognormal' or 'powerlaw', got {distribution!r}"
        )
    return (
        n,
        k,
        str(distribution),
        check_number("sigma", sigma, allow_zero=True),
        check_number("exponent", exponent),
    )


def unbalanced_sizes(
    num_samples: int,
    num_clients: int,
    *,
    seed: int,
    distribution: SizeDistribution = "lognormal",
    sigma: float = 1.0,
    exponent: float = 1.5,
) -> npt.NDArray[np.int64]:
    """Client sizes, each >= 1, summing exactly to `num_samples`.

    Sizes are proportional to weights drawn from a log-normal with log-scale
    `sigma` (FedLab's ``unbalance_sgm``; 0 gives equal sizes) or, for
    ``"powerlaw"``, a Pareto distribution with tail index `exponent` (smaller is
    more unequal), as in the FedProx experiments.
    """
    n, k, dist, sig, exp = _check_sizes_args(
        num_samples, num_clients, distribution, sigma, exponent
    )
    return _unbalanced_sizes(_rng(seed), n, k, dist, sig, exp)


def unbalanced_partition(
    num_samples: int,
    num_clients: int,
    *,
    seed: int,
    distribution: SizeDistribution = "lognormal",
    sigma: float = 1.0,
    exponent: float = 1.5,
) -> list[Indices]:
    """IID samples in unequal amounts: `unbalanced_sizes` applied to a shuffle."""
    n, k, dist, sig, exp = _check_sizes_args(
        num_samples, num_clients, distribution, sigma, exponent
    )
    rng = _rng(seed)
    sizes = _unbalanced_sizes(rng, n, k, dist, sig, exp)
    perm = rng.permutation(n)
    return _finish([[part] for part in np.split(perm, np.cumsum(sizes)[:-1])])
