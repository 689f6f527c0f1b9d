"""Tests for the seeded IID and non-IID partitioners and the split report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import blazefl.data
from blazefl import ConfigurationError
from blazefl.data import (
    PartitionReport,
    client_inner_dirichlet_partition,
    dirichlet_partition,
    iid_partition,
    label_skew_partition,
    partition_report,
    shard_partition,
    unbalanced_partition,
    unbalanced_sizes,
)

Parts = list[npt.NDArray[np.int64]]
FAST = settings(max_examples=60, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def labelled(draw: st.DrawFn, max_samples: int = 150) -> tuple[np.ndarray, int]:
    """Labels over a few classes and a client count no larger than the data."""
    num_classes = draw(st.integers(1, 6))
    y = draw(
        st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=max_samples)
    )
    clients = draw(st.integers(1, min(len(y), 12)))
    return np.array(y, dtype=np.int64), clients


def balanced_labels(num_classes: int = 10, per_class: int = 100) -> np.ndarray:
    return np.repeat(np.arange(num_classes), per_class)


def assert_disjoint(parts: Parts) -> None:
    joined = np.concatenate(parts)
    assert np.unique(joined).size == joined.size


def assert_covers(parts: Parts, n: int) -> None:
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))


def mean_top_share(labels: np.ndarray, parts: Parts) -> float:
    """Mean over clients of the share of the client's most common class."""
    report = partition_report(labels, parts)
    return float((report.histograms.max(axis=1) / report.sizes).mean())


def same(a: Parts, b: Parts) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


def test_public_names() -> None:
    """The package exports every partitioner and the report."""
    for name in [
        "PartitionReport",
        "client_inner_dirichlet_partition",
        "dirichlet_partition",
        "iid_partition",
        "label_skew_partition",
        "partition_report",
        "shard_partition",
        "unbalanced_partition",
        "unbalanced_sizes",
    ]:
        assert name in blazefl.data.__all__
        assert hasattr(blazefl.data, name)


# --- IID -------------------------------------------------------------------


@FAST
@given(n=st.integers(1, 400), data=st.data(), seed=SEEDS)
def test_iid_is_a_partition(n: int, data: st.DataObject, seed: int) -> None:
    """IID parts are disjoint and cover every index."""
    k = data.draw(st.integers(1, n))
    parts = iid_partition(n, k, seed=seed)
    assert len(parts) == k
    assert_covers(parts, n)


@FAST
@given(n=st.integers(1, 400), data=st.data(), seed=SEEDS)
def test_iid_sizes_differ_by_at_most_one(
    n: int, data: st.DataObject, seed: int
) -> None:
    """IID client sizes differ by at most one."""
    k = data.draw(st.integers(1, n))
    sizes = [p.size for p in iid_partition(n, k, seed=seed)]
    assert max(sizes) - min(sizes) <= 1


