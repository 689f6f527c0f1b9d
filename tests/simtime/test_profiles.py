"""Client system profiles: generation, validation, availability windows, timing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blazefl import ConfigurationError
from blazefl.simtime import (
    ClientProfile,
    ProfileSet,
    Timing,
    client_timing,
    generate_profiles,
)


def test_generated_profiles_repeat_for_a_seed() -> None:
    """The same seed gives the same profiles; another seed other ones."""
    a, b, c = (generate_profiles(50, s) for s in (3, 3, 4))
    assert [a[i] for i in range(50)] == [b[i] for i in range(50)]
    assert a[0] != c[0]


def test_generated_speeds_are_heavy_tailed_around_the_median() -> None:
    """Log-normal compute speeds: median as given, a wide spread."""
    p = generate_profiles(4000, 0, compute_median=0.01, compute_sigma=1.0)
    speeds = np.array([p[i].compute_s_per_sample for i in range(len(p))])
    assert np.median(speeds) == pytest.approx(0.01, rel=0.1)
    assert np.quantile(speeds, 0.9) / np.quantile(speeds, 0.1) > 8


def test_generation_leaves_global_rngs_alone() -> None:
    """Profiles come from their own stream: numpy's global state is untouched."""
    np.random.seed(1)
    expected = np.random.random()
    np.random.seed(1)
    generate_profiles(10, 0, online_fraction=0.5)
    assert np.random.random() == expected


def test_negative_speed_is_refused_naming_the_client() -> None:
    """A negative compute speed names the client and the value."""
    with pytest.raises(
        ConfigurationError, match=r"client 1 has compute_s_per_sample=-0\.5"
    ):
        ProfileSet([0.1, -0.5], [1e6, 1e6], [1e6, 1e6], [0.0, 0.0])


def test_zero_bandwidth_is_refused() -> None:
    """A bandwidth must be > 0."""
    with pytest.raises(ConfigurationError, match=r"client 0 has upload_bps=0\.0"):
        ProfileSet([0.1], [1e6], [0.0], [0.0])


def test_overlapping_windows_are_refused() -> None:
    """Availability windows must be sorted and disjoint."""
    with pytest.raises(ConfigurationError, match="overlap or are unsorted"):
        ProfileSet([0.1], [1.0], [1.0], [0.0], windows=[((0, 10), (5, 20))])


def test_windows_say_when_a_client_is_online() -> None:
    """online_at / online_until / next_online on one-off windows."""
    p = ClientProfile(0.1, 1.0, 1.0, 0.0, windows=((10.0, 20.0), (30.0, 40.0)))
    assert not p.online_at(5.0)
    assert p.online_at(10.0)
    assert not p.online_at(20.0)
    assert p.online_until(15.0) == 20.0
    assert p.next_online(25.0) == 30.0
    assert p.next_online(45.0) == math.inf


def test_periodic_windows_repeat_and_wrap() -> None:
    """A window running to the period's end continues into the next period."""
    p = ClientProfile(
        0.1, 1.0, 1.0, 0.0, windows=((0.0, 5.0), (80.0, 100.0)), period=100.0
    )
    assert p.online_at(185.0)
    assert p.online_until(185.0) == 205.0
    assert not p.online_at(150.0)
    assert p.next_online(150.0) == 180.0


def test_online_fraction_is_respected() -> None:
    """With online_fraction=0.3 about 30% of clients are online at a time."""
    p = generate_profiles(2000, 0, online_fraction=0.3, period=100.0)
    share = len(p.online_at(37.0)) / len(p)
    assert share == pytest.approx(0.3, abs=0.05)


def test_timing_follows_the_formulas() -> None:
    """download + compute + upload, from samples, epochs and model bytes."""
    p = ClientProfile(0.01, 8e6, 2e6, 0.05)
    t = client_timing(p, num_samples=100, epochs=3, model_bytes=1_000_000)
    assert t == Timing(download=0.05 + 1.0, compute=3.0, upload=0.05 + 4.0)
    assert t.total == pytest.approx(8.1)


def test_profiles_must_cover_the_federation() -> None:
    """A federation larger than the profiles is named."""
    with pytest.raises(ConfigurationError, match=r"clients 5\.\.7 have no profile"):
        generate_profiles(5, 0).check_covers(8)
