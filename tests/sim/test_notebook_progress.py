"""`blazefl.notebook.live_progress` and driving a simulation inside a running loop."""

from __future__ import annotations

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.notebook import live_progress
from blazefl.sim import Simulation, ThreadExecutor

pytestmark = pytest.mark.anyio


def _build() -> tuple[Simulation[object, object], FederatedServer]:
    data = SyntheticPartitionedDataset(num_clients=6, seed=0, samples_per_client=16)
    zoo = ModelZoo(data.input_shape, data.num_classes)
    server = FederatedServer(
        FedAvg(),
        zoo,
        "mlp",
        dataset=data,
        num_clients=6,
        rounds=3,
        sample_ratio=0.5,
        seed=1,
    )
    client = FederatedClient(FedAvg(), zoo, "mlp", data, epochs=1)
    return Simulation(server, client, executor=ThreadExecutor(2), seed=1), server


async def test_live_progress_shows_every_round_and_changes_nothing() -> None:
    lines: list[str] = []
    sim, server = _build()
    async with sim, live_progress(sim, out=lines.append) as rows:
        results = await sim.run()
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert len(lines) == 3
    assert lines[2].startswith("round 3 | clients 3 | failed 0 | train loss ")
    assert rows[2][5] == f"{results[2].summary['server_acc']:.3f}"
    plain, plain_server = _build()
    async with plain:
        await plain.run()
    assert torch.equal(server.params, plain_server.params)


async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    sim, _ = _build()
    with pytest.raises(KeyError, match="boom"):
        async with sim, live_progress(sim, out=lambda line: None):
            raise KeyError("boom")


async def test_run_sync_inside_a_running_loop_says_what_to_do() -> None:
    sim, _ = _build()
    with pytest.raises(
        ConfigurationError, match=r"use `async with sim: await sim.run\(\)`"
    ):
        sim.run_sync()
