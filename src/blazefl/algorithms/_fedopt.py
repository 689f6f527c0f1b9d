"""The FedOpt family (Reddi et al., 2021): adaptive server optimizers.

The server treats Δ = mean(xₖ) − x (data-size-weighted; or the server's
aggregator's delta) as a pseudo-gradient and applies an adaptive step:

    m ← β₁·m + (1 − β₁)·Δ
    v ← v + Δ²                                   (FedAdagrad)
    v ← β₂·v + (1 − β₂)·Δ²                        (FedAdam)
    v ← v − (1 − β₂)·Δ²·sign(v − Δ²)              (FedYogi)
    x ← x + η·m / (√v + τ)

``τ`` (the paper's adaptivity knob, default 1e-3) keeps the step bounded; ``v``
starts at τ² as in the paper. No bias correction, as in the paper.

Default server learning rates are per optimizer, from the grid the paper
searches (η = 10^k, k in steps of 1/2): 10^-1.5 ≈ 0.03 for FedAdam and
FedYogi, 10^-0.5 ≈ 0.3 for FedAdagrad, whose accumulated ``v`` shrinks its
steps over rounds. They are the best of that grid after 5 rounds of
``blazefl run`` on the built-in data (``benchmarks/defaults.py --search``;
the old shared default 0.01 left FedAdagrad at chance, 0.19).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from blazefl.algorithms._aggregation import aggregate_delta
from blazefl.algorithms._base import Algorithm, ClientUpdate
from blazefl.algorithms._settings import check_fraction, check_positive, setting

if TYPE_CHECKING:
    import torch
else:
    from blazefl.algorithms._lazy import torch

__all__ = ["FedAdagrad", "FedAdam", "FedYogi"]


@dataclass(frozen=True)
class _FedOpt(Algorithm):
    pluggable_aggregation: ClassVar[bool] = True
    folds_updates: ClassVar[bool] = True
    server_lr: float = setting(0.03, check_positive, "Server learning rate η > 0.")
    beta1: float = setting(0.9, check_fraction, "FedOpt first-moment decay in [0, 1).")
    beta2: float = setting(
        0.99, check_fraction, "FedOpt second-moment decay in [0, 1)."
    )
    tau: float = setting(1e-3, check_positive, "FedOpt adaptivity τ > 0.")

    def init_state(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "m": torch.zeros_like(params),
            "v": torch.full_like(params, self.tau**2),
        }

    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        delta = aggregate_delta(params, updates)
        m = self.beta1 * state["m"] + (1 - self.beta1) * delta
        v = self._second_moment(state["v"], delta * delta)
        state["m"], state["v"] = m, v
        return params + self.server_lr * m / (v.sqrt() + self.tau)


@dataclass(frozen=True)
class FedAdagrad(_FedOpt):
    """Adagrad on the server: v accumulates Δ² (``beta2`` is unused)."""

    name: ClassVar[str] = "fedadagrad"
    server_lr: float = setting(0.3, check_positive, "Server learning rate η > 0.")

    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        return v + delta_sq


@dataclass(frozen=True)
class FedAdam(_FedOpt):
    """Adam on the server: v is an exponential average of Δ²."""

    name: ClassVar[str] = "fedadam"

    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        return self.beta2 * v + (1 - self.beta2) * delta_sq


@dataclass(frozen=True)
class FedYogi(_FedOpt):
    """Yogi on the server: v moves towards Δ² additively, by sign."""

    name: ClassVar[str] = "fedyogi"

    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        return v - (1 - self.beta2) * delta_sq * torch.sign(v - delta_sq)