@FAST
@given(n=st.integers(1, 400), seed=SEEDS)
def test_iid_same_seed_same_split(n: int, seed: int) -> None:
    """The same seed gives the same IID split."""
    k = max(1, n // 7)
    assert same(iid_partition(n, k, seed=seed), iid_partition(n, k, seed=seed))


def test_iid_different_seed_different_split() -> None:
    """Another seed gives another IID split."""
    assert not same(iid_partition(100, 5, seed=0), iid_partition(100, 5, seed=1))


# --- Dirichlet over labels ---------------------------------------------------


@FAST
@given(case=labelled(), alpha=st.floats(0.01, 100), seed=SEEDS)
def test_dirichlet_is_a_partition(
    case: tuple[np.ndarray, int], alpha: float, seed: int
) -> None:
    """Dirichlet parts are disjoint and cover every index."""
    y, k = case
    parts = dirichlet_partition(y, k, alpha=alpha, seed=seed, min_size=0)
    assert len(parts) == k
    assert_covers(parts, y.size)


@FAST
@given(per_class=st.integers(20, 60), k=st.integers(1, 8), seed=SEEDS)
def test_dirichlet_honours_min_size(per_class: int, k: int, seed: int) -> None:
    """Every Dirichlet client gets at least min_size samples."""
    y = balanced_labels(5, per_class)
    parts = dirichlet_partition(y, k, alpha=0.5, seed=seed, min_size=5)
    assert min(p.size for p in parts) >= 5


@FAST
@given(case=labelled(), seed=SEEDS)
def test_dirichlet_same_seed_same_split(
    case: tuple[np.ndarray, int], seed: int
) -> None:
    """The same seed gives the same Dirichlet split."""
    y, k = case
    a = dirichlet_partition(y, k, alpha=0.3, seed=seed, min_size=0)
    b = dirichlet_partition(y, k, alpha=0.3, seed=seed, min_size=0)
    assert same(a, b)


def test_dirichlet_different_seed_different_split() -> None:
    """Another seed gives another Dirichlet split."""
    y = balanced_labels()
    a = dirichlet_partition(y, 10, alpha=0.5, seed=0)
    b = dirichlet_partition(y, 10, alpha=0.5, seed=1)
    assert not same(a, b)


def test_dirichlet_small_alpha_is_more_skewed() -> None:
    """alpha=0.05 concentrates clients on fewer classes than alpha=100."""
    y = balanced_labels(10, 200)
    for seed in range(3):
        skewed = dirichlet_partition(y, 10, alpha=0.05, seed=seed, min_size=0)
        flat = dirichlet_partition(y, 10, alpha=100, seed=seed, min_size=0)
        assert mean_top_share(y, skewed) > mean_top_share(y, flat) + 0.3


def test_dirichlet_retries_are_exhausted() -> None:
    """An unreachable min_size after every retry raises, naming alpha."""
    y = balanced_labels(10, 20)
    with pytest.raises(ConfigurationError, match=r"alpha is too small.*max_retries"):
        dirichlet_partition(y, 10, alpha=0.01, seed=0, min_size=20, max_retries=3)


def test_dirichlet_min_size_beyond_data_rejected() -> None:
    """A min_size the data cannot give every client is rejected up front."""
    with pytest.raises(ConfigurationError, match=r"min_size=11 for 10 clients"):
        dirichlet_partition(balanced_labels(10, 10), 10, alpha=1, seed=0, min_size=11)


@pytest.mark.parametrize(
    "convert",
    [list, torch.tensor, lambda y: y.astype(np.int32)],
    ids=["list", "tensor", "int32"],
)
def test_dirichlet_accepts_other_label_containers(
    convert: Callable[[np.ndarray], object],
) -> None:
    """Lists, tensors and other integer dtypes give the same split as int64."""
    y = balanced_labels(5, 30)
    want = dirichlet_partition(y, 4, alpha=0.5, seed=3)
    assert same(dirichlet_partition(convert(y), 4, alpha=0.5, seed=3), want)  # type: ignore[arg-type]


# --- shards and k classes per client ----------------------------------------


@FAST
@given(case=labelled(), s=st.integers(1, 4), seed=SEEDS)
def test_shards_are_a_partition(
    case: tuple[np.ndarray, int], s: int, seed: int
) -> None:
    """Shard parts are disjoint and cover every index."""
    y, k = case
    assume(y.size >= s)
    k = min(k, y.size // s)
    parts = shard_partition(y, k, shards_per_client=s, seed=seed)
    assert_covers(parts, y.size)


@FAST
@given(
    k=st.integers(1, 8),
    s=st.integers(1, 3),
    shard=st.integers(1, 6),
    data=st.data(),
    seed=SEEDS,
)
def test_shards_aligned_with_classes_limit_classes(
    k: int, s: int, shard: int, data: st.DataObject, seed: int
) -> None:
    """With classes made of whole shards, a client sees at most s classes."""
    shard_classes = sorted(
        data.draw(st.lists(st.integers(0, 5), min_size=k * s, max_size=k * s))
    )
    y = np.random.default_rng(0).permutation(np.repeat(shard_classes, shard))
    parts = shard_partition(y, k, shards_per_client=s, seed=seed)
    assert all(np.unique(y[p]).size <= s for p in parts)


def test_shards_same_seed_same_and_other_seed_different() -> None:
    """Shards follow the seed: equal for one seed, different for another."""
    y = balanced_labels(10, 20)
    a = shard_partition(y, 10, seed=4)
    assert same(a, shard_partition(y, 10, seed=4))
    assert not same(a, shard_partition(y, 10, seed=5))


@FAST
@given(
    num_classes=st.integers(1, 8),
    per_class=st.integers(8, 20),
    data=st.data(),
    seed=SEEDS,
)
def test_label_skew_gives_exactly_k_classes(
    num_classes: int, per_class: int, data: st.DataObject, seed: int
) -> None:
    """Each client holds exactly classes_per_client classes, and all are covered."""
    c = data.draw(st.integers(1, num_classes))
    k = data.draw(st.integers(-(-num_classes // c), 8))
    y = np.random.default_rng(1).permutation(balanced_labels(num_classes, per_class))
    parts = label_skew_partition(y, k, classes_per_client=c, seed=seed)
    assert_covers(parts, y.size)
    assert all(np.unique(y[p]).size == c for p in parts)


def test_label_skew_same_seed_same_and_other_seed_different() -> None:
    """label_skew follows the seed: equal for one seed, different for another."""
    y = balanced_labels(10, 20)
    a = label_skew_partition(y, 8, classes_per_client=2, seed=0)
    assert same(a, label_skew_partition(y, 8, classes_per_client=2, seed=0))
    assert not same(a, label_skew_partition(y, 8, classes_per_client=2, seed=1))


def test_label_skew_too_few_slots_rejected() -> None:
    """Too few clients x classes to cover every class is rejected."""
    with pytest.raises(ConfigurationError, match=r"cannot cover all 10 classes"):
        label_skew_partition(balanced_labels(), 3, classes_per_client=2, seed=0)


def test_label_skew_more_classes_than_present_rejected() -> None:
    """classes_per_client above the number of classes is rejected."""
    with pytest.raises(ConfigurationError, match=r"classes_per_client=4 is more"):
        label_skew_partition(balanced_labels(3, 5), 2, classes_per_client=4, seed=0)


def test_label_skew_class_too_small_for_holders_rejected() -> None:
    """A class with fewer samples than clients holding it is rejected."""
    y = np.array([0] * 50 + [1])
    with pytest.raises(ConfigurationError, match=r"a class has 1 samples"):
        label_skew_partition(y, 4, classes_per_client=2, seed=0)


# --- client-inner Dirichlet ---------------------------------------------------


@st.composite
def inner_case(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    y, _ = draw(labelled())
    sizes = draw(st.lists(st.integers(1, 20), min_size=1, max_size=10))
    if sum(sizes) > y.size:
        sizes = [1] * min(len(sizes), y.size)
    return y, sizes


@FAST
@given(case=inner_case(), alpha=st.floats(0.01, 100), seed=SEEDS)
def test_client_inner_sizes_exact_and_disjoint(
    case: tuple[np.ndarray, list[int]], alpha: float, seed: int
) -> None:
    """Client-inner parts have exactly the given sizes and do not overlap."""
    y, sizes = case
    parts = client_inner_dirichlet_partition(y, sizes, alpha=alpha, seed=seed)
    assert [p.size for p in parts] == sizes
    assert_disjoint(parts)
    assert all(p.min() >= 0 and p.max() < y.size for p in parts)


@FAST
@given(case=inner_case(), seed=SEEDS)
def test_client_inner_same_seed_same_split(
    case: tuple[np.ndarray, list[int]], seed: int
) -> None:
    """The same seed gives the same client-inner split."""
    y, sizes = case
    a = client_inner_dirichlet_partition(y, sizes, alpha=0.5, seed=seed)
    assert same(a, client_inner_dirichlet_partition(y, sizes, alpha=0.5, seed=seed))


def test_client_inner_different_seed_different_split() -> None:
    """Another seed gives another client-inner split."""
    y = balanced_labels()
    a = client_inner_dirichlet_partition(y, [100] * 10, alpha=1.0, seed=0)
    b = client_inner_dirichlet_partition(y, [100] * 10, alpha=1.0, seed=1)
    assert not same(a, b)


def test_client_inner_small_alpha_is_more_skewed() -> None:
    """alpha=0.05 concentrates clients on fewer classes than alpha=100."""
    y = balanced_labels(10, 200)
    for seed in range(3):
        skewed = client_inner_dirichlet_partition(y, [150] * 10, alpha=0.05, seed=seed)
        flat = client_inner_dirichlet_partition(y, [150] * 10, alpha=100, seed=seed)
        assert mean_top_share(y, skewed) > mean_top_share(y, flat) + 0.3


def test_client_inner_uses_whole_data_when_sizes_sum_to_it() -> None:
    """Sizes summing to the data size use every sample, classes running out."""
    y = balanced_labels(4, 25)
    parts = client_inner_dirichlet_partition(y, [40, 30, 20, 10], alpha=0.1, seed=2)
    assert_covers(parts, y.size)


def test_client_inner_sizes_beyond_data_rejected() -> None:
    """Client sizes summing past the data size are rejected."""
    with pytest.raises(ConfigurationError, match=r"sum to 101 but there are only 100"):
        client_inner_dirichlet_partition(
            balanced_labels(10, 10), [51, 50], alpha=1, seed=0
        )


# --- unbalanced sizes -----------------------------------------------------


@FAST
@given(
    n=st.integers(1, 5000),
    data=st.data(),
    distribution=st.sampled_from(["lognormal", "powerlaw"]),
    seed=SEEDS,
)
def test_unbalanced_sizes_sum_exactly_each_positive(
    n: int, data: st.DataObject, distribution: str, seed: int
) -> None:
    """Unbalanced sizes sum exactly to the data size and are all >= 1."""
    k = data.draw(st.integers(1, min(n, 200)))
    sizes = unbalanced_sizes(n, k, seed=seed, distribution=distribution, sigma=2.0)  # type: ignore[arg-type]
    assert sizes.dtype == np.int64
    assert sizes.size == k
    assert int(sizes.sum()) == n
    assert sizes.min() >= 1


@FAST
@given(n=st.integers(1, 2000), data=st.data(), seed=SEEDS)
def test_unbalanced_partition_matches_sizes(
    n: int, data: st.DataObject, seed: int
) -> None:
    """unbalanced_partition covers the data with the sizes unbalanced_sizes gives."""
    k = data.draw(st.integers(1, min(n, 50)))
    parts = unbalanced_partition(n, k, seed=seed, distribution="powerlaw")
    assert_covers(parts, n)
    want = unbalanced_sizes(n, k, seed=seed, distribution="powerlaw")
    assert [p.size for p in parts] == want.tolist()


@pytest.mark.parametrize(
    "kwargs",
    [{"distribution": "powerlaw", "exponent": 0.01}, {"sigma": 50.0}],
    ids=["powerlaw", "lognormal"],
)
def test_unbalanced_extreme_tails_stay_valid(kwargs: dict[str, Any]) -> None:
    """Very heavy tails still give finite sizes, each >= 1, summing exactly."""
    sizes = unbalanced_sizes(10_000, 300, seed=0, **kwargs)
    assert int(sizes.sum()) == 10_000
    assert sizes.min() >= 1


def test_unbalanced_sigma_zero_is_even() -> None:
    """A log-normal sigma of 0 gives sizes differing by at most one."""
    sizes = unbalanced_sizes(1003, 10, seed=0, sigma=0.0)
    assert sizes.max() - sizes.min() <= 1


def test_unbalanced_larger_sigma_is_more_unequal() -> None:
    """A larger log-normal sigma spreads client sizes further apart."""
    narrow = unbalanced_sizes(100_000, 200, seed=0, sigma=0.2)
    wide = unbalanced_sizes(100_000, 200, seed=0, sigma=2.0)
    assert wide.std() > 3 * narrow.std()


def test_unbalanced_same_seed_same_and_other_seed_different() -> None:
    """Unbalanced sizes follow the seed: equal for one seed, else different."""
    a = unbalanced_sizes(1000, 10, seed=0)
    assert np.array_equal(a, unbalanced_sizes(1000, 10, seed=0))
    assert not np.array_equal(a, unbalanced_sizes(1000, 10, seed=1))


# --- outputs and argument checks ------------------------------------------


ALL_PARTITIONERS: dict[str, Callable[[np.ndarray], Parts]] = {
    "iid": lambda y: iid_partition(y.size, 4, seed=0),
    "dirichlet": lambda y: dirichlet_partition(y, 4, alpha=0.5, seed=0),
    "shard": lambda y: shard_partition(y, 4, seed=0),
    "label_skew": lambda y: label_skew_partition(y, 4, classes_per_client=2, seed=0),
    "client_inner": lambda y: client_inner_dirichlet_partition(
        y, [20, 30, 40, 50], alpha=0.5, seed=0
    ),
    "unbalanced": lambda y: unbalanced_partition(y.size, 4, seed=0),
}


@pytest.mark.parametrize("name", ALL_PARTITIONERS)
def test_outputs_are_sorted_int64(name: str) -> None:
    """Every partitioner returns one sorted int64 array per client."""
    parts = ALL_PARTITIONERS[name](balanced_labels(5, 40))
    assert len(parts) == 4
    for p in parts:
        assert p.dtype == np.int64
        assert p.ndim == 1
        assert np.all(np.diff(p) > 0)


Y = balanced_labels(5, 20)

INVALID = [
    pytest.param(
        lambda: iid_partition(10, 0, seed=0),
        r"num_clients must be an integer >= 1, got 0",
        id="zero clients",
    ),
    pytest.param(
        lambda: iid_partition(10, True, seed=0),
        r"num_clients .* got True",
        id="bool clients",
    ),
    pytest.param(
        lambda: iid_partition(3, 4, seed=0),
        r"num_clients=4 is more than the 3 samples",
        id="too many clients",
    ),
    pytest.param(
        lambda: iid_partition(0, 1, seed=0),
        r"num_samples must be an integer >= 1, got 0",
        id="zero samples",
    ),
    pytest.param(
        lambda: iid_partition(10, 2, seed=-1),
        r"seed must be an integer >= 0, got -1",
        id="negative seed",
    ),
    pytest.param(
        lambda: iid_partition(10, 2, seed=1.5),  # type: ignore[arg-type]
        r"seed .* got 1.5",
        id="float seed",
    ),
    pytest.param(
        lambda: dirichlet_partition(Y, 2, alpha=0, seed=0),
        r"alpha must be a finite number > 0, got 0",
        id="zero alpha",
    ),
    pytest.param(
        lambda: dirichlet_partition(Y, 2, alpha=float("nan"), seed=0),
        r"alpha .* got nan",
        id="nan alpha",
    ),
    pytest.param(
        lambda: client_inner_dirichlet_partition(Y, [5], alpha=float("inf"), seed=0),
        r"alpha .* got inf",
        id="inf alpha",
    ),
    pytest.param(
        lambda: dirichlet_partition(Y, 2, alpha=1, seed=0, min_size=-1),
        r"min_size must be .* got -1",
        id="negative min_size",
    ),
    pytest.param(
        lambda: dirichlet_partition(Y, 2, alpha=1, seed=0, max_retries=-1),
        r"max_retries must be .* got -1",
        id="negative retries",
    ),
    pytest.param(
        lambda: dirichlet_partition(Y.reshape(10, 10), 2, alpha=1, seed=0),
        r"one-dimensional.*\(10, 10\)",
        id="2-D labels",
    ),
    pytest.param(
        lambda: shard_partition([], 1, seed=0),
        r"labels must not be empty",
        id="empty labels",
    ),
    pytest.param(
        lambda: shard_partition([0.5, 1.0], 1, seed=0),
        r"labels must be integers, got dtype float64",
        id="float labels",
    ),
    pytest.param(
        lambda: shard_partition([0, -2, 1], 1, seed=0),
        r"labels must be >= 0, got the label -2",
        id="negative label",
    ),
    pytest.param(
        lambda: shard_partition(Y, 2, shards_per_client=0, seed=0),
        r"shards_per_client must be .* got 0",
        id="zero shards",
    ),
    pytest.param(
        lambda: shard_partition(Y, 60, shards_per_client=2, seed=0),
        r"needs 120 shards",
        id="too many shards",
    ),
    pytest.param(
        lambda: label_skew_partition(Y, 2, classes_per_client=0, seed=0),
        r"classes_per_client must be .* got 0",
        id="zero classes per client",
    ),
    pytest.param(
        lambda: client_inner_dirichlet_partition(Y, [5, 0], alpha=1, seed=0),
        r"each client size must be .* got 0",
        id="zero client size",
    ),
    pytest.param(
        lambda: client_inner_dirichlet_partition(Y, [], alpha=1, seed=0),
        r"client_sizes must be a non-empty 1-D",
        id="no client sizes",
    ),
    pytest.param(
        lambda: unbalanced_sizes(10, 2, seed=0, distribution="zipf"),  # type: ignore[arg-type]
        r"'lognormal' or 'powerlaw', got 'zipf'",
        id="unknown distribution",
    ),
    pytest.param(
        lambda: unbalanced_sizes(10, 2, seed=0, sigma=-1.0),
        r"sigma must be a finite number >= 0, got -1.0",
        id="negative sigma",
    ),
    pytest.param(
        lambda: unbalanced_partition(10, 2, seed=0, exponent=0),
        r"exponent must be a finite number > 0, got 0",
        id="zero exponent",
    ),
    pytest.param(
        lambda: partition_report(Y, [np.arange(3)], num_classes=3),
        r"num_classes=3 but labels contain the label 4",
        id="report num_classes too small",
    ),
    pytest.param(
        lambda: partition_report(Y, []), r"at least one client", id="report no parts"
    ),
    pytest.param(
        lambda: partition_report(Y, [np.array([0, 100])]),
        r"parts\[0\] must be 1-D integer indices in \[0, 100\)",
        id="report index out of range",
    ),
]


@pytest.mark.parametrize(("call", "match"), INVALID)
def test_invalid_argument_rejected(call: Callable[[], object], match: str) -> None:
    """Each bad argument raises ConfigurationError naming the value seen."""
    with pytest.raises(ConfigurationError, match=match):
        call()


def test_configuration_error_is_value_error() -> None:
    """Partitioner argument errors can be caught as ValueError."""
    with pytest.raises(ValueError, match=r"num_clients"):
        iid_partition(10, 0, seed=0)


# --- report ---------------------------------------------------------------


@FAST
@given(case=labelled(), seed=SEEDS)
def test_report_histograms_sum_to_sizes(
    case: tuple[np.ndarray, int], seed: int
) -> None:
    """Each client's label histogram sums to its size."""
    y, k = case
    parts = dirichlet_partition(y, k, alpha=0.5, seed=seed, min_size=0)
    report = partition_report(y, parts)
    assert report.histograms.shape == (k, int(y.max()) + 1)
    assert report.histograms.sum(axis=1).tolist() == [p.size for p in parts]
    assert report.sizes.tolist() == [p.size for p in parts]


def test_report_summary_statistics() -> None:
    """The report's summary numbers match a hand-made split."""
    y = np.array([0, 0, 1, 2, 2, 2])
    report = partition_report(y, [np.array([0, 1]), np.array([2, 3, 4, 5])], 4)
    assert isinstance(report, PartitionReport)
    assert (report.num_clients, report.num_classes) == (2, 4)
    assert (report.min_size, report.median_size, report.max_size) == (2, 3.0, 4)
    assert report.mean_classes_per_client == 1.5
    assert report.histograms.tolist() == [[2, 0, 0, 0], [0, 1, 3, 0]]


def test_report_renders_table() -> None:
    """str(report) shows the summary and one row per client with top classes."""
    y = np.array([0, 0, 1, 2, 2, 2])
    text = str(partition_report(y, [np.array([0, 1]), torch.tensor([2, 3, 4, 5])]))
    lines = text.splitlines()
    assert lines[0] == "2 clients, 3 classes, 6 samples"
    assert "size min/median/max: 2/3/4" in lines[1]
    assert lines[3].split() == ["0", "2", "1", "0:2"]
    assert lines[4].split() == ["1", "4", "2", "2:3", "1:1"]


def test_report_truncates_long_tables() -> None:
    """Past max_rows the table says how many clients it left out."""
    y = balanced_labels()
    report = partition_report(y, iid_partition(y.size, 30, seed=0))
    assert str(report).splitlines()[-1] == "... (10 more clients)"
    assert len(report.table(max_rows=None).splitlines()) == 3 + 30


def test_report_is_read_only() -> None:
    """The report's arrays cannot be changed after the fact."""
    report = partition_report(Y, iid_partition(Y.size, 2, seed=0))
    with pytest.raises(ValueError, match=r"read-only"):
        report.sizes[0] = 5
