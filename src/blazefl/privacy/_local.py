"""Local differential privacy: each client noises its own clipped update.

For when the server is not trusted with individual updates at all: the
client adds the noise before upload, so every upload is itself (ε, δ)-DP
(Gaussian, L2 clipping) or ε-DP (Laplace, L1 clipping, per coordinate) with
respect to replacing that client's data. The price is noise m times larger
in the average than central DP's. Noise comes from the client's own RNG suite
(its ``torch_cpu`` generator, after training), so it is the same bit for bit
on every executor and after a resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["gaussian_noise", "laplace_noise"]


def gaussian_noise(
    size: int, stddev: float, generator: torch.Generator
) -> torch.Tensor:
    """N(0, stddev²) per element, float64."""
    import torch

    return torch.randn(size, generator=generator, dtype=torch.float64) * stddev


def laplace_noise(size: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Laplace(0, scale) per element, float64, by the inverse CDF."""
    import torch

    u = torch.rand(size, generator=generator, dtype=torch.float64) - 0.5
    # u = -0.5 (probability 2^-53) would give log(0): keep |u| below one half.
    half = torch.nextafter(
        torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    )
    magnitude = torch.minimum(u.abs(), half)
    return -scale * torch.sign(u) * torch.log1p(-2 * magnitude)
