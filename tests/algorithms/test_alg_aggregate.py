"""Server aggregation of every built-in algorithm against hand-computed numbers.

Inputs are tiny (3-element vectors, one or two updates) and chosen so most
expected values are exact binary fractions; where a square root makes that
impossible the expectation is written out as a scalar formula here, never
derived by calling the code under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from alg_fakes import update, vec

from blazefl import ConfigurationError
from blazefl.algorithms import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedYogi,
    Scaffold,
    weighted_average,
)

EXACT = {"rtol": 0.0, "atol": 0.0}
CLOSE = {"rtol": 1e-12, "atol": 1e-15}


# -- FedAvg / FedProx: the data-size-weighted mean ------------------------------


def test_fedavg_weighted_mean() -> None:
    """FedAvg returns Σ nₖ·xₖ / Σ nₖ: (1·[1,2,3] + 3·[5,−2,0]) / 4 = [4, −1, 0.75]."""
    updates = [update(1, [1.0, 2.0, 3.0], 1), update(2, [5.0, -2.0, 0.0], 3)]
    new = FedAvg().aggregate(vec(9.0, 9.0, 9.0), updates, {})
    torch.testing.assert_close(new, vec(4.0, -1.0, 0.75), **EXACT)


def test_fedavg_ignores_the_old_model() -> None:
    """FedAvg's result does not depend on the previous global model."""
    updates = [update(1, [1.0, 2.0, 3.0], 2), update(2, [3.0, 2.0, 1.0], 2)]
    a = FedAvg().aggregate(vec(0.0, 0.0, 0.0), updates, {})
    b = FedAvg().aggregate(vec(-7.0, 100.0, 3.0), updates, {})
    torch.testing.assert_close(a, vec(2.0, 2.0, 2.0), **EXACT)
    torch.testing.assert_close(b, a, **EXACT)


def test_fedavg_keeps_float32() -> None:
    """FedAvg averages float32 models (in float64) and returns float32."""
    updates = [
        update(1, [1.0, 2.0, 3.0], 1, dtype=torch.float32),
        update(2, [5.0, -2.0, 0.0], 3, dtype=torch.float32),
    ]
    new = FedAvg().aggregate(torch.zeros(3), updates, {})
    assert new.dtype == torch.float32
    torch.testing.assert_close(new, torch.tensor([4.0, -1.0, 0.75]), **EXACT)


def test_fedprox_server_is_the_weighted_mean() -> None:
    """FedProx's server step is FedAvg's weighted mean (the proximal term is local)."""
    updates = [update(1, [1.0, 2.0, 3.0], 1), update(2, [5.0, -2.0, 0.0], 3)]
    new = FedProx(mu=0.5).aggregate(vec(9.0, 9.0, 9.0), updates, {})
    torch.testing.assert_close(new, vec(4.0, -1.0, 0.75), **EXACT)


def test_weighted_average_rejects_no_tensors() -> None:
    """Averaging zero updates is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=r"cannot average zero tensors"):
        weighted_average([], [])


def test_weighted_average_rejects_zero_total_weight() -> None:
    """Weights summing to zero (every client reported no data) are rejected."""
    with pytest.raises(ConfigurationError, match=r"sum to a positive number, got 0"):
        weighted_average([vec(1.0), vec(2.0)], [0, 0])


# -- FedAvgM: server momentum ---------------------------------------------------


def test_fedavgm_two_rounds_accumulate_velocity() -> None:
    """FedAvgM (η=0.5, β=0.5): v₁=Δ₁, x₁=x₀+ηv₁; v₂=βv₁+Δ₂, x₂=x₁+ηv₂."""
    alg = FedAvgM(server_lr=0.5, momentum=0.5)
    x0 = vec(0.0, 0.0, 0.0)
    state = alg.init_state(x0)
    torch.testing.assert_close(state["velocity"], vec(0.0, 0.0, 0.0), **EXACT)
    # Round 1: mean = (1·[2,−6,1] + 1·[2,−2,1]) / 2 = [2, −4, 1] = Δ₁ = v₁.
    x1 = alg.aggregate(
        x0, [update(0, [2.0, -6.0, 1.0]), update(1, [2.0, -2.0, 1.0])], state
    )
    torch.testing.assert_close(state["velocity"], vec(2.0, -4.0, 1.0), **EXACT)
    torch.testing.assert_close(x1, vec(1.0, -2.0, 0.5), **EXACT)
    # Round 2: mean = [3, −2, 0.5], Δ₂ = [2, 0, 0], v₂ = 0.5·[2,−4,1] + Δ₂.
    x2 = alg.aggregate(x1, [update(0, [3.0, -2.0, 0.5])], state)
    torch.testing.assert_close(state["velocity"], vec(3.0, -2.0, 0.5), **EXACT)
    torch.testing.assert_close(x2, vec(2.5, -3.0, 0.75), **EXACT)


def test_fedavgm_without_momentum_at_unit_rate_is_fedavg() -> None:
    """FedAvgM with η=1 and β=0 lands on FedAvg's weighted mean."""
    alg = FedAvgM(server_lr=1.0, momentum=0.0)
    x0 = vec(1.0, 1.0, 1.0)
    updates = [update(1, [1.0, 2.0, 3.0], 1), update(2, [5.0, -2.0, 0.0], 3)]
    new = alg.aggregate(x0, updates, alg.init_state(x0))
    torch.testing.assert_close(new, vec(4.0, -1.0, 0.75), **EXACT)


