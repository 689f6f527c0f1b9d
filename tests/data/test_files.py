"""Tests for the CIFAR-10, MNIST and digits loaders, on files the tests write.

The CIFAR-10 batches are written byte for byte as the official ones are: a
Python 2 ``cPickle`` (protocol 2) of a dict with str keys, a uint8 array and a
list of labels. MNIST files are the official big-endian IDX format.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blazefl import ConfigurationError, MissingDependencyError
from blazefl.core import PartitionedDataset
from blazefl.data import (
    FileImageDataset,
    load_cifar10,
    load_digits_dataset,
    load_mnist,
)
from blazefl.data._loader import TensorView

_CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
_MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


# --- writers of the official formats -------------------------------------


def _py2_str(value: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle writes it (SHORT_BINSTRING or BINSTRING)."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<i", len(value)) + value


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    return b"J" + struct.pack("<i", value)


def _py2_uint8_array(array: np.ndarray) -> bytes:
    """An ndarray as NumPy under Python 2 reduced it: _reconstruct, then BUILD."""
    shape = b"".join(_py2_int(d) for d in array.shape)
    dtype = (
        b"cnumpy\ndtype\n"
        + _py2_str(b"u1")
        + _py2_int(0)
        + _py2_int(1)
        + b"\x87R("  # TUPLE3, REDUCE, MARK
        + _py2_int(3)
        + _py2_str(b"|")
        + b"NNN"
        + _py2_int(-1)
        + _py2_int(-1)
        + _py2_int(0)
        + b"tb"  # TUPLE, BUILD
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + _py2_int(0)
        + b"\x85"  # TUPLE1
        + _py2_str(b"b")
        + b"\x87R("  # TUPLE3, REDUCE, MARK
        + _py2_int(1)
        + shape
        + (b"\x86" if array.ndim == 2 else b"")  # TUPLE2
        + dtype
        + b"\x89"  # NEWFALSE: not Fortran order
        + _py2_str(array.tobytes())
        + b"tb"  # TUPLE, BUILD
    )


def _py2_list(items: bytes) -> bytes:
    return b"](" + items + b"e"  # EMPTY_LIST, MARK, ..., APPENDS


def _write_cifar_batch_py2(
    path: Path, data: np.ndarray, labels: list[int], name: str
) -> None:
    entries = [
        (b"batch_label", _py2_str(name.encode())),
        (b"labels", _py2_list(b"".join(_py2_int(y) for y in labels))),
        (b"data", _py2_uint8_array(data)),
        (
            b"filenames",
            _py2_list(b"".join(_py2_str(f"img_{i}.png".encode()) for i in labels)),
        ),
    ]
    body = b"".join(_py2_str(key) + value for key, value in entries)
    path.write_bytes(b"\x80\x02}(" + body + b"u.")


def _write_cifar_batch_py3(
    path: Path, data: np.ndarray, labels: list[int], name: str
) -> None:
    batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
    path.write_bytes(pickle.dumps(batch, protocol=4))


def _write_cifar(
    folder: Path, seed: int = 0, writer: object = _write_cifar_batch_py2
) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for i, name in enumerate(_CIFAR_FILES):
        n = 2 + i % 2
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        writer(folder / name, data, labels, name)  # type: ignore[operator]
        written[name] = (data, labels)
    return written


def _idx(magic: int, array: np.ndarray) -> bytes:
    return (
        struct.pack(">I", magic)
        + b"".join(struct.pack(">I", d) for d in array.shape)
        + array.astype(np.uint8).tobytes()
    )


def _write_mnist(
    folder: Path, *, gz: bool, seed: int = 0, num_train: int = 5, num_test: int = 3
) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        _MNIST_FILES[0]: rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        _MNIST_FILES[1]: rng.integers(0, 10, num_train, dtype=np.uint8),
        _MNIST_FILES[2]: rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        _MNIST_FILES[3]: rng.integers(0, 10, num_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        raw = _idx(0x803 if array.ndim == 3 else 0x801, array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


# --- CIFAR-10 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "writer", [_write_cifar_batch_py2, _write_cifar_batch_py3], ids=["py2", "py3"]
)
def test_cifar10_round_trip(tmp_path: Path, writer: object) -> None:
    """Pixels and labels come back exactly, train batches in order, as N,3,32,32."""
    written = _write_cifar(tmp_path / "cifar-10-batches-py", writer=writer)
    splits = load_cifar10(tmp_path)
    train_rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = [y for i in range(1, 6) for y in written[f"data_batch_{i}"][1]]
    assert splits.train_x.dtype == torch.uint8
    assert splits.train_x.shape == (len(train_labels), 3, 32, 32)
    assert torch.equal(splits.train_x.flatten(1), torch.from_numpy(train_rows))
    assert splits.train_y.tolist() == train_labels
    assert splits.train_y.dtype == torch.int64
    test_rows, test_labels = written["test_batch"]
    assert torch.equal(splits.test_x.flatten(1), torch.from_numpy(test_rows))
    assert splits.test_y.tolist() == test_labels


def test_cifar10_channel_layout(tmp_path: Path) -> None:
    """A row's first 1024 bytes are the red plane, row-major, as documented."""
    written = _write_cifar(tmp_path)
    splits = load_cifar10(tmp_path)
    first = written["data_batch_1"][0][0]
    red = torch.from_numpy(first[:1024].reshape(32, 32).copy())
    blue = torch.from_numpy(first[2048:].reshape(32, 32).copy())
    assert torch.equal(splits.train_x[0, 0], red)
    assert torch.equal(splits.train_x[0, 2], blue)


