"""Tests for the built-in synthetic federated data set and its loaders."""

from __future__ import annotations

import enum

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from blazefl import ConfigurationError
from blazefl.data import SyntheticPartitionedDataset
from blazefl.data._loader import TensorView, make_loader
from blazefl.models import ModelZoo
from blazefl.training import evaluate, train


class _Partition(enum.StrEnum):
    TRAIN = "train"
    TEST = "test"


@pytest.fixture(scope="module")
def dataset() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(num_clients=6, seed=1, test_samples=100)


def _batches(
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor]],
) -> list[torch.Tensor]:
    return [x for x, _ in loader]


def test_same_seed_same_data() -> None:
    """Two data sets built from one seed hold identical tensors."""
    a = SyntheticPartitionedDataset(4, seed=9, test_samples=50)
    b = SyntheticPartitionedDataset(4, seed=9, test_samples=50)
    for type_, cid in [("train", None), ("test", None), ("train", 2)]:
        xa, ya = a.get_dataset(type_, cid)[list(range(50))]
        xb, yb = b.get_dataset(type_, cid)[list(range(50))]
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)


def test_different_seed_different_data() -> None:
    """Another seed gives other samples."""
    a = SyntheticPartitionedDataset(4, seed=9, test_samples=50)
    b = SyntheticPartitionedDataset(4, seed=10, test_samples=50)
    xa, _ = a.get_dataset("train", None)[list(range(50))]
    xb, _ = b.get_dataset("train", None)[list(range(50))]
    assert not torch.equal(xa, xb)


def test_test_size_does_not_change_training_data() -> None:
    """Training data come from their own stream, independent of the test set."""
    a = SyntheticPartitionedDataset(3, seed=4, test_samples=10)
    b = SyntheticPartitionedDataset(3, seed=4, test_samples=300)
    xa, ya = a.get_dataset("train", None)[list(range(3 * 128))]
    xb, yb = b.get_dataset("train", None)[list(range(3 * 128))]
    assert torch.equal(xa, xb)
    assert torch.equal(ya, yb)


def test_sample_dtypes_and_shapes(dataset: SyntheticPartitionedDataset) -> None:
    """Samples are float32 images with int64 labels in range."""
    x, y = dataset.get_dataset("train", 0)[[0, 1, 2]]
    assert x.dtype == torch.float32
    assert x.shape == (3, *dataset.input_shape)
    assert y.dtype == torch.int64
    assert int(y.min()) >= 0
    assert int(y.max()) < dataset.num_classes
    single_x, single_y = dataset.get_dataset("train", 0)[0]
    assert torch.equal(single_x, x[0])
    assert int(single_y) == int(y[0])


def test_properties(dataset: SyntheticPartitionedDataset) -> None:
    """The data set reports its clients, classes, shape and client sizes."""
    assert dataset.num_clients == 6
    assert dataset.num_classes == 10
    assert dataset.input_shape == (1, 12, 12)
    assert [dataset.client_size(c) for c in range(6)] == [128] * 6


def test_client_views_share_storage(dataset: SyntheticPartitionedDataset) -> None:
    """Client partitions index the one training tensor instead of copying it."""
    union = dataset.get_dataset("train", None)
    assert isinstance(union, TensorView)
    for cid in range(dataset.num_clients):
        view = dataset.get_dataset("train", cid)
        assert isinstance(view, TensorView)
        assert view.data is union.data
        assert view.targets is union.targets


def test_client_views_disjoint_and_cover(dataset: SyntheticPartitionedDataset) -> None:
    """Client index sets are disjoint and together cover the training set."""
    union = dataset.get_dataset("train", None)
    indices = []
    for cid in range(dataset.num_clients):
        view = dataset.get_dataset("train", cid)
        assert isinstance(view, TensorView)
        indices.append(view.indices)
    assert isinstance(union, TensorView)
    everything = torch.cat(indices).sort().values
    assert torch.equal(everything, union.indices)


def test_label_histogram_matches_data(dataset: SyntheticPartitionedDataset) -> None:
    """The histogram counts the labels the client actually holds."""
    _, y = dataset.get_dataset("train", 2)[list(range(dataset.client_size(2)))]
    assert dataset.label_histogram(2) == torch.bincount(y, minlength=10).tolist()


