"""The accountant: dp-accounting's figures for the mechanism a round is, the
published figures the library reproduces, the budget and the calibration."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from blazefl import ConfigurationError
from blazefl.privacy import PrivacyAccountant, calibrate_noise

REPLACE_ONE = dpa.NeighboringRelation.REPLACE_ONE


def _classic_epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    """The library's RDP curve of the Poisson-subsampled Gaussian, converted
    with the classical bound ε = min_α RDP(α) + log(1/δ)/(α − 1) (Mironov 2017,
    Proposition 3), the conversion the papers of 2016-2020 report."""
    accountant = RdpAccountant()
    accountant.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    orders = np.array(accountant._orders)
    return float(np.min(np.array(accountant._rdp) + math.log(1 / delta) / (orders - 1)))


@pytest.mark.parametrize(
    ("q", "sigma", "steps", "published"),
    [
        # Abadi et al. 2016, "Deep Learning with Differential Privacy", §3.1:
        # q = 0.01, σ = 4, δ = 1e-5, T = 10000 give ε ≈ 1.26 (moments accountant).
        (0.01, 4.0, 10_000, 1.26),
        # Dong, Roth and Su 2022 (JRSS-B; HDSR Figure 4): MNIST, p = 256/60000,
        # σ = 0.7, 70 epochs: the moments accountant gives (8.68, 1e-5)-DP.
        (256 / 60_000, 0.7, math.ceil(70 * 60_000 / 256), 8.68),
    ],
)
def test_library_reproduces_published_figures(
    q: float, sigma: float, steps: int, published: float
) -> None:
    """dp-accounting's RDP gives the published ε to its two decimals, and its
    default (tighter) conversion no more than that."""
    assert round(_classic_epsilon(q, sigma, steps, 1e-5), 2) == published
    accountant = RdpAccountant()
    accountant.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    assert accountant.get_epsilon(1e-5) <= published


def test_central_rdp_is_the_sampled_without_replacement_analysis() -> None:
    """Central DP with m of n sampled is the library's WOR event at σ/2."""
    ours = PrivacyAccountant("central", 2.0, 100, 10, 1e-5)
    for rounds in (1, 7, 50):
        reference = RdpAccountant(neighboring_relation=REPLACE_ONE)
        reference.compose(
            dpa.SampledWithoutReplacementDpEvent(100, 10, dpa.GaussianDpEvent(1.0)),
            rounds,
        )
        assert ours.epsilon(rounds) == pytest.approx(
            reference.get_epsilon(1e-5), rel=1e-12
        )


def test_epsilon_grows_with_rounds_and_falls_with_noise() -> None:
    """ε is 0 before any round, increasing in rounds, decreasing in σ."""
    low, high = (PrivacyAccountant("central", s, 50, 5, 1e-5) for s in (1.0, 4.0))
    assert low.epsilon(0) == 0.0
    assert 0 < low.epsilon(1) < low.epsilon(2) < low.epsilon(10)
    assert high.epsilon(10) < low.epsilon(10)


def test_rdp_and_pld_agree_on_replace_one() -> None:
    """With full participation both accountants apply; PLD is the tighter
    (and equals add/remove at σ/2: replace-one doubles the sensitivity)."""
    rdp = PrivacyAccountant("central", 3.0, 10, 10, 1e-5, "rdp")
    pld = PrivacyAccountant("central", 3.0, 10, 10, 1e-5, "pld")
    reference = PLDAccountant()
    reference.compose(dpa.GaussianDpEvent(1.5), 20)
    assert pld.epsilon(20) == pytest.approx(reference.get_epsilon(1e-5), abs=1e-3)
    assert pld.epsilon(20) <= rdp.epsilon(20) <= 1.2 * pld.epsilon(20)


def test_local_laplace_is_pure_dp_per_round() -> None:
    """Local Laplace noise of scale σ·C with L1 sensitivity 2C: ε = 2/σ a round."""
    accountant = PrivacyAccountant("local", 0.5, 10, 3, 1e-5, mechanism="laplace")
    assert accountant.epsilon(1) == pytest.approx(4.0, rel=1e-3)
    assert accountant.epsilon(3) == pytest.approx(12.0, rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"mode": "central", "clients_per_round": 5, "method": "pld"},
            r"--accountant pld cannot analyse fixed-size sampling without "
            r"replacement \(5 of 20",
        ),
        (
            {"mode": "local", "mechanism": "laplace", "method": "pld"},
            r"--accountant pld cannot analyse local Laplace noise",
        ),
    ],
)
def test_what_the_library_cannot_analyse_is_refused(
    kwargs: dict[str, object], match: str
) -> None:
    """PLD has no sampled-without-replacement and no replace-one Laplace analysis."""
    args: dict[str, object] = {
        "noise_multiplier": 1.0,
        "num_clients": 20,
        "clients_per_round": 20,
        "delta": 1e-5,
        **kwargs,
    }
    with pytest.raises(ConfigurationError, match=match):
        PrivacyAccountant(**args)  # type: ignore[arg-type]


def test_calibrated_noise_meets_the_budget_tightly() -> None:
    """The calibrated σ spends at most the target after R rounds, and 1e-4 less
    noise would overspend it."""
    template = PrivacyAccountant("central", 1.0, 100, 10, 1e-5)
    sigma = calibrate_noise(template, 3.0, 20)
    spent = PrivacyAccountant("central", sigma, 100, 10, 1e-5).epsilon(20)
    assert spent <= 3.0
    less = PrivacyAccountant("central", sigma - 2e-4, 100, 10, 1e-5).epsilon(20)
    assert less > 3.0 - 1e-2
    assert spent == pytest.approx(3.0, abs=1e-2)
