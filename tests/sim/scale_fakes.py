"""A tiny federation for scale tests: any number of registered clients.

Nothing here is proportional to the registered clients: the handler samples
with `random.sample(range(n), k)` (O(k)), and a client's data is generated
from its id when it is sampled. Each client keeps a running counter and a
small tensor in ``ctx.state``, so client state really round-trips through the
store. A plain module (not a test file) so process workers can import it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from blazefl.reproducibility import derive_seed
from blazefl.sim import ClientContext

FEATURES = 4


class TinyHandler:
    """Linear regression by FedAvg over ``num_clients`` registered clients."""

    def __init__(
        self, num_clients: int, per_round: int, rounds: int, seed: int = 0
    ) -> None:
        self.num_clients = num_clients
        self.per_round = per_round
        self.rounds = rounds
        self.round = 0
        self.weights = torch.zeros(FEATURES, dtype=torch.float64)
        self._rng = random.Random(seed)
        self._buffer: list[tuple[torch.Tensor, int]] = []

    def sample_clients(self) -> list[int]:
        return self._rng.sample(range(self.num_clients), self.per_round)

    def downlink_package(self) -> torch.Tensor:
        return self.weights.clone()

    def load(self, package: tuple[torch.Tensor, int]) -> bool:
        self._buffer.append(package)
        if len(self._buffer) < self.per_round:
            return False
        self.load_round(self._buffer)
        self._buffer = []
        return True

    def load_round(self, packages: list[tuple[torch.Tensor, int]]) -> None:
        total = sum(n for _, n in packages)
        acc = torch.zeros_like(self.weights)
        for weights, n in packages:
            acc += weights * (n / total)
        self.weights = acc
        self.round += 1

    def is_stopped(self) -> bool:
        return self.round >= self.rounds

    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "weights": self.weights.clone(),
            "rng": self._rng.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = state["round"]
        self.weights = state["weights"].clone()
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))


@dataclass(frozen=True)
class TinyWork:
    """A few gradient steps on 8 samples generated from the client's id."""

    steps: int = 2

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        g = torch.Generator().manual_seed(derive_seed(1234, ctx.cid))
        x = torch.randn(8, FEATURES, generator=g, dtype=torch.float64)
        y = x.sum(dim=1) + 0.1 * torch.randn(8, generator=g, dtype=torch.float64)
        w = payload.clone()
        visits = ctx.state.get("visits", 0) + 1
        drift = ctx.state.get("drift", torch.zeros(FEATURES, dtype=torch.float64))
        for _ in range(self.steps):
            noise = torch.randn(
                FEATURES, generator=ctx.rng.torch_cpu, dtype=torch.float64
            )
            grad = 2 * x.T @ (x @ w - y) / len(y)
            w = w - 0.05 * (grad + 0.01 * noise + 0.01 * drift)
        ctx.state["visits"] = visits
        ctx.state["drift"] = drift + (w - payload)
        ctx.metrics["visits"] = visits
        return w, 8