def _top_three_shares(alpha: float) -> list[float]:
    data = SyntheticPartitionedDataset(20, seed=0, alpha=alpha, test_samples=10)
    return [
        sum(sorted(data.label_histogram(cid), reverse=True)[:3]) / data.client_size(cid)
        for cid in range(20)
    ]


def test_small_alpha_skews_labels() -> None:
    """With a small alpha most clients hold mostly three classes or fewer."""
    shares = _top_three_shares(alpha=0.1)
    assert sum(share >= 0.85 for share in shares) >= 15
    assert max(_top_three_shares(alpha=100.0)) < 0.6


def test_large_alpha_is_near_iid() -> None:
    """With a large alpha every client sees every class."""
    mixed = SyntheticPartitionedDataset(10, seed=0, alpha=1000.0, test_samples=10)
    for cid in range(10):
        assert min(mixed.label_histogram(cid)) > 0


def test_test_set_balanced() -> None:
    """The server-side test set holds the same number of samples per class."""
    data = SyntheticPartitionedDataset(2, seed=0, test_samples=1000)
    _, y = data.get_dataset("test", None)[list(range(1000))]
    assert torch.bincount(y).tolist() == [100] * 10


def test_loader_covers_partition_once_per_epoch(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """One pass of a client's loader yields each of its samples exactly once."""
    loader = dataset.get_dataloader("train", 3, 20, torch.Generator().manual_seed(0))
    xs, ys = zip(*loader, strict=True)
    assert [len(y) for y in ys] == [20] * 6 + [8]
    expected_x, expected_y = dataset.get_dataset("train", 3)[list(range(128))]
    seen = torch.cat(xs).flatten(1)
    order = torch.cat(
        [(seen == row).all(dim=1).nonzero() for row in expected_x.flatten(1)]
    )
    assert sorted(order.flatten().tolist()) == list(range(128))
    assert torch.equal(torch.cat(ys).sort().values, expected_y.sort().values)


def test_loader_order_depends_only_on_generator_seed(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """Equal generator seeds give equal batches whatever the global RNG does."""
    torch.manual_seed(1)
    first = _batches(
        dataset.get_dataloader("train", 0, 32, torch.Generator().manual_seed(5))
    )
    torch.manual_seed(2)
    second = _batches(
        dataset.get_dataloader("train", 0, 32, torch.Generator().manual_seed(5))
    )
    other = _batches(
        dataset.get_dataloader("train", 0, 32, torch.Generator().manual_seed(6))
    )
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_loader_matches_standard_dataloader_order(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """The batch-fetching loader draws the order a shuffling DataLoader would."""
    view = dataset.get_dataset("train", 2)
    fast = dataset.get_dataloader("train", 2, 16, torch.Generator().manual_seed(8))
    plain = DataLoader(
        view, 16, shuffle=True, generator=torch.Generator().manual_seed(8)
    )
    for _ in range(2):  # two epochs: the generator advances the same way
        for (fx, fy), (px, py) in zip(fast, plain, strict=True):
            assert torch.equal(fx, px)
            assert torch.equal(fy, py)


def test_loader_leaves_global_rng_alone(dataset: SyntheticPartitionedDataset) -> None:
    """Iterating train or test loaders never draws from the global torch RNG."""
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    list(dataset.get_dataloader("test", None, 30))
    list(dataset.get_dataloader("train", 0, 30))
    list(dataset.get_dataloader("train", 0, 30, torch.Generator().manual_seed(1)))
    assert torch.equal(torch.rand(1), expected)


def test_loader_reshuffles_each_epoch(dataset: SyntheticPartitionedDataset) -> None:
    """Iterating the same loader again draws a new order from its generator."""
    loader = dataset.get_dataloader("train", 0, 32, torch.Generator().manual_seed(5))
    assert not torch.equal(torch.cat(_batches(loader)), torch.cat(_batches(loader)))


def test_loader_without_generator_is_sequential(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """Without a generator a train loader keeps partition order."""
    x, _ = dataset.get_dataset("train", 1)[list(range(128))]
    assert torch.equal(torch.cat(_batches(dataset.get_dataloader("train", 1, 50))), x)


def test_test_loader_is_sequential(dataset: SyntheticPartitionedDataset) -> None:
    """The test loader keeps order even when handed a generator."""
    x, _ = dataset.get_dataset("test", None)[list(range(100))]
    loader = dataset.get_dataloader("test", None, 30, torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat(_batches(loader)), x)


def test_batch_size_none_is_one_batch(dataset: SyntheticPartitionedDataset) -> None:
    """batch_size=None yields the whole partition as a single batch."""
    batches = _batches(dataset.get_dataloader("train", 0, None))
    assert [len(b) for b in batches] == [128]


def test_loader_yields_tuples(dataset: SyntheticPartitionedDataset) -> None:
    """Batches come out as (x, y) tuples, fetched whole."""
    batch = next(iter(dataset.get_dataloader("train", 0, 8)))
    assert isinstance(batch, tuple)
    assert batch[0].shape == (8, 1, 12, 12)


def test_str_enum_partition_types(dataset: SyntheticPartitionedDataset) -> None:
    """A StrEnum equal to "train"/"test" selects the same partitions."""
    assert dataset.get_dataset(_Partition.TRAIN, 2) is dataset.get_dataset("train", 2)
    assert dataset.get_dataset(_Partition.TEST, None) is dataset.get_dataset(
        "test", None
    )


def test_set_dataset_replaces_partition() -> None:
    """A partition set by the user is what get_dataset and the loader return."""
    data = SyntheticPartitionedDataset(3, seed=0, test_samples=10)
    replacement = TensorDataset(
        torch.ones(5, 1, 12, 12), torch.zeros(5, dtype=torch.int64)
    )
    data.set_dataset("train", 1, replacement)
    assert data.get_dataset("train", 1) is replacement
    assert data.client_size(1) == 5
    assert data.label_histogram(1) == [5] + [0] * 9
    batches = list(data.get_dataloader("train", 1, 2, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [2, 2, 1]


def test_make_loader_rejects_bad_batch_size() -> None:
    """A batch size below one is rejected, naming it."""
    view = TensorView(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ConfigurationError, match=r"batch_size .* got 0"):
        make_loader(view, 0, None, shuffle=False)


def test_tensor_view_rejects_mismatched_lengths() -> None:
    """Data and targets of different lengths cannot form a view."""
    with pytest.raises(ConfigurationError, match=r"4 rows of data, 3 targets"):
        TensorView(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_clients": 0}, r"num_clients must be an integer >= 1, got 0"),
        ({"samples_per_client": 0}, r"samples_per_client must be .* got 0"),
        ({"alpha": 0.0}, r"alpha must be a positive finite number, got 0.0"),
        ({"alpha": float("nan")}, r"alpha must be a positive finite number, got nan"),
        ({"num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
        ({"image_shape": (12, 12)}, r"image_shape must be three positive integers"),
        ({"noise": -1.0}, r"noise must be a non-negative finite number, got -1.0"),
        ({"test_samples": 0}, r"test_samples must be an integer >= 1, got 0"),
        ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
    ],
)
def test_invalid_arguments_rejected(kwargs: dict[str, object], message: str) -> None:
    """Bad constructor arguments fail at construction, naming the value."""
    with pytest.raises(ConfigurationError, match=message):
        SyntheticPartitionedDataset(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("cid", [-1, 6, 100])
def test_cid_out_of_range_rejected(
    dataset: SyntheticPartitionedDataset, cid: int
) -> None:
    """A client id outside range(num_clients) is rejected, naming both."""
    with pytest.raises(ConfigurationError, match=rf"range\(0, 6\).*got {cid}"):
        dataset.get_dataloader("train", cid, 8)


def test_test_partition_needs_no_cid(dataset: SyntheticPartitionedDataset) -> None:
    """The test set is server-side, so a client id is rejected."""
    with pytest.raises(ConfigurationError, match=r"server-side; pass cid=None, got 0"):
        dataset.get_dataset("test", 0)


def test_unknown_partition_type_rejected(dataset: SyntheticPartitionedDataset) -> None:
    """An unknown partition type is rejected, naming the allowed ones."""
    with pytest.raises(ConfigurationError, match=r"'valid'.*\('train', 'test'\)"):
        dataset.get_dataset("valid", None)


def test_cnn_learns_the_task() -> None:
    """A CNN trained a few epochs on all clients' data beats chance by far."""
    data = SyntheticPartitionedDataset()
    torch.manual_seed(0)
    model = ModelZoo(data.input_shape, data.num_classes).select_model("cnn")
    loader = data.get_dataloader("train", None, 32, torch.Generator().manual_seed(0))
    train(model, loader, epochs=3, lr=0.05)
    _, accuracy = evaluate(model, data.get_dataloader("test", None, 500))
    assert accuracy >= 0.6
