"""Per-client update clipping, fixed or adaptive.

Clipping bounds what one client can move the model: the L2 norm (L1 for
Laplace noise) of its update Δ = x_client − x_global is scaled down to at most
C, which is what makes the sum's sensitivity — and so the noise σ·C — a
statement about one user (McMahan et al. 2018, "Learning Differentially
Private Recurrent Language Models").

Adaptive clipping (Andrew et al. 2021, "Differentially Private Learning with
Adaptive Clipping", geometric update) tracks a quantile γ of the update
norms instead of a fixed C: each client also reports bᵢ = 1[‖Δᵢ‖ ≤ C]; the
server takes the noised mean b̄ = (Σ(bᵢ − ½) + N(0, σ_b²))/m + ½ and sets
C ← C·exp(−η_C·(b̄ − γ)). Spending part of the budget on the count leaves the
update the noise multiplier σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2), so one round is,
in total, the Gaussian mechanism of multiplier σ the accountant is told
(their Theorem 1).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from blazefl._exceptions import ConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = ["adaptive_step", "clip", "update_noise_multiplier"]


def clip(
    delta: torch.Tensor, clip_norm: float, *, order: int = 2
) -> tuple[torch.Tensor, float]:
    """``delta`` scaled to norm at most ``clip_norm`` (L2, or L1 with
    ``order=1``), in float64, and its norm before clipping."""
    import torch

    wide = delta.to(torch.float64)
    norm = float(torch.linalg.vector_norm(wide, ord=order))
    if not math.isfinite(norm):
        raise ConfigurationError(
            f"an update has a non-finite norm ({norm}); it cannot be clipped"
        )
    if norm > clip_norm:
        wide = wide * (clip_norm / norm)
    return wide, norm


def update_noise_multiplier(sigma: float, count_stddev: float) -> float:
    """σ_Δ for the update when the clipped-count gets noise ``count_stddev``.

    Raises when the count's noise is too small to leave the update any budget
    (2·σ_b must exceed σ).
    """
    if not 2 * count_stddev > sigma:
        raise ConfigurationError(
            f"adaptive clipping: the count's noise stddev {count_stddev} must exceed "
            f"noise_multiplier / 2 = {sigma / 2}; raise clip_count_stddev"
        )
    return float((sigma**-2 - (2 * count_stddev) ** -2) ** -0.5)


def adaptive_step(
    clip_norm: float,
    noisy_centered_count: float,
    clients: int,
    *,
    target_quantile: float,
    learning_rate: float,
) -> float:
    """The next C from the round's noised Σ(bᵢ − ½) over ``clients`` clients."""
    fraction = noisy_centered_count / clients + 0.5
    return clip_norm * math.exp(-learning_rate * (fraction - target_quantile))