# -- FedOpt: FedAdam, FedYogi, FedAdagrad -----------------------------------------
#
# Knobs η=0.1, β₁=0.5, β₂=0.75, τ=0.25 (so v₀ = τ² = 0.0625).
# Round 1 from x₀ = [0, 1, −1] with one update [0.5, 1, −3]: Δ₁ = [0.5, 0, −2],
# m₁ = β₁·0 + (1 − β₁)·Δ₁ = [0.25, 0, −1].
# Round 2 from x₁ with one update [1, 0, −2]: Δ₂ = [1, 0, −2] − x₁.

FEDOPT_KNOBS = {"server_lr": 0.1, "beta1": 0.5, "beta2": 0.75, "tau": 0.25}
X0 = (0.0, 1.0, -1.0)
UPDATE_1 = (0.5, 1.0, -3.0)
UPDATE_2 = (1.0, 0.0, -2.0)
M1 = (0.25, 0.0, -1.0)

# v₁ for each algorithm, by hand from v₀ = 0.0625 and Δ₁² = [0.25, 0, 4]:
#   Adam:    0.75·0.0625 + 0.25·Δ₁²                = [0.109375, 0.046875, 1.046875]
#   Yogi:    0.0625 − 0.25·Δ₁²·sign(0.0625 − Δ₁²)   = [0.125, 0.0625, 1.0625]
#   Adagrad: 0.0625 + Δ₁²                           = [0.3125, 0.0625, 4.0625]
# and the scalar second-moment rule used again for round 2.
FEDOPT_CASES: list[tuple[type, tuple[float, ...], Callable[[float, float], float]]] = [
    (
        FedAdam,
        (0.109375, 0.046875, 1.046875),
        lambda v, d: 0.75 * v + 0.25 * d * d,
    ),
    (
        FedYogi,
        (0.125, 0.0625, 1.0625),
        lambda v, d: (
            v - 0.25 * d * d * math.copysign(1.0, v - d * d) if v != d * d else v
        ),
    ),
    (
        FedAdagrad,
        (0.3125, 0.0625, 4.0625),
        lambda v, d: v + d * d,
    ),
]
FEDOPT_IDS = ["fedadam", "fedyogi", "fedadagrad"]


def _step(x: float, m: float, v: float) -> float:
    """x + η·m / (√v + τ) with η = 0.1, τ = 0.25."""
    return x + 0.1 * m / (math.sqrt(v) + 0.25)


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad], ids=FEDOPT_IDS)
def test_fedopt_state_starts_at_tau_squared(cls: type) -> None:
    """FedOpt starts with m = 0 and v = τ² in every coordinate."""
    state = cls(**FEDOPT_KNOBS).init_state(vec(*X0))
    torch.testing.assert_close(state["m"], vec(0.0, 0.0, 0.0), **EXACT)
    torch.testing.assert_close(state["v"], vec(0.0625, 0.0625, 0.0625), **EXACT)


@pytest.mark.parametrize(("cls", "v1", "rule"), FEDOPT_CASES, ids=FEDOPT_IDS)
def test_fedopt_first_server_step(
    cls: type, v1: tuple[float, ...], rule: Callable[[float, float], float]
) -> None:
    """One FedOpt server step: m₁, v₁ exactly, x₁ = x₀ + η·m₁/(√v₁ + τ)."""
    alg = cls(**FEDOPT_KNOBS)
    state = alg.init_state(vec(*X0))
    x1 = alg.aggregate(vec(*X0), [update(0, UPDATE_1)], state)
    torch.testing.assert_close(state["m"], vec(*M1), **EXACT)
    torch.testing.assert_close(state["v"], vec(*v1), **EXACT)
    expected = [_step(x, m, v) for x, m, v in zip(X0, M1, v1, strict=True)]
    assert expected[1] == 1.0  # m₁ = 0 there: the coordinate does not move
    torch.testing.assert_close(x1, vec(*expected), **CLOSE)


@pytest.mark.parametrize(("cls", "v1", "rule"), FEDOPT_CASES, ids=FEDOPT_IDS)
def test_fedopt_second_server_step(
    cls: type, v1: tuple[float, ...], rule: Callable[[float, float], float]
) -> None:
    """A second FedOpt step continues from round 1's m and v (no bias correction)."""
    alg = cls(**FEDOPT_KNOBS)
    state = alg.init_state(vec(*X0))
    x1 = alg.aggregate(vec(*X0), [update(0, UPDATE_1)], state)
    x2 = alg.aggregate(x1, [update(0, UPDATE_2)], state)
    x1_hand = [_step(x, m, v) for x, m, v in zip(X0, M1, v1, strict=True)]
    d2 = [u - x for u, x in zip(UPDATE_2, x1_hand, strict=True)]
    m2 = [0.5 * m + 0.5 * d for m, d in zip(M1, d2, strict=True)]
    v2 = [rule(v, d) for v, d in zip(v1, d2, strict=True)]
    x2_hand = [_step(x, m, v) for x, m, v in zip(x1_hand, m2, v2, strict=True)]
    torch.testing.assert_close(state["m"], vec(*m2), **CLOSE)
    torch.testing.assert_close(state["v"], vec(*v2), **CLOSE)
    torch.testing.assert_close(x2, vec(*x2_hand), **CLOSE)


