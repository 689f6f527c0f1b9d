"""CIFAR-10 and MNIST read from the files a user already has; never downloaded.

`load_cifar10` reads the official "python version" of CIFAR-10 (the unpacked
``cifar-10-python.tar.gz``: ``cifar-10-batches-py/data_batch_1`` .. ``_5`` and
``test_batch``); `load_mnist` reads the four official IDX files, raw or
gzipped (Fashion-MNIST ships the same four names and format). Both return
the pixels as they are stored, uint8 ``(N, C, H, W)``, with int64 labels.
`FileImageDataset.cifar10` / `.mnist` read them once, scale them to float32
and split the training set over clients by index, so every client partition
is a view into one in-memory tensor.

The CIFAR-10 batches are pickles. Unpickling can run arbitrary code, so they
are read with an unpickler that resolves only the three NumPy names an array
needs and refuses every other global: a tampered file fails to load instead
of running anything.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, NamedTuple

import numpy as np
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data._partitioned import (
    ClientIndices,
    Partitioner,
    TensorPartitionedDataset,
    resolve_partition,
)

__all__ = ["FileImageDataset", "ImageSplits", "load_cifar10", "load_mnist"]

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_SHAPE = (3, 32, 32)

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX magic numbers: two zero bytes, 0x08 (unsigned byte), then the number of
# dimensions (3 for images, 1 for labels).
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801

_NEVER_DOWNLOADS = "blazefl never downloads data sets"

# The functions an ndarray's pickle calls, taken from NumPy itself so they are
# right for NumPy 1 (numpy.core) and 2 (numpy._core) alike.
_RECONSTRUCT = np.ndarray((0,), np.uint8).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

StrPath = str | os.PathLike[str]


class ImageSplits(NamedTuple):
    """Images and labels as stored on disk: uint8 ``(N, C, H, W)``, int64 ``(N,)``."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


class _ForbiddenGlobalError(pickle.UnpicklingError):
    pass


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled ndarray needs; refuses the rest."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        # encoding="bytes": the official batches are Python 2 pickles.
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise _ForbiddenGlobalError(
                f"{self._path}: refusing to load global {module}.{name}; a "
                "CIFAR-10 batch holds only dicts, bytes, lists, ints and NumPy "
                "arrays, so this file is not one (it may have been tampered with)"
            ) from None


def _missing_files_error(
    data_set: str, expected: Sequence[str], looked_in: Sequence[Path], how: str
) -> FileNotFoundError:
    places = ", ".join(str(p) for p in looked_in)
    return FileNotFoundError(
        f"{data_set} files not found: expected {', '.join(expected)} in one of "
        f"{places}. {_NEVER_DOWNLOADS}: {how}"
    )


def _cifar_dir(root: Path) -> Path:
    candidates = [root / _CIFAR_DIR, root]
    for directory in candidates:
        if all((directory / name).is_file() for name in (*_CIFAR_TRAIN, _CIFAR_TEST)):
            return directory
    raise _missing_files_error(
        "CIFAR-10",
        [*_CIFAR_TRAIN, _CIFAR_TEST],
        candidates,
        "unpack the CIFAR-10 python version (cifar-10-python.tar.gz) under "
        f"root, so that root/{_CIFAR_DIR}/ holds them",
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as file:
            batch = _ArraysOnlyUnpickler(file, path).load()
    except _ForbiddenGlobalError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        raise ConfigurationError(
            f"{path} is not a readable CIFAR-10 batch: {exc!r}"
        ) from exc
    if not isinstance(batch, dict):
        raise ConfigurationError(
            f"{path} is not a CIFAR-10 batch: expected a dict, got "
            f"{type(batch).__name__}"
        )
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ConfigurationError(
            f"{path} is not a CIFAR-10 batch: it lacks the b'data' or b'labels' key "
            f"(keys: {sorted(map(repr, batch))})"
        )
    row = int(np.prod(_CIFAR_SHAPE))
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != row
    ):
        raise ConfigurationError(
            f"{path}: b'data' must be a uint8 array of shape (N, {row}), got "
            f"{getattr(data, 'dtype', type(data).__name__)} "
            f"{getattr(data, 'shape', '')}"
        )
    if not isinstance(labels, list | np.ndarray) or not all(
        isinstance(label, int | np.integer) for label in labels
    ):
        raise ConfigurationError(f"{path}: b'labels' must be a list of ints")
    targets = np.asarray(labels, dtype=np.int64)
    if targets.shape != (data.shape[0],):
        raise ConfigurationError(
            f"{path}: {data.shape[0]} images but {targets.shape[0]} labels"
        )
    return data.reshape(-1, *_CIFAR_SHAPE), targets


def load_cifar10(root: StrPath) -> ImageSplits:
    """CIFAR-10's 50,000 training and 10,000 test images from the official files.

    `root` is the folder holding ``cifar-10-batches-py/`` (or that folder
    itself). Pixels are returned exactly as stored: uint8, ``(N, 3, 32, 32)``.
    Raises FileNotFoundError naming every expected file when any is absent,
    `pickle.UnpicklingError` when a file refers to anything but NumPy arrays,
    and ConfigurationError when a file is not a CIFAR-10 batch.
    """
    directory = _cifar_dir(Path(root))
    train = [_read_cifar_batch(directory / name) for name in _CIFAR_TRAIN]
    test_x, test_y = _read_cifar_batch(directory / _CIFAR_TEST)
    return ImageSplits(
        torch.from_numpy(np.concatenate([x for x, _ in train])),
        torch.from_numpy(np.concatenate([y for _, y in train])),
        torch.from_numpy(np.ascontiguousarray(test_x)),
        torch.from_numpy(test_y),
    )


