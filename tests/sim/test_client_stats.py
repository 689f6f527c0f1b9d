"""`accuracy_stats`: the spread of per-client accuracies, exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blazefl import ConfigurationError
from blazefl.sim import accuracy_stats


def test_exact_values_on_ten_clients() -> None:
    values = [0.9, 0.1, 0.5, 0.7, 0.3, 0.6, 0.4, 0.8, 0.2, 1.0]
    stats = accuracy_stats(values, threshold=0.5)
    assert stats["client_acc_mean"] == pytest.approx(0.55, abs=1e-15)
    assert stats["client_acc_std"] == pytest.approx(math.sqrt(0.0825), abs=1e-15)
    assert stats["client_acc_p10"] == pytest.approx(0.19, abs=1e-15)
    assert stats["client_acc_p50"] == pytest.approx(0.55, abs=1e-15)
    assert stats["client_acc_p90"] == pytest.approx(0.91, abs=1e-15)
    assert stats["client_acc_worst10"] == 0.1  # ceil(10 / 10) = 1 client
    assert stats["client_acc_above"] == 0.6  # 0.5 itself counts
    assert stats["client_acc_count"] == 10


def test_quantiles_match_numpys_linear_method() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(37).tolist()
    stats = accuracy_stats(values, prefix="x")
    for q in (10, 50, 90):
        assert stats[f"x_p{q}"] == pytest.approx(np.quantile(values, q / 100))
    assert stats["x_std"] == pytest.approx(np.std(values))


def test_worst_ten_percent_rounds_up() -> None:
    """11 clients: the worst ceil(1.1) = 2 are averaged."""
    values = [0.0, 0.2, *[1.0] * 9]
    assert accuracy_stats(values)["client_acc_worst10"] == pytest.approx(0.1)


def test_the_order_of_clients_changes_nothing() -> None:
    values = [0.1 * k for k in range(13)]
    assert accuracy_stats(values) == accuracy_stats(values[::-1])


def test_no_client_gives_a_count_of_zero_and_no_figures() -> None:
    stats = accuracy_stats([], prefix="heldout_acc")
    assert stats["heldout_acc_count"] == 0
    assert stats["heldout_acc_mean"] is None
    assert stats["heldout_acc_p90"] is None


def test_one_client() -> None:
    stats = accuracy_stats([0.25])
    assert stats["client_acc_std"] == 0.0
    assert stats["client_acc_p10"] == stats["client_acc_p90"] == 0.25
    assert stats["client_acc_above"] == 0.0


@pytest.mark.parametrize("threshold", [-0.1, 1.5, True, "0.5"])
def test_a_bad_threshold_is_refused(threshold: object) -> None:
    with pytest.raises(ConfigurationError, match=r"threshold must be"):
        accuracy_stats([0.5], threshold=threshold)  # type: ignore[arg-type]


def test_a_non_finite_accuracy_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"finite"):
        accuracy_stats([0.5, math.nan])
