"""Tests for the generated CIFAR-10-shaped benchmark data set."""

from __future__ import annotations

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.core import PartitionedDataset
from blazefl.data import SyntheticCIFAR10, SyntheticPartitionedDataset
from blazefl.data._loader import TensorView


@pytest.fixture(scope="module")
def dataset() -> SyntheticCIFAR10:
    return SyntheticCIFAR10(4, seed=2, samples_per_client=40, test_samples=50)


def test_cifar_shape(dataset: SyntheticCIFAR10) -> None:
    """Samples are float32 3x32x32 images with ten classes."""
    assert isinstance(dataset, PartitionedDataset)
    assert dataset.input_shape == (3, 32, 32)
    assert dataset.num_classes == 10
    x, y = dataset.get_dataset("train", 1)[[0, 1, 2]]
    assert x.shape == (3, 3, 32, 32)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert [dataset.client_size(c) for c in range(4)] == [40] * 4


def test_same_as_generic_generator(dataset: SyntheticCIFAR10) -> None:
    """It is the 12x12 generator at CIFAR-10's shape, bit for bit."""
    generic = SyntheticPartitionedDataset(
        4,
        seed=2,
        image_shape=(3, 32, 32),
        samples_per_client=40,
        test_samples=50,
    )
    for type_ in ("train", "test"):
        a, b = dataset.get_dataset(type_, None), generic.get_dataset(type_, None)
        assert isinstance(a, TensorView)
        assert isinstance(b, TensorView)
        assert torch.equal(a.data, b.data)
        assert torch.equal(a.targets, b.targets)


def test_channels_differ(dataset: SyntheticCIFAR10) -> None:
    """The three channels carry different signal, not one copied image."""
    x, _ = dataset.get_dataset("test", None)[list(range(50))]
    assert not torch.allclose(x[:, 0], x[:, 1])


def test_alpha_skews_client_labels() -> None:
    """A small alpha concentrates each client on few classes."""
    data = SyntheticCIFAR10(6, alpha=0.05, samples_per_client=50, test_samples=10)
    top = [max(data.label_histogram(c)) / 50 for c in range(6)]
    assert sum(t >= 0.7 for t in top) >= 4


def test_classes_separable_from_training_data() -> None:
    """Class means of the training images classify the test set well."""
    data = SyntheticCIFAR10(5, seed=0, samples_per_client=60, test_samples=200)
    train_x, train_y = data.get_dataset("train", None)[list(range(300))]
    test_x, test_y = data.get_dataset("test", None)[list(range(200))]
    means = torch.stack([train_x[train_y == k].mean(0) for k in range(10)])
    distances = torch.cdist(test_x.flatten(1), means.flatten(1))
    accuracy = float((distances.argmin(1) == test_y).float().mean())
    assert accuracy >= 0.9


def test_invalid_arguments_rejected() -> None:
    """Bad arguments fail at construction, as for the generic generator."""
    with pytest.raises(ConfigurationError, match=r"samples_per_client .* got 0"):
        SyntheticCIFAR10(samples_per_client=0)
