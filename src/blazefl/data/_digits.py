"""scikit-learn's bundled handwritten digits: a small real data set, no download."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError, MissingDependencyError
from blazefl.data._partitioned import (
    ClientIndices,
    Partitioner,
    TensorPartitionedDataset,
    check_seed,
    resolve_partition,
)

__all__ = ["load_digits_dataset"]

# Pixels of the bundled digits are counts 0..16 (of a 4x4 block of a 32x32
# bitmap).
_MAX_PIXEL = 16.0


def load_digits_dataset(
    num_clients: int = 10,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    partition: Sequence[ClientIndices] | Partitioner | None = None,
) -> TensorPartitionedDataset:
    """The 1,797 8x8 digits of `sklearn.datasets.load_digits`, split over clients.

    Use it when a test or example wants real (if tiny) images without a file
    on disk: they ship inside scikit-learn (``pip install 'blazefl[digits]'``).
    Images are float32 ``(1, 8, 8)`` in [0, 1]; there are 10 classes.

    A `seed`-shuffled `test_fraction` of the samples is the server-side test
    set. `partition` splits the remaining training rows (numbered from 0 in
    that order) over clients: a list of index arrays, or a function from the
    training targets to one; by default an IID split drawn from `seed`.
    """
    check_seed(seed)
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, int | float)
        or not 0 < test_fraction < 1
    ):
        raise ConfigurationError(
            f"test_fraction must be a number strictly between 0 and 1, "
            f"got {test_fraction!r}"
        )
    try:
        # Not typed; without scikit-learn the import is not found at all.
        from sklearn.datasets import (
            load_digits,
        )
    except ImportError as exc:
        raise MissingDependencyError(
            "the digits data set", extra="digits", package="scikit-learn"
        ) from exc

    images, labels = load_digits(return_X_y=True)
    x = torch.from_numpy((np.asarray(images) / _MAX_PIXEL).astype(np.float32))
    x = x.reshape(-1, 1, 8, 8)
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    num_test = max(1, round(test_fraction * len(y)))
    train_rows, test_rows = order[num_test:], order[:num_test]
    train_y = y[train_rows]
    return TensorPartitionedDataset(
        x[train_rows],
        train_y,
        resolve_partition(partition, train_y, num_clients, seed),
        x[test_rows],
        y[test_rows],
        num_classes=10,
    )
