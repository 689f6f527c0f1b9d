"""Staleness functions: how much an update computed on an old model counts.

An update that started from model version τ₀ and arrives when the server is at
version τ has staleness ``t = τ − τ₀``. Xie et al. (2019, "Asynchronous
Federated Optimization", arXiv:1903.03934) weight it by ``s(t)``:

- ``constant``: ``s(t) = 1``;
- ``polynomial`` (a > 0, default 0.5): ``s(t) = (t + 1) ** -a``;
- ``hinge`` (a > 0 default 10, b >= 0 default 4): ``s(t) = 1`` for t <= b,
  else ``1 / (a · (t − b) + 1)``.

FedBuff (Nguyen et al., 2022) uses the polynomial form with a = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from blazefl._exceptions import ConfigurationError

__all__ = ["STALENESS_KINDS", "Staleness", "check_staleness"]

StalenessKind = Literal["constant", "polynomial", "hinge"]
STALENESS_KINDS: tuple[str, ...] = ("constant", "polynomial", "hinge")


@dataclass(frozen=True, slots=True)
class Staleness:
    """``s(t)``, one of the documented kinds with its parameters."""

    kind: StalenessKind = "polynomial"
    a: float = 0.5
    b: float = 4.0

    def __post_init__(self) -> None:
        check_staleness("staleness", self.kind)
        if not self.a > 0:
            raise ConfigurationError(f"staleness a must be > 0, got {self.a!r}")
        if not self.b >= 0:
            raise ConfigurationError(f"staleness b must be >= 0, got {self.b!r}")

    def __call__(self, staleness: int) -> float:
        if staleness < 0:
            raise ValueError(f"staleness must be >= 0, got {staleness}")
        if self.kind == "constant":
            return 1.0
        if self.kind == "polynomial":
            return float((staleness + 1.0) ** -self.a)
        if staleness <= self.b:
            return 1.0
        return 1.0 / (self.a * (staleness - self.b) + 1.0)


def check_staleness(name: str, value: object) -> str:
    """One of `STALENESS_KINDS` (a setting's check)."""
    if value not in STALENESS_KINDS:
        raise ConfigurationError(
            f"{name} must be one of {', '.join(STALENESS_KINDS)}, got {value!r}"
        )
    return str(value)
