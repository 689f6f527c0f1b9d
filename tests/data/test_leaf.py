"""Tests for the Synthetic(alpha, beta) federated data set of FedProx and LEAF."""

from __future__ import annotations

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.core import PartitionedDataset
from blazefl.data import LeafSyntheticDataset
from blazefl.data._loader import TensorView
from blazefl.models import MLP
from blazefl.training import evaluate, train


@pytest.fixture(scope="module")
def dataset() -> LeafSyntheticDataset:
    return LeafSyntheticDataset(30, seed=3)


def _all(data: LeafSyntheticDataset, type_: str) -> tuple[torch.Tensor, torch.Tensor]:
    view = data.get_dataset(type_, None)
    assert isinstance(view, TensorView)
    return view.data, view.targets


def test_satisfies_protocol(dataset: LeafSyntheticDataset) -> None:
    """The data set is a PartitionedDataset with the protocol's extras."""
    assert isinstance(dataset, PartitionedDataset)
    assert dataset.num_clients == 30
    assert dataset.num_classes == 10
    assert dataset.input_shape == (60,)


def test_same_seed_same_data() -> None:
    """Equal arguments give identical tensors; another seed other ones."""
    a, b = LeafSyntheticDataset(8, seed=5), LeafSyntheticDataset(8, seed=5)
    for type_ in ("train", "test"):
        assert all(
            torch.equal(p, q)
            for p, q in zip(_all(a, type_), _all(b, type_), strict=True)
        )
    assert [a.client_size(c) for c in range(8)] == [b.client_size(c) for c in range(8)]
    c = LeafSyntheticDataset(8, seed=6)
    assert not torch.equal(_all(a, "train")[0][:10], _all(c, "train")[0][:10])


def test_shapes_and_dtypes(dataset: LeafSyntheticDataset) -> None:
    """Samples are float32 feature vectors with int64 labels in range."""
    x, y = dataset.get_dataset("train", 4)[[0, 1]]
    assert x.shape == (2, 60)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    _, all_y = _all(dataset, "train")
    assert int(all_y.min()) >= 0
    assert int(all_y.max()) < 10


def test_client_sizes_follow_a_power_law(dataset: LeafSyntheticDataset) -> None:
    """Client sizes are heavy-tailed: the largest holds many times the smallest."""
    sizes = sorted(dataset.client_size(c) for c in range(30))
    assert sizes[0] >= 40  # min_samples=50, less the 20% test part
    assert sizes[-1] / sizes[0] > 10
    # Heavy tail: the median client is far smaller than the mean one.
    assert sizes[15] < sum(sizes) / 30


def test_min_samples_bounds_every_client() -> None:
    """Each client generates at least min_samples samples before the test split."""
    data = LeafSyntheticDataset(20, seed=1, min_samples=200)
    assert min(data.client_size(c) for c in range(20)) >= 160


def test_test_set_is_union_of_client_test_parts(dataset: LeafSyntheticDataset) -> None:
    """The server test set holds about test_fraction of all samples."""
    n_train = len(_all(dataset, "train")[1])
    n_test = len(_all(dataset, "test")[1])
    assert n_test / (n_train + n_test) == pytest.approx(0.2, abs=0.01)


def test_labels_not_degenerate(dataset: LeafSyntheticDataset) -> None:
    """Many classes occur overall and no one class takes nearly everything."""
    _, y = _all(dataset, "train")
    counts = torch.bincount(y, minlength=10)
    assert int((counts > 0).sum()) >= 8
    assert int(counts.max()) < 0.5 * len(y)


def test_alpha_beta_change_data_not_sizes() -> None:
    """The heterogeneity knobs change the samples but not the client sizes."""
    a = LeafSyntheticDataset(10, alpha=0.0, beta=0.0, seed=2)
    b = LeafSyntheticDataset(10, alpha=1.0, beta=1.0, seed=2)
    assert [a.client_size(c) for c in range(10)] == [
        b.client_size(c) for c in range(10)
    ]
    assert not torch.equal(_all(a, "train")[0], _all(b, "train")[0])
    assert (a.alpha, a.beta, a.iid) == (0.0, 0.0, False)


def test_beta_spreads_client_input_means() -> None:
    """A larger beta moves the clients' mean inputs further apart."""

    def spread(beta: float) -> float:
        data = LeafSyntheticDataset(20, alpha=0.0, beta=beta, seed=4)
        means = []
        for cid in range(20):
            view = data.get_dataset("train", cid)
            assert isinstance(view, TensorView)
            means.append(view.data[view.indices].mean())
        return float(torch.stack(means).std())

    assert spread(3.0) > 2 * spread(0.0)


def test_iid_clients_share_one_distribution() -> None:
    """With iid=True client mean inputs are all near zero."""
    data = LeafSyntheticDataset(10, iid=True, seed=0, min_samples=300)
    for cid in range(10):
        view = data.get_dataset("train", cid)
        assert isinstance(view, TensorView)
        assert abs(float(view.data[view.indices].mean())) < 0.1


def test_logistic_regression_learns_above_chance(dataset: LeafSyntheticDataset) -> None:
    """A linear model trained on the union beats the majority-class rate."""
    torch.manual_seed(0)
    model = MLP(60, 10, hidden=())
    loader = dataset.get_dataloader(
        "train", None, 512, torch.Generator().manual_seed(0)
    )
    train(model, loader, epochs=3, lr=0.3)
    _, accuracy = evaluate(model, dataset.get_dataloader("test", None, 1000))
    _, y = _all(dataset, "test")
    majority = int(torch.bincount(y).max()) / len(y)
    assert accuracy > majority + 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clients": 0}, r"num_clients must be an integer >= 1, got 0"),
        ({"alpha": -1.0}, r"alpha must be a non-negative finite number, got -1.0"),
        ({"beta": float("inf")}, r"beta must be a non-negative finite number, got inf"),
        ({"num_features": 0}, r"num_features must be an integer >= 1, got 0"),
        ({"num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
        ({"min_samples": 1}, r"min_samples must be an integer >= 2, got 1"),
        ({"test_fraction": 1.0}, r"test_fraction must be .* between 0 and 1, got 1.0"),
        ({"seed": -2}, r"seed must be a non-negative integer, got -2"),
        ({"iid": 1}, r"iid must be True or False, got 1"),
    ],
)
def test_invalid_arguments_rejected(kwargs: dict[str, object], message: str) -> None:
    """Bad constructor arguments fail at construction, naming the value."""
    with pytest.raises(ConfigurationError, match=message):
        LeafSyntheticDataset(**kwargs)  # type: ignore[arg-type]
