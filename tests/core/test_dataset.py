"""Tests for FilteredDataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from blazefl import ConfigurationError
from blazefl.core import FilteredDataset


def test_items_without_targets() -> None:
    """Without targets each item is the selected datum alone."""
    dataset = FilteredDataset([2, 0], ["a", "b", "c"])
    assert [dataset[0], dataset[1]] == ["c", "a"]


def test_items_with_targets() -> None:
    """With targets each item is a (datum, target) pair."""
    dataset = FilteredDataset([1, 2], ["a", "b", "c"], [10, 11, 12])
    assert [dataset[0], dataset[1]] == [("b", 11), ("c", 12)]


def test_length_is_number_of_indices() -> None:
    """len() counts the selected indices."""
    assert len(FilteredDataset([0, 0, 3], list(range(5)))) == 3


def test_transforms_apply() -> None:
    """transform maps data and target_transform maps targets."""
    dataset = FilteredDataset(
        [0], [2], [5], transform=lambda x: x * 10, target_transform=lambda y: -y
    )
    assert dataset[0] == (20, -5)


def test_transform_without_targets() -> None:
    """transform applies when no targets were given."""
    assert FilteredDataset([1], [1, 2], transform=str)[0] == "2"


def test_tensor_data_selected_compactly() -> None:
    """Tensor data is selected into a tensor holding only the chosen rows."""
    data = torch.arange(12).reshape(6, 2)
    dataset = FilteredDataset([4, 1], data, torch.arange(6))
    assert torch.equal(dataset.data, data[[4, 1]])
    assert dataset[1][1].item() == 1


def test_numpy_data_selected_compactly() -> None:
    """numpy data is selected into an array holding only the chosen rows."""
    data = np.arange(10)
    dataset = FilteredDataset([3, 5], data)
    assert isinstance(dataset.data, np.ndarray)
    assert dataset.data.tolist() == [3, 5]


def test_pickles_only_its_share() -> None:
    """A pickled client dataset carries its selected rows, not the whole set."""
    data = torch.zeros(10_000, 10)
    dataset = FilteredDataset([0, 1], data)
    assert len(pickle.dumps(dataset)) < data.numel() * data.element_size() // 100


def test_works_with_dataloader() -> None:
    """A DataLoader batches (datum, target) pairs from the dataset."""
    dataset = FilteredDataset([0, 2], torch.eye(3), torch.tensor([7, 8, 9]))
    x, y = next(iter(DataLoader(dataset, batch_size=2)))
    assert torch.equal(x, torch.eye(3)[[0, 2]])
    assert y.tolist() == [7, 9]


def test_length_mismatch_raises() -> None:
    """Data and targets of different lengths raise ValueError naming both."""
    with pytest.raises(ValueError, match=r"3 items but original_targets has 2"):
        FilteredDataset([0], [1, 2, 3], [1, 2])


def test_length_mismatch_is_configuration_error() -> None:
    """The length-mismatch error is blazefl's ConfigurationError."""
    with pytest.raises(ConfigurationError, match=r"original_targets"):
        FilteredDataset([0], [1, 2, 3], [1])


def test_out_of_range_index_raises() -> None:
    """An index outside the data raises, naming it and the valid range."""
    with pytest.raises(ConfigurationError, match=r"\[5\].*\[0, 3\)"):
        FilteredDataset([0, 5], [1, 2, 3])
