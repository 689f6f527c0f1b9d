"""A per-client test split for data sets that have none (every one but LEAF).

Per-client evaluation measures each client on data of its own distribution.
LEAF's users come with their own test samples; for the other data sets
`split_client_tests` holds out a seeded fraction of each client's own
training rows as that client's test partition. The held-out rows stop being
training rows, so a run with the split trains on less data than one without:
`blazefl run` splits only when per-client evaluation is asked for.

Client ``cid``'s split is a permutation drawn from ``derive_seed(seed,
SPLIT_STREAM, cid)``: it depends on the seed and the client alone, not on
the other clients nor on the order anything runs in. A client with ``n``
rows keeps ``n - t`` for training and tests on ``t = min(n - 1, max(1,
floor(fraction * n)))`` (at least one of each; a client with one row keeps it
for training and has no test data). Both keep the rows' original order.
"""

from __future__ import annotations

import math

import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data._partitioned import TensorPartitionedDataset
from blazefl.reproducibility import derive_seed

__all__ = ["SPLIT_STREAM", "split_client_tests", "held_out_count"]

#: The first key element of the split streams (``"splt"``); clients' training
#: streams are ``derive_seed(seed, cid)``, so the two never share a stream.
SPLIT_STREAM = 0x73706C74


def held_out_count(n: int, fraction: float) -> int:
    """How many of a client's ``n`` rows become its test rows."""
    if n < 2:
        return 0
    return min(n - 1, max(1, math.floor(fraction * n)))


def split_client_tests(
    dataset: TensorPartitionedDataset, fraction: float, *, seed: int
) -> TensorPartitionedDataset:
    """``dataset`` with ``fraction`` of each client's rows as its test data.

    The server-side test partition is unchanged. Use it on a data set
    without client tests (``dataset.has_client_tests`` is False); one with
    its own (LEAF) is refused, so a natural split is never replaced by
    accident.
    """
    if dataset.has_client_tests:
        raise ConfigurationError(
            "the data set already has a per-client test split (LEAF's own); "
            "use it rather than splitting the training data"
        )
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ConfigurationError(f"fraction must be a number, got {fraction!r}")
    if not 0.0 < fraction < 1.0:
        raise ConfigurationError(
            f"fraction must lie strictly between 0 and 1, got {fraction!r}"
        )
    train = dataset.get_dataset("train", None)
    test = dataset.get_dataset("test", None)
    train_x, train_y = train.data, train.targets  # type: ignore[attr-defined]
    test_x, test_y = test.data[test.indices], test.targets[test.indices]  # type: ignore[attr-defined]
    kept: list[torch.Tensor] = []
    held: list[torch.Tensor] = []
    for cid in range(dataset.num_clients):
        part = dataset.get_dataset("train", cid)
        rows = part.indices  # type: ignore[attr-defined]
        n = int(rows.shape[0])
        generator = torch.Generator().manual_seed(derive_seed(seed, SPLIT_STREAM, cid))
        order = torch.randperm(n, generator=generator)
        t = held_out_count(n, fraction)
        kept.append(rows[order[t:].sort().values])
        held.append(rows[order[:t].sort().values])
    return TensorPartitionedDataset(
        train_x,
        train_y,
        kept,
        test_x,
        test_y,
        num_classes=dataset.num_classes,
        client_test_indices=held,
        client_tests_from_train=True,
    )
