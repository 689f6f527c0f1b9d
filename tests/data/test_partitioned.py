"""Tests for the in-memory, index-partitioned base data set."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from blazefl import ConfigurationError
from blazefl.core import PartitionedDataset
from blazefl.data import TensorPartitionedDataset
from blazefl.data._loader import TensorView


def _dataset(
    num_clients: int = 3, rows_per_client: int = 4
) -> TensorPartitionedDataset:
    n = num_clients * rows_per_client
    train_x = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    train_y = torch.arange(n) % 3
    indices = [
        np.arange(cid, n, num_clients) for cid in range(num_clients)
    ]  # interleaved rows, to see that views follow the given indices
    test_x = -torch.ones(5, 2)
    test_y = torch.tensor([0, 1, 2, 0, 1])
    return TensorPartitionedDataset(train_x, train_y, indices, test_x, test_y)


def _index_storage(view: object) -> int:
    assert isinstance(view, TensorView)
    return view.indices.untyped_storage().data_ptr()


def test_satisfies_protocol() -> None:
    """The base class is a PartitionedDataset."""
    assert isinstance(_dataset(), PartitionedDataset)


def test_client_view_holds_given_rows() -> None:
    """Client cid's partition is exactly the rows listed for it, in order."""
    data = _dataset()
    x, y = data.get_dataset("train", 1)[[0, 1, 2, 3]]
    assert x[:, 0].tolist() == [2.0, 8.0, 14.0, 20.0]
    assert y.tolist() == [1, 1, 1, 1]


def test_properties_and_histogram() -> None:
    """Clients, classes, input shape, sizes and label counts are reported."""
    data = _dataset()
    assert data.num_clients == 3
    assert data.num_classes == 3
    assert data.input_shape == (2,)
    assert [data.client_size(c) for c in range(3)] == [4, 4, 4]
    assert data.label_histogram(2) == [0, 0, 4]


def test_union_and_test_partitions() -> None:
    """cid=None gives every training row, and the test set is server-side."""
    data = _dataset()
    assert len(data.get_dataset("train", None)) == 12  # type: ignore[arg-type]
    x, y = data.get_dataset("test", None)[list(range(5))]
    assert torch.equal(x, -torch.ones(5, 2))
    assert y.tolist() == [0, 1, 2, 0, 1]


def test_views_share_data_and_one_index_storage() -> None:
    """Every client view indexes the same data tensor and one index storage."""
    data = _dataset(num_clients=5)
    views = [data.get_dataset("train", c) for c in range(5)]
    assert all(isinstance(v, TensorView) for v in views)
    union = data.get_dataset("train", None)
    assert isinstance(union, TensorView)
    assert all(v.data is union.data for v in views)  # type: ignore[attr-defined]
    assert len({_index_storage(v) for v in views}) == 1


def test_loader_yields_client_rows() -> None:
    """A client's shuffled loader yields each of its rows once per epoch."""
    data = _dataset()
    loader = data.get_dataloader("train", 0, 3, torch.Generator().manual_seed(0))
    xs = torch.cat([x for x, _ in loader])
    assert sorted(xs[:, 0].tolist()) == [0.0, 6.0, 12.0, 18.0]


def test_pickle_round_trip_keeps_views_sharing_storage() -> None:
    """After unpickling, client views still share one index storage and data."""
    data = pickle.loads(pickle.dumps(_dataset(num_clients=4)))
    assert len({_index_storage(data.get_dataset("train", c)) for c in range(4)}) == 1
    x, _ = data.get_dataset("train", 1)[[0, 1, 2]]
    assert x[:, 0].tolist() == [2.0, 10.0, 18.0]


def test_pickle_size_independent_of_client_count() -> None:
    """Pickling sends the one index tensor, not one storage per client."""
    n = 4000
    x, y = torch.zeros(n, 1), torch.zeros(n, dtype=torch.int64)
    test = (torch.zeros(1, 1), torch.zeros(1, dtype=torch.int64))
    one = TensorPartitionedDataset(x, y, [torch.arange(n)], *test, num_classes=2)
    many = TensorPartitionedDataset(
        x, y, [torch.tensor([i]) for i in range(n)], *test, num_classes=2
    )
    # One client offset more per client (8 bytes), nothing per-client beyond.
    extra = len(pickle.dumps(many)) - len(pickle.dumps(one))
    assert extra < 9 * n + 1000