def test_cifar10_missing_names_every_file(tmp_path: Path) -> None:
    """Absent files fail with every expected name, the folders tried, no download."""
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    for name in _CIFAR_FILES:
        assert name in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "never downloads" in message


def test_cifar10_one_missing_batch_fails(tmp_path: Path) -> None:
    """Four of five training batches are not enough."""
    _write_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3"):
        load_cifar10(tmp_path)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_cifar10_malicious_pickle_rejected(tmp_path: Path) -> None:
    """A batch that calls any global but NumPy's array rebuild is refused unrun."""
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": _RunsCode(marker)}
    (folder / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(pickle.UnpicklingError, match=r"data_batch_2.*refusing.*system"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_cifar10_not_a_batch_rejected(tmp_path: Path) -> None:
    """A pickle of the wrong shape of data is named and rejected."""
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(ConfigurationError, match=r"test_batch: b'data' must be .*3072"):
        load_cifar10(tmp_path)


def test_cifar10_truncated_file_rejected(tmp_path: Path) -> None:
    """A cut-off pickle is reported as an unreadable batch, naming the file."""
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    path = folder / "data_batch_1"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ConfigurationError, match=r"data_batch_1 is not a readable"):
        load_cifar10(tmp_path)


def test_cifar10_folder_itself_accepted(tmp_path: Path) -> None:
    """root may also be the cifar-10-batches-py folder itself."""
    _write_cifar(tmp_path / "cifar-10-batches-py")
    assert load_cifar10(tmp_path / "cifar-10-batches-py").test_x.shape[0] == 3


# --- MNIST ------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_round_trip(tmp_path: Path, gz: bool) -> None:
    """IDX pixels and labels come back exactly, as N,1,28,28 uint8."""
    arrays = _write_mnist(tmp_path, gz=gz)
    splits = load_mnist(tmp_path)
    assert splits.train_x.shape == (5, 1, 28, 28)
    assert splits.train_x.dtype == torch.uint8
    assert torch.equal(splits.train_x[:, 0], torch.from_numpy(arrays[_MNIST_FILES[0]]))
    assert splits.train_y.tolist() == arrays[_MNIST_FILES[1]].tolist()
    assert splits.train_y.dtype == torch.int64
    assert torch.equal(splits.test_x[:, 0], torch.from_numpy(arrays[_MNIST_FILES[2]]))
    assert splits.test_y.tolist() == arrays[_MNIST_FILES[3]].tolist()


def test_mnist_torchvision_layout(tmp_path: Path) -> None:
    """Files under root/MNIST/raw, where torchvision keeps them, are found."""
    _write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    assert load_mnist(tmp_path).test_x.shape == (3, 1, 28, 28)


def test_mnist_missing_names_every_file(tmp_path: Path) -> None:
    """Absent files fail naming all four, the folders tried, and no download."""
    (tmp_path / _MNIST_FILES[0]).write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    for name in _MNIST_FILES:
        assert name in message
    assert str(tmp_path) in message
    assert "never downloads" in message


def test_mnist_wrong_magic_rejected(tmp_path: Path) -> None:
    """A labels file where images belong fails on its magic number."""
    _write_mnist(tmp_path, gz=False)
    labels = (tmp_path / _MNIST_FILES[1]).read_bytes()
    (tmp_path / _MNIST_FILES[0]).write_bytes(labels)
    with pytest.raises(
        ConfigurationError,
        match=r"train-images-idx3-ubyte .* magic number 0x00000801, "
        r"expected 0x00000803",
    ):
        load_mnist(tmp_path)


def test_mnist_truncated_rejected(tmp_path: Path) -> None:
    """A file shorter than its header declares is rejected, naming both sizes."""
    _write_mnist(tmp_path, gz=False)
    path = tmp_path / _MNIST_FILES[2]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ConfigurationError, match=r"shape \(3, 28, 28\) .* holds 2342"):
        load_mnist(tmp_path)


def test_mnist_count_mismatch_rejected(tmp_path: Path) -> None:
    """Image and label files of different lengths are rejected."""
    _write_mnist(tmp_path, gz=False)
    (tmp_path / _MNIST_FILES[3]).write_bytes(_idx(0x801, np.zeros(4, np.uint8)))
    with pytest.raises(ConfigurationError, match=r"3 images but .* 4 labels"):
        load_mnist(tmp_path)


