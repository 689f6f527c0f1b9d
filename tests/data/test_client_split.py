"""`split_client_tests`: a seeded per-client test split of each client's data."""

from __future__ import annotations

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.data import (
    SyntheticPartitionedDataset,
    TensorPartitionedDataset,
    split_client_tests,
)
from blazefl.data._client_split import held_out_count


def _rows(dataset: TensorPartitionedDataset, kind: str, cid: int) -> list[int]:
    return dataset.get_dataset(kind, cid).indices.tolist()  # type: ignore[attr-defined]


def test_each_client_splits_its_own_rows() -> None:
    base = SyntheticPartitionedDataset(5, seed=1)
    split = split_client_tests(base, 0.2, seed=7)
    assert split.has_client_tests
    for cid in range(5):
        own = _rows(base, "train", cid)
        train, test = _rows(split, "train", cid), _rows(split, "test", cid)
        assert sorted(train + test) == sorted(own)
        assert not set(train) & set(test)
        assert len(test) == held_out_count(len(own), 0.2)
        targets = base.get_dataset("train", None).targets  # type: ignore[attr-defined]
        assert int(split.get_dataset("test", cid)[0][1]) == int(targets[test[0]])


def test_the_split_is_a_function_of_the_seed() -> None:
    base = SyntheticPartitionedDataset(4, seed=1)
    a, b = split_client_tests(base, 0.3, seed=5), split_client_tests(base, 0.3, seed=5)
    c = split_client_tests(base, 0.3, seed=6)
    assert all(_rows(a, "test", k) == _rows(b, "test", k) for k in range(4))
    assert any(_rows(a, "test", k) != _rows(c, "test", k) for k in range(4))


def test_the_server_test_set_is_unchanged() -> None:
    base = SyntheticPartitionedDataset(3, seed=2)
    split = split_client_tests(base, 0.5, seed=0)
    want, got = base.get_dataset("test", None), split.get_dataset("test", None)
    assert len(got) == len(want)  # type: ignore[arg-type]
    assert torch.equal(got[list(range(len(got)))][1], want[list(range(len(want)))][1])  # type: ignore[arg-type,index]


@pytest.mark.parametrize(("n", "want"), [(1, 0), (2, 1), (5, 1), (10, 2), (11, 2)])
def test_counts_keep_one_row_of_each(n: int, want: int) -> None:
    assert held_out_count(n, 0.2) == want
    assert held_out_count(n, 0.99) == max(n - 1, 0)


def test_a_data_set_with_its_own_split_is_refused() -> None:
    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    natural = TensorPartitionedDataset(
        x, y, [[0, 1], [2, 3]], x, y, client_test_indices=[[0], [1]]
    )
    with pytest.raises(ConfigurationError, match=r"already has a per-client test"):
        split_client_tests(natural, 0.2, seed=0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, True])
def test_a_bad_fraction_is_refused(fraction: object) -> None:
    with pytest.raises(ConfigurationError, match=r"fraction must"):
        split_client_tests(SyntheticPartitionedDataset(2, seed=0), fraction, seed=0)  # type: ignore[arg-type]