def test_pickle_keeps_replaced_partitions() -> None:
    """A partition set with set_dataset survives pickling."""
    data = _dataset()
    data.set_dataset("train", 2, TensorDataset(torch.zeros(2, 2), torch.tensor([1, 1])))
    copy = pickle.loads(pickle.dumps(data))
    assert copy.client_size(2) == 2
    assert copy.label_histogram(2) == [0, 2, 0]
    assert copy.client_size(0) == 4


def _with_empty_clients(**kwargs: bool) -> TensorPartitionedDataset:
    return TensorPartitionedDataset(
        torch.zeros(3, 2),
        torch.tensor([0, 1, 1]),
        [[], [0, 1, 2], []],
        torch.zeros(1, 2),
        torch.tensor([0]),
        **kwargs,
    )


def test_empty_client_refused() -> None:
    """A client with no training rows is refused at construction, naming its id."""
    with pytest.raises(
        ConfigurationError,
        match=r"^2 of 3 clients have no training samples \(client ids: 0, 2\); "
        r"every client needs at least one: use fewer clients",
    ):
        _with_empty_clients()


def test_many_empty_clients_are_listed_briefly() -> None:
    """Past ten empty clients the message lists the first ten and their count."""
    with pytest.raises(
        ConfigurationError, match=r"^12 of 13 .*ids: 1, 2, .*, 10, \.\.\.\)"
    ):
        TensorPartitionedDataset(
            torch.zeros(1, 2),
            torch.zeros(1, dtype=torch.int64),
            [[0], *([[]] * 12)],
            torch.zeros(1, 2),
            torch.zeros(1, dtype=torch.int64),
        )


def test_empty_client_allowed_on_request() -> None:
    """allow_empty_clients=True keeps an empty client; its loader yields nothing."""
    data = _with_empty_clients(allow_empty_clients=True)
    assert data.client_size(0) == 0
    assert list(data.get_dataloader("train", 2, 4)) == []


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([[0, 1], [2, 12]], r"client 1's indices must lie in range\(0, 12\).*got 12"),
        ([[-1]], r"client 0's indices must lie in range\(0, 12\).*got -1"),
        ([[[0, 1]]], r"client 0's indices must be one-dimensional, got shape \(1, 2\)"),
        ([torch.tensor([0.0, 1.0])], r"client 0's indices must be integers"),
        ([], r"client_indices must list at least one client"),
    ],
)
def test_bad_indices_rejected(indices: list[object], message: str) -> None:
    """Client indices outside the rows, of the wrong shape or type fail early."""
    with pytest.raises(ConfigurationError, match=message):
        TensorPartitionedDataset(
            torch.zeros(12, 2),
            torch.zeros(12, dtype=torch.int64),
            indices,  # type: ignore[arg-type]
            torch.zeros(1, 2),
            torch.zeros(1, dtype=torch.int64),
        )


@pytest.mark.parametrize(
    ("train_y", "test_x", "kwargs", "message"),
    [
        (torch.zeros(3), torch.zeros(1, 2), {}, r"train targets must be a 1-D int64"),
        (
            torch.zeros(2, dtype=torch.int64),
            torch.zeros(1, 2),
            {},
            r"train data and targets differ in length: 3 rows of data, 2 targets",
        ),
        (
            torch.zeros(3, dtype=torch.int64),
            torch.zeros(1, 5),
            {},
            r"train and test samples differ in shape: \(2,\) and \(5,\)",
        ),
        (
            torch.tensor([0, 1, 4]),
            torch.zeros(1, 2),
            {"num_classes": 3},
            r"targets must lie in range\(0, 3\) \(num_classes=3\), got 4",
        ),
        (
            torch.tensor([0, -1, 1]),
            torch.zeros(1, 2),
            {},
            r"targets must be class ids >= 0, got -1",
        ),
    ],
)
def test_bad_tensors_rejected(
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    kwargs: dict[str, int],
    message: str,
) -> None:
    """Mismatched lengths, shapes or out-of-range targets fail at construction."""
    with pytest.raises(ConfigurationError, match=message):
        TensorPartitionedDataset(
            torch.zeros(3, 2),
            train_y,
            [[0]],
            test_x,
            torch.zeros(1, dtype=torch.int64),
            **kwargs,
        )


def test_bad_cid_and_type_rejected() -> None:
    """Unknown partition types and out-of-range client ids are rejected."""
    data = _dataset()
    with pytest.raises(ConfigurationError, match=r"range\(0, 3\).*got 3"):
        data.get_dataset("train", 3)
    with pytest.raises(ConfigurationError, match=r"server-side; pass cid=None"):
        data.get_dataloader("test", 0)
    with pytest.raises(ConfigurationError, match=r"unknown partition type 'val'"):
        data.get_dataset("val", None)
