"""A tiny federation for scale tests: any number of registered clients.

Nothing here is proportional to the registered clients: the handler samples
with `random.sample(range(n), k)` (O(k)), and a client's data is generated
from its id when it is sampled. Each client keeps a running counter and a
small tensor in ``ctx.state``, so client state really round-trips through the
store. A plain module (not a test file) so process workers can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from blazefl.reproducibility import derive_seed
from blazefl.sim import ClientContext
from fakes import FedAvgHandler

FEATURES = 4


class TinyHandler(FedAvgHandler):
    """Linear regression by FedAvg over ``num_clients`` registered clients:
    the shared FedAvg handler with a 4-weight float64 model instead of a CNN."""

    def __init__(
        self, num_clients: int, per_round: int, rounds: int, seed: int = 0
    ) -> None:
        super().__init__(
            num_clients=num_clients,
            per_round=per_round,
            rounds=rounds,
            seed=seed,
            params=torch.zeros(FEATURES, dtype=torch.float64),
        )


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
