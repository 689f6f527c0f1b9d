"""One training tensor pair, split over clients by index, plus a test pair.

`TensorPartitionedDataset` is the base of every built-in data set and the way
to bring your own: load (or generate) the samples once, say which rows each
client holds, and every client partition becomes a `TensorView` over the same
two tensors. Nothing is copied per client or per round, and nothing is read
back from disk.

All clients' row indices live in one int64 tensor with an offsets tensor; a
client's indices are a slice of it. Pickling the data set (as process
workers do) sends the two data tensors, the one index tensor and the offsets,
whatever the number of clients, instead of one storage per client.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from blazefl._exceptions import ConfigurationError
from blazefl.data._client_rows import (
    ClientIndices,
    as_index_tensor,
    client_tests,
    packed,
)
from blazefl.data._loader import TensorView, make_loader

__all__ = [
    "ClientIndices",
    "Partitioner",
    "TensorPartitionedDataset",
    "check_no_empty_clients",
]

#: Splits training targets over clients: ``targets -> [rows of client 0, ...]``.
Partitioner: TypeAlias = Callable[[torch.Tensor], Sequence[ClientIndices]]

_TRAIN = "train"
_TEST = "test"
_PARTITION_TYPES = (_TRAIN, _TEST)


def check_int(name: str, value: object, minimum: int) -> int:
    """`value` if it is an int (not a bool) of at least `minimum`, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(
            f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def check_seed(seed: object) -> int:
    """`seed` if it is a non-negative int, else raise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigurationError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def partition_type(type_: object) -> str:
    """``"train"`` or ``"test"`` for any value equal to one (a StrEnum too)."""
    for known in _PARTITION_TYPES:
        if type_ == known:
            return known
    raise ConfigurationError(
        f"unknown partition type {type_!r}; expected one of {_PARTITION_TYPES}"
    )


def iid_split(num_samples: int, num_clients: int, seed: int) -> list[torch.Tensor]:
    """Rows ``0 .. num_samples - 1`` shuffled by `seed`, dealt into near-equal parts.

    Client sizes differ by at most one. A simple default; richer partitioners
    (label skew, shards) take the targets and return index arrays the same way.
    """
    check_int("num_clients", num_clients, 1)
    if num_clients > num_samples:
        raise ConfigurationError(
            f"cannot split {num_samples} samples over {num_clients} clients; "
            "every client needs at least one sample"
        )
    order = np.random.default_rng(check_seed(seed)).permutation(num_samples)
    return [torch.from_numpy(part) for part in np.array_split(order, num_clients)]


def resolve_partition(
    partition: Sequence[ClientIndices] | Partitioner | None,
    targets: torch.Tensor,
    num_clients: int,
    seed: int,
) -> list[ClientIndices]:
    """Client index arrays from a list, a partitioner, or an IID split by seed."""
    check_int("num_clients", num_clients, 1)
    if partition is None:
        return list(iid_split(int(targets.shape[0]), num_clients, seed))
    parts = partition(targets) if callable(partition) else partition
    parts = list(parts)
    if len(parts) != num_clients:
        raise ConfigurationError(
            f"the partition has {len(parts)} clients but num_clients is "
            f"{num_clients}; pass one index array per client"
        )
    return parts


def check_no_empty_clients(sizes: Sequence[int]) -> None:
    """Refuse a split that leaves some client without a training sample."""
    empty = [cid for cid, size in enumerate(sizes) if size == 0]
    if not empty:
        return
    shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
    raise ConfigurationError(
        f"{len(empty)} of {len(sizes)} clients have no training samples (client "
        f"ids: {shown}); every client needs at least one: use fewer clients, a "
        "larger alpha or min_size >= 1 for dirichlet_partition, or pass "
        "allow_empty_clients=True if they are never sampled for training"
    )


def _check_pair(name: str, data: torch.Tensor, targets: torch.Tensor) -> None:
    if not isinstance(data, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ConfigurationError(f"{name} data and targets must be torch tensors")
    if targets.ndim != 1 or targets.dtype != torch.int64:
        raise ConfigurationError(
            f"{name} targets must be a 1-D int64 tensor, got shape "
            f"{tuple(targets.shape)} and dtype {targets.dtype}"
        )
    if data.ndim < 1 or data.shape[0] != targets.shape[0]:
        raise ConfigurationError(
            f"{name} data and targets differ in length: "
            f"{data.shape[0] if data.ndim else 0} rows of data, "
            f"{targets.shape[0]} targets"
        )


class TensorPartitionedDataset:
    """A `PartitionedDataset` over in-memory tensors, split over clients by index.

    `client_indices[cid]` lists the rows of `(train_x, train_y)` that client
    `cid` holds (clients may overlap or leave rows out); the test pair is one
    server-side partition (``cid=None``). `get_dataset("train", None)` is every
    training row, for centralised baselines. Partition types are ``"train"``
    and ``"test"`` (or any value equal to them, such as a StrEnum).

    `client_test_indices`, if given, lists each client's own rows of
    `(test_x, test_y)` (a per-client test split, as LEAF's users have): then
    ``get_dataset("test", cid)`` is client `cid`'s test data, for per-client
    evaluation, and `has_client_tests` is true. With
    ``client_tests_from_train=True`` they are rows of `(train_x, train_y)`
    instead: a split of each client's own data (`split_client_tests`), which
    the client's training rows must then leave out.

    Targets must be int64 class ids; `num_classes` defaults to one more than
    the largest target seen. Bad input fails here, at construction, and so
    does a client with no training rows (it could not compute an update):
    pass ``allow_empty_clients=True`` only if such clients are never sampled
    for training.
    """

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        client_indices: Sequence[ClientIndices],
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        *,
        num_classes: int | None = None,
        allow_empty_clients: bool = False,
        client_test_indices: Sequence[ClientIndices] | None = None,
        client_tests_from_train: bool = False,
    ) -> None:
        _check_pair("train", train_x, train_y)
        _check_pair("test", test_x, test_y)
        if tuple(train_x.shape[1:]) != tuple(test_x.shape[1:]):
            raise ConfigurationError(
                "train and test samples differ in shape: "
                f"{tuple(train_x.shape[1:])} and {tuple(test_x.shape[1:])}"
            )
        if len(client_indices) < 1:
            raise ConfigurationError("client_indices must list at least one client")
        num_rows = int(train_x.shape[0])
        parts = [
            as_index_tensor(cid, indices, num_rows)
            for cid, indices in enumerate(client_indices)
        ]
        if not isinstance(allow_empty_clients, bool):
            raise ConfigurationError(
                f"allow_empty_clients must be True or False, got "
                f"{allow_empty_clients!r}"
            )
        if not allow_empty_clients:
            check_no_empty_clients([int(p.shape[0]) for p in parts])
        largest = max(
            int(train_y.max()) if train_y.numel() else -1,
            int(test_y.max()) if test_y.numel() else -1,
        )
        smallest = min(
            int(train_y.min()) if train_y.numel() else 0,
            int(test_y.min()) if test_y.numel() else 0,
        )
        if smallest < 0:
            raise ConfigurationError(f"targets must be class ids >= 0, got {smallest}")
        if num_classes is None:
            num_classes = max(largest + 1, 2)
        check_int("num_classes", num_classes, 2)
        if largest >= num_classes:
            raise ConfigurationError(
                f"targets must lie in range(0, {num_classes}) "
                f"(num_classes={num_classes}), got {largest}"
            )
        self._num_classes = num_classes
        self._input_shape = tuple(int(d) for d in train_x.shape[1:])
        self._train = (train_x, train_y)
        self._test = (test_x, test_y)
        self._indices, self._offsets = packed(parts)
        if not isinstance(client_tests_from_train, bool):
            raise ConfigurationError(
                "client_tests_from_train must be True or False, got "
                f"{client_tests_from_train!r}"
            )
        self._tests_from_train = client_tests_from_train
        source = train_x if client_tests_from_train else test_x
        self._client_tests = client_tests(
            client_test_indices, len(parts), int(source.shape[0])
        )
        self._overrides: dict[tuple[str, int | None], Dataset[Any]] = {}
        self._build_views()

    def _build_views(self) -> None:
        train_x, train_y = self._train
        offsets = self._offsets.tolist()
        self._views: dict[tuple[str, int | None], TensorView] = {
            (_TRAIN, None): TensorView(train_x, train_y),
            (_TEST, None): TensorView(*self._test),
        }
        for cid in range(len(offsets) - 1):
            rows = self._indices[offsets[cid] : offsets[cid + 1]]
            self._views[_TRAIN, cid] = TensorView(train_x, train_y, rows)
        if self._client_tests is not None:
            indices, test_offsets = self._client_tests
            ends = test_offsets.tolist()
            for cid in range(len(ends) - 1):
                rows = indices[ends[cid] : ends[cid + 1]]
                pair = self._train if self._tests_from_train else self._test
                self._views[_TEST, cid] = TensorView(*pair, rows)

    def __getstate__(self) -> dict[str, Any]:
        # The views are rebuilt on unpickling: pickled one by one, each index
        # slice would carry (or share out) the whole index storage again.
        state = self.__dict__.copy()
        del state["_views"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build_views()

    @property
    def num_clients(self) -> int:
        """How many training partitions (clients) there are."""
        return int(self._offsets.shape[0]) - 1

    @property
    def has_client_tests(self) -> bool:
        """Whether every client has its own test partition (`client_test_indices`)."""
        return self._client_tests is not None

    @property
    def num_classes(self) -> int:
        """How many labels there are (targets are ``0 .. num_classes - 1``)."""
        return self._num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. ``(channels, height, width)``."""
        return self._input_shape

    def _key(self, type_: object, cid: object) -> tuple[str, int | None]:
        kind = partition_type(type_)
        if kind == _TEST and self._client_tests is None:
            if cid is not None:
                raise ConfigurationError(
                    f"the test partition is server-side; pass cid=None, got {cid!r}"
                )
            return kind, None
        if cid is None:
            return kind, None
        if (
            isinstance(cid, bool)
            or not isinstance(cid, int)
            or not 0 <= cid < self.num_clients
        ):
            raise ConfigurationError(
                f"cid must be an integer in range(0, {self.num_clients}) or None, "
                f"got {cid!r}"
            )
        return kind, cid

    def _client_dataset(self, cid: int) -> Dataset[Any]:
        if cid is None:
            raise ConfigurationError(
                f"cid must be an integer in range(0, {self.num_clients}), got None"
            )
        return self.get_dataset(_TRAIN, cid)

    def client_size(self, cid: int) -> int:
        """How many training samples client `cid` holds now."""
        return len(self._client_dataset(cid))  # type: ignore[arg-type]

    def label_histogram(self, cid: int) -> list[int]:
        """Client `cid`'s count of training samples per class."""
        dataset = self._client_dataset(cid)
        if isinstance(dataset, TensorView):
            targets = dataset.targets[dataset.indices]
        else:
            n = len(dataset)  # type: ignore[arg-type]
            targets = torch.as_tensor(
                [int(dataset[i][1]) for i in range(n)], dtype=torch.int64
            )
        return torch.bincount(targets, minlength=self._num_classes).tolist()

    def get_dataset(self, type_: str, cid: int | None) -> Dataset[Any]:
        """The partition `type_` of client `cid` (``cid=None``: server side).

        Train partitions index the shared tensors; no data are copied.
        """
        key = self._key(type_, cid)
        if key in self._overrides:
            return self._overrides[key]
        return self._views[key]

    def set_dataset(self, type_: str, cid: int | None, dataset: Dataset[Any]) -> None:
        """Replace the partition `type_` of client `cid` with `dataset`.

        Process and Ray workers get the data set again before the next round.
        """
        self._overrides[self._key(type_, cid)] = dataset
        self._version = getattr(self, "_version", 0) + 1

    def __blazefl_version__(self) -> Hashable:
        """Changes only through `set_dataset` (see `blazefl._versions`).

        A subclass defined outside blazefl may keep per-round state of its own,
        so unless it declares its own version it is sent again every round.
        """
        if not type(self).__module__.startswith("blazefl.data"):
            return object()
        return ("blazefl.data", getattr(self, "_version", 0))

    def get_dataloader(
        self,
        type_: str,
        cid: int | None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> DataLoader[Any]:
        """A loader over `get_dataset(type_, cid)` yielding `(x, y)` batches.

        Train batches are shuffled by `generator` alone (sequential without
        one); test batches are always sequential. ``batch_size=None`` yields
        the whole partition as one batch.
        """
        key = self._key(type_, cid)
        return make_loader(
            self.get_dataset(*key),
            batch_size,
            generator=generator,
            shuffle=key[0] == _TRAIN,
        )
