"""User-written algorithms (the two examples of docs/algorithms.md) and where
client state lives: ``ctx.state``, committed only when the round commits."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
import pytest
import torch
from alg_fakes import NUM_CLIENTS, dataset, federation, run, update, vec

from blazefl import ConfigurationError, RoundFailedError
from blazefl.algorithms import (
    Algorithm,
    Broadcast,
    ClientUpdate,
    FedAvg,
    FederatedClient,
    LocalTraining,
    Scaffold,
    weighted_average,
)
from blazefl.data import SyntheticPartitionedDataset
from blazefl.sim import ClientContext, Simulation, ThreadExecutor

# -- the docs' examples, verbatim ---------------------------------------------------


@dataclass(frozen=True)
class FedAvgServerLR(Algorithm):
    """FedAvg with a server learning rate: x ← x + η·(Σ nₖ·xₖ / Σ nₖ − x)."""

    name: ClassVar[str] = "fedavg_slr"
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.server_lr <= 2:
            raise ConfigurationError(
                f"server_lr must be in (0, 2], got {self.server_lr!r}"
            )

    def aggregate(
        self,
        params: torch.Tensor,
        updates: Sequence[ClientUpdate],
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        mean = weighted_average(
            [u.params for u in updates], [u.num_samples for u in updates]
        )
        return params + self.server_lr * (mean - params)


@dataclass(frozen=True)
class CountingFedAvg(FedAvg):
    """FedAvg whose clients count, in their own state, how often they trained."""

    name: ClassVar[str] = "counting_fedavg"

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        ctx.state["visits"] = ctx.state.get("visits", 0) + 1
        ctx.metrics["visits"] = ctx.state["visits"]
        return super().client_update(ctx, local, broadcast)


@pytest.fixture(scope="module")
def data() -> SyntheticPartitionedDataset:
    return dataset()


def test_custom_server_lr_arithmetic() -> None:
    """The example's step: x + 1.5·(mean − x) = 2 + 1.5·(4 − 2) = 5 per element."""
    updates = [update(0, [3.0, 1.0], 1), update(1, [5.0, 7.0], 1)]  # mean [4, 4]
    new = FedAvgServerLR(server_lr=1.5).aggregate(vec(2.0, 2.0), updates, {})
    torch.testing.assert_close(new, vec(5.0, 5.0), rtol=0.0, atol=0.0)


def test_custom_algorithm_validates() -> None:
    """The example rejects a server learning rate outside (0, 2], naming it."""
    with pytest.raises(ConfigurationError, match=r"server_lr must be in \(0, 2\]"):
        FedAvgServerLR(server_lr=3.0)


def test_custom_algorithm_learns(data: SyntheticPartitionedDataset) -> None:
    """The example algorithm runs under FederatedServer/Client and learns."""
    _, results = run(FedAvgServerLR(server_lr=1.5), data, rounds=5, seed=0)
    accuracies = [r.summary["server_acc"] for r in results]
    assert accuracies[-1] > 0.5
    assert accuracies[-1] > accuracies[0]


def test_client_state_persists_per_client(data: SyntheticPartitionedDataset) -> None:
    """ctx.state is kept per client across rounds: visits count each sampling."""
    _, results = run(CountingFedAvg(), data, rounds=4, seed=0)
    seen: dict[int, int] = {}
    for result in results:
        for report in result.clients:
            seen[report.cid] = seen.get(report.cid, 0) + 1
            assert report.metrics["visits"] == seen[report.cid]
    assert max(seen.values()) > 1


# -- client state commits with the round -------------------------------------------


@dataclass
class FailOnce:
    """Client work that runs the real client, then fails client ``cid`` in round
    ``round`` the first time (after its state was already updated)."""

    client: FederatedClient
    cid: int
    round: int
    failed: threading.Event = field(default_factory=threading.Event)

    def __call__(self, ctx: ClientContext, payload: Any) -> Any:
        out = self.client(ctx, payload)
        if (ctx.cid, ctx.round) == (self.cid, self.round) and not self.failed.is_set():
            self.failed.set()
            raise RuntimeError("injected failure")
        return out


def test_scaffold_variates_commit_only_with_the_round(
    data: SyntheticPartitionedDataset,
) -> None:
    """A failed, re-run round leaves SCAFFOLD's cᵢ exactly as a clean run does."""
    algorithm = Scaffold(num_clients=NUM_CLIENTS)
    clean, _ = run(algorithm, data, rounds=3, seed=0)

    server, client = federation(algorithm, data, rounds=3, seed=0)
    probe, _ = federation(algorithm, data, rounds=3, seed=0)
    probe.sample_clients()
    work = FailOnce(client, cid=probe.sample_clients()[-1], round=1)

    async def main() -> None:
        sim = Simulation(server, work, executor=ThreadExecutor(2), seed=0)
        async with sim:
            await sim.run_round()
            with pytest.raises(RoundFailedError, match=r"injected failure"):
                await sim.run_round()
            await sim.run()

    anyio.run(main)
    assert work.failed.is_set()
    assert server.round == 3
    assert torch.equal(server.params, clean.params)
    assert torch.equal(server.state["c"], clean.state["c"])