def test_fedyogi_second_moment_moves_both_ways() -> None:
    """Yogi raises v where Δ² > v and lowers it where Δ² < v, by (1 − β₂)·Δ²."""
    alg = FedYogi(server_lr=0.1, beta1=0.5, beta2=0.75, tau=1.0)  # v₀ = 1
    state = alg.init_state(vec(0.0, 0.0, 0.0))
    alg.aggregate(vec(0.0, 0.0, 0.0), [update(0, [2.0, 0.5, 1.0])], state)
    # Δ² = [4, 0.25, 1]: 1 + 0.25·4 = 2; 1 − 0.25·0.25 = 0.9375; Δ² = v: unchanged.
    torch.testing.assert_close(state["v"], vec(2.0, 0.9375, 1.0), **EXACT)


def test_fedadagrad_ignores_beta2() -> None:
    """FedAdagrad's v accumulates Δ² whatever β₂ is."""
    results = []
    for beta2 in (0.0, 0.5, 0.99):
        alg = FedAdagrad(server_lr=0.1, beta1=0.5, beta2=beta2, tau=0.25)
        state = alg.init_state(vec(*X0))
        results.append(alg.aggregate(vec(*X0), [update(0, UPDATE_1)], state))
        torch.testing.assert_close(state["v"], vec(0.3125, 0.0625, 4.0625), **EXACT)
    torch.testing.assert_close(results[0], results[2], **EXACT)


def test_fedopt_uses_the_weighted_mean_as_pseudo_gradient() -> None:
    """FedAdam's Δ is the data-size-weighted mean minus x: (1·2 + 3·(−2))/4 = −1."""
    alg = FedAdam(server_lr=0.1, beta1=0.5, beta2=0.75, tau=0.25)
    state = alg.init_state(vec(0.0))
    alg.aggregate(vec(0.0), [update(0, [2.0], 1), update(1, [-2.0], 3)], state)
    # m = 0.5·(−1) = −0.5; v = 0.75·0.0625 + 0.25·1 = 0.296875.
    torch.testing.assert_close(state["m"], vec(-0.5), **EXACT)
    torch.testing.assert_close(state["v"], vec(0.296875), **EXACT)


def test_fedopt_defaults() -> None:
    """FedOpt defaults: β₁ = 0.9, β₂ = 0.99, τ = 1e-3 (the paper's); η per optimizer
    from the paper's grid (benchmarks/defaults.py): 0.03, and 0.3 for Adagrad."""
    for cls, lr in ((FedAdam, 0.03), (FedYogi, 0.03), (FedAdagrad, 0.3)):
        alg = cls()
        assert (alg.server_lr, alg.beta1, alg.beta2, alg.tau) == (lr, 0.9, 0.99, 1e-3)


# -- SCAFFOLD: server step -------------------------------------------------------


def test_scaffold_server_step() -> None:
    """SCAFFOLD: x ← x + η_g·mean(yᵢ − x), c ← c + (|S|/N)·mean(Δcᵢ), unweighted."""
    alg = Scaffold(num_clients=4, server_lr=0.5)
    x = vec(1.0, 2.0, -1.0)
    state = {"c": vec(0.5, 0.0, 0.0)}
    updates = [
        update(0, [2.0, 2.0, 0.0], 10, delta_c=[1.0, -2.0, 0.5]),
        update(3, [0.0, 4.0, -1.0], 30, delta_c=[-0.5, 1.0, 0.5]),
    ]
    new = alg.aggregate(x, updates, state)
    # yᵢ − x = [1, 0, 1] and [−1, 2, 0]: mean [0, 1, 0.5]; x + 0.5·mean.
    torch.testing.assert_close(new, vec(1.0, 2.5, -0.75), **EXACT)
    # ΣΔcᵢ = [0.5, −1, 1]; (2/4)·(Σ/2) = Σ/4 = [0.125, −0.25, 0.25].
    torch.testing.assert_close(state["c"], vec(0.625, -0.25, 0.25), **EXACT)


def test_scaffold_state_and_broadcast() -> None:
    """SCAFFOLD's server variate c starts at zero and is broadcast to clients."""
    alg = Scaffold(num_clients=3)
    state = alg.init_state(vec(1.0, 2.0))
    torch.testing.assert_close(state["c"], vec(0.0, 0.0), **EXACT)
    state["c"] = vec(0.25, -1.0)
    extra = alg.broadcast_extra(state)
    assert set(extra) == {"c"}
    torch.testing.assert_close(extra["c"], vec(0.25, -1.0), **EXACT)