def test_mnist_bad_gzip_rejected(tmp_path: Path) -> None:
    """A .gz file that is not gzip is named as unreadable."""
    _write_mnist(tmp_path, gz=True)
    (tmp_path / f"{_MNIST_FILES[1]}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ConfigurationError, match=r"not a readable gzip file"):
        load_mnist(tmp_path)


# --- FileImageDataset ---------------------------------------------------------


def test_cifar10_dataset_standardises(tmp_path: Path) -> None:
    """Images become (x / 255 - mean) / std per channel, as float32."""
    _write_cifar(tmp_path)
    raw = load_cifar10(tmp_path)
    data = FileImageDataset.cifar10(tmp_path, 3, seed=1)
    assert isinstance(data, PartitionedDataset)
    assert (data.num_classes, data.input_shape) == (10, (3, 32, 32))
    x, _ = data.get_dataset("test", None)[[0, 1, 2]]
    mean = torch.tensor(FileImageDataset.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(FileImageDataset.CIFAR10_STD).view(1, 3, 1, 1)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, (raw.test_x.float() / 255 - mean) / std)


def test_unstandardised_is_unit_range(tmp_path: Path) -> None:
    """standardize=False leaves pixels divided by 255, in [0, 1]."""
    arrays = _write_mnist(tmp_path, gz=False)
    data = FileImageDataset.mnist(tmp_path, 2, standardize=False)
    x, _ = data.get_dataset("test", None)[[0]]
    expected = torch.from_numpy(arrays[_MNIST_FILES[2]][0]).float() / 255
    torch.testing.assert_close(x[0, 0], expected)


def test_default_split_is_seeded_iid_cover(tmp_path: Path) -> None:
    """Without a partition, clients get a seeded shuffle of all rows, sizes even."""
    _write_mnist(tmp_path, gz=True, num_train=11)
    a = FileImageDataset.mnist(tmp_path, 3, seed=4)
    b = FileImageDataset.mnist(tmp_path, 3, seed=4)
    views = [a.get_dataset("train", c) for c in range(3)]
    assert all(isinstance(v, TensorView) for v in views)
    rows = torch.cat([v.indices for v in views])  # type: ignore[attr-defined]
    assert sorted(rows.tolist()) == list(range(11))
    assert sorted(a.client_size(c) for c in range(3)) == [3, 4, 4]
    for c in range(3):
        assert torch.equal(
            views[c].indices,  # type: ignore[attr-defined]
            b.get_dataset("train", c).indices,  # type: ignore[attr-defined]
        )


def test_given_partition_used(tmp_path: Path) -> None:
    """Index arrays, or a function of the targets, choose each client's rows."""
    _write_mnist(tmp_path, gz=False)
    data = FileImageDataset.mnist(tmp_path, 2, partition=[[4, 0], np.array([1])])
    view = data.get_dataset("train", 0)
    assert isinstance(view, TensorView)
    assert view.indices.tolist() == [4, 0]
    by_label = FileImageDataset.mnist(
        tmp_path,
        2,
        partition=lambda y: [torch.nonzero(y < 5)[:, 0], torch.nonzero(y >= 5)[:, 0]],
    )
    assert sum(by_label.label_histogram(0)[5:]) == 0
    assert sum(by_label.label_histogram(1)[:5]) == 0


def test_partition_of_wrong_length_rejected(tmp_path: Path) -> None:
    """A partition with another number of clients than num_clients fails early."""
    _write_mnist(tmp_path, gz=False)
    with pytest.raises(ConfigurationError, match=r"has 1 clients but num_clients is 2"):
        FileImageDataset.mnist(tmp_path, 2, partition=[[0, 1]])
    with pytest.raises(ConfigurationError, match=r"cannot split 5 samples over 6"):
        FileImageDataset.mnist(tmp_path, 6)


# --- digits -----------------------------------------------------------------


def test_digits_dataset() -> None:
    """scikit-learn's digits: 1797 8x8 images in [0, 1], ten classes, all used."""
    pytest.importorskip("sklearn")
    data = load_digits_dataset(5, seed=0)
    assert isinstance(data, PartitionedDataset)
    assert (data.num_clients, data.num_classes, data.input_shape) == (5, 10, (1, 8, 8))
    n_test = len(data.get_dataset("test", None))  # type: ignore[arg-type]
    assert n_test == 359
    assert sum(data.client_size(c) for c in range(5)) + n_test == 1797
    x, y = data.get_dataset("train", None)[list(range(1797 - n_test))]
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0
    assert torch.bincount(y).min() > 100


def test_digits_seeded() -> None:
    """Equal seeds give equal splits; other seeds other ones."""
    pytest.importorskip("sklearn")
    a, b, c = (load_digits_dataset(2, seed=s) for s in (1, 1, 2))
    ya = a.get_dataset("test", None)[list(range(50))][1]
    assert torch.equal(ya, b.get_dataset("test", None)[list(range(50))][1])
    assert not torch.equal(ya, c.get_dataset("test", None)[list(range(50))][1])


def test_digits_without_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without scikit-learn the error names the extra to install."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(MissingDependencyError, match=r"blazefl\[digits\]"):
        load_digits_dataset(2)