def _mnist_paths(root: Path) -> dict[str, Path]:
    # The second place is where torchvision keeps them.
    candidates = [root, root / "MNIST" / "raw"]
    for directory in candidates:
        found: dict[str, Path] = {}
        for key, name in _MNIST_FILES.items():
            for path in (directory / name, directory / f"{name}.gz"):
                if path.is_file():
                    found[key] = path
                    break
        if len(found) == len(_MNIST_FILES):
            return found
    raise _missing_files_error(
        "MNIST",
        [f"{name}[.gz]" for name in _MNIST_FILES.values()],
        candidates,
        "put the four official IDX files (raw or gzipped) in root",
    )


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise ConfigurationError(
                f"{path} is not a readable gzip file: {exc}"
            ) from exc
    found = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 or found != magic:
        raise ConfigurationError(
            f"{path} is not an IDX file of {ndim}-D unsigned bytes: magic number "
            f"{found:#010x}, expected {magic:#010x}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigurationError(
            f"{path} is too short for an IDX header: {len(raw)} bytes, "
            f"need at least {header}"
        )
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = math.prod(shape)
    if len(raw) - header != expected:
        raise ConfigurationError(
            f"{path}: the header declares shape {shape} ({expected} bytes of "
            f"data) but the file holds {len(raw) - header}"
        )
    # Read-only over `raw`; load_mnist copies it into a tensor.
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _read_mnist_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = _read_idx(images, _IDX_IMAGES_MAGIC, 3)
    y = _read_idx(labels, _IDX_LABELS_MAGIC, 1)
    if x.shape[0] != y.shape[0]:
        raise ConfigurationError(
            f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels"
        )
    return x[:, None], y.astype(np.int64)


def load_mnist(root: StrPath) -> ImageSplits:
    """MNIST's 60,000 training and 10,000 test digits from the official IDX files.

    `root` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
    with ``.gz`` (or is torchvision's folder above ``MNIST/raw``). Pixels are
    returned exactly as stored: uint8, ``(N, 1, 28, 28)``. Raises
    FileNotFoundError naming every expected file when any is absent, and
    ConfigurationError on a wrong magic number or a size that does not match.
    """
    paths = _mnist_paths(Path(root))
    train_x, train_y = _read_mnist_pair(paths["train_images"], paths["train_labels"])
    test_x, test_y = _read_mnist_pair(paths["test_images"], paths["test_labels"])
    return ImageSplits(
        torch.from_numpy(train_x.copy()),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x.copy()),
        torch.from_numpy(test_y),
    )


_Stats = tuple[tuple[float, ...], tuple[float, ...]]


def _to_float(images: torch.Tensor, stats: _Stats | None) -> torch.Tensor:
    """uint8 pixels / 255, then standardised by per-channel `stats` if given."""
    out = images.to(torch.float32).div_(255.0)
    if stats is not None:
        mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in stats)
        out.sub_(mean).div_(std)
    return out


class FileImageDataset(TensorPartitionedDataset):
    """A real image data set read once from disk and split over clients by index.

    Build one with `cifar10` or `mnist`. Images become float32: pixels
    divided by 255, then (with ``standardize=True``, the default) shifted and
    scaled per channel by the usual training-set statistics,
    `CIFAR10_MEAN` / `CIFAR10_STD` and `MNIST_MEAN` / `MNIST_STD`.

    `partition` says which training rows each client holds: a list of
    ``num_clients`` index arrays, or a function from the training targets to
    such a list, e.g. ``lambda y: dirichlet_partition(y, 100, alpha=0.5,
    seed=0)``. Left out, the rows are shuffled by `seed` and dealt out evenly
    (IID). The test set is server-side.
    """

    CIFAR10_MEAN: ClassVar[tuple[float, ...]] = (0.4914, 0.4822, 0.4465)
    CIFAR10_STD: ClassVar[tuple[float, ...]] = (0.2470, 0.2435, 0.2616)
    MNIST_MEAN: ClassVar[tuple[float, ...]] = (0.1307,)
    MNIST_STD: ClassVar[tuple[float, ...]] = (0.3081,)

    @classmethod
    def _from_splits(
        cls,
        splits: ImageSplits,
        num_clients: int,
        partition: Sequence[ClientIndices] | Partitioner | None,
        seed: int,
        stats: _Stats | None,
    ) -> FileImageDataset:
        parts = resolve_partition(partition, splits.train_y, num_clients, seed)
        return cls(
            _to_float(splits.train_x, stats),
            splits.train_y,
            parts,
            _to_float(splits.test_x, stats),
            splits.test_y,
            num_classes=10,
        )

    @classmethod
    def cifar10(
        cls,
        root: StrPath,
        num_clients: int,
        *,
        partition: Sequence[ClientIndices] | Partitioner | None = None,
        seed: int = 0,
        standardize: bool = True,
    ) -> FileImageDataset:
        """CIFAR-10 from `root` (see `load_cifar10`), split over `num_clients`."""
        return cls._from_splits(
            load_cifar10(root),
            num_clients,
            partition,
            seed,
            (cls.CIFAR10_MEAN, cls.CIFAR10_STD) if standardize else None,
        )

    @classmethod
    def mnist(
        cls,
        root: StrPath,
        num_clients: int,
        *,
        partition: Sequence[ClientIndices] | Partitioner | None = None,
        seed: int = 0,
        standardize: bool = True,
    ) -> FileImageDataset:
        """MNIST from `root` (see `load_mnist`), split over `num_clients`."""
        return cls._from_splits(
            load_mnist(root),
            num_clients,
            partition,
            seed,
            (cls.MNIST_MEAN, cls.MNIST_STD) if standardize else None,
        )
