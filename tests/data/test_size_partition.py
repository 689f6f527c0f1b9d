"""Size-skewed (linear, square, exponential) and natural-ID splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blazefl._exceptions import ConfigurationError
from blazefl.data import (
    natural_id_partition,
    natural_ids,
    size_partition,
    size_partition_sizes,
)


def test_sizes_follow_flowers_rule() -> None:
    # ids 1..4, weights id: 10, 20, 30, 40 of 100.
    assert size_partition_sizes(100, 4, "linear").tolist() == [10, 20, 30, 40]
    # weights 1, 4, 9: floor(100 * w / 14) = 7, 28, 64, remainder 1 to the last.
    assert size_partition_sizes(100, 3, "square").tolist() == [7, 28, 65]
    e = [math.e**i for i in (1, 2, 3)]
    want = [math.floor(100 * w / sum(e)) for w in e]
    want[-1] += 100 - sum(want)
    assert size_partition_sizes(100, 3, "exponential").tolist() == want


def test_size_partition_is_a_seeded_iid_split() -> None:
    parts = size_partition(1000, 5, growth="square", seed=3)
    assert [len(p) for p in parts] == size_partition_sizes(1000, 5, "square").tolist()
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(1000))
    again = size_partition(1000, 5, growth="square", seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = size_partition(1000, 5, growth="square", seed=4)
    assert not np.array_equal(parts[0], other[0])


def test_exponential_with_too_many_clients_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"leaves .* client.s. with no sample"):
        size_partition_sizes(1000, 20, "exponential")
    with pytest.raises(ConfigurationError, match="growth must be one of"):
        size_partition_sizes(10, 2, "cubic")  # type: ignore[arg-type]


def test_natural_ids_number_clients_in_order_of_appearance() -> None:
    owners = ["bob", "ann", "bob", "cy", "ann", "bob"]
    parts = natural_id_partition(owners)
    assert [p.tolist() for p in parts] == [[0, 2, 5], [1, 4], [3]]
    assert natural_ids(owners) == ["bob", "ann", "cy"]
    with pytest.raises(ConfigurationError, match="non-empty one-dimensional"):
        natural_id_partition([])
    with pytest.raises(ConfigurationError, match="must be hashable"):
        natural_id_partition([1, [2]])
