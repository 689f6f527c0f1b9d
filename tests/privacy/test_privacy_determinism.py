"""Private runs are bitwise reproducible: central DP (server noise, adaptive
clipping), local DP (client noise) and secure aggregation (masks, a dropped
client) end with the same model on every executor and worker count, and a
run resumed from a checkpoint equals the uninterrupted one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from privacy_fakes import NUM_CLIENTS, DropClient, dataset

from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.privacy import Privacy
from blazefl.sim import (
    Executor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)

PRIVACIES = {
    "central-adaptive": Privacy(
        dp="central", noise_multiplier=0.5, clip_norm=1.0, adaptive_clip=True
    ),
    "local-laplace": Privacy(
        dp="local", noise_multiplier=20.0, clip_norm=0.05, mechanism="laplace"
    ),
    "secagg-central-dropout": Privacy(
        dp="central", noise_multiplier=0.5, secagg=True, secret=11
    ),
}
EXECUTORS: dict[str, Callable[[], Executor]] = {
    "inline": InlineExecutor,
    "threads-1": lambda: ThreadExecutor(1),
    "threads-2": lambda: ThreadExecutor(2),
    "processes-2": lambda: ProcessExecutor(2),
}


@pytest.fixture(scope="module")
def data() -> SyntheticPartitionedDataset:
    return dataset()


def _simulation(
    privacy: Privacy, data: SyntheticPartitionedDataset, executor: Executor
) -> tuple[FederatedServer, Simulation[Any, Any]]:
    server = FederatedServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=3,
        sample_ratio=0.5,
        seed=2,
        privacy=privacy,
    )
    work: Any = FederatedClient(
        FedAvg(),
        ModelZoo(),
        "mlp",
        data,
        epochs=1,
        batch_size=16,
        lr=0.1,
        privacy=privacy,
    )
    if privacy.secagg:
        work = DropClient(work, cid=1)
    sim: Simulation[Any, Any] = Simulation(
        server, work, executor=executor, seed=2, on_client_failure="drop"
    )
    return server, sim


def _final(server: FederatedServer) -> tuple[torch.Tensor, float]:
    assert server.privacy is not None
    return server.params.clone(), server.privacy.clip_norm


@pytest.mark.parametrize("name", PRIVACIES)
def test_private_run_is_bitwise_equal_on_every_executor(
    name: str, data: SyntheticPartitionedDataset
) -> None:
    """Inline, 1 and 2 threads, 2 processes: the same model, bit for bit."""
    privacy = PRIVACIES[name]
    finals = {}
    for label, make in EXECUTORS.items():
        server, sim = _simulation(privacy, data, make())
        results = sim.run_sync()
        if privacy.secagg:  # client 1 was sampled and dropped out
            assert any(r.failures for r in results)
        finals[label] = _final(server)
    (params, clip), *others = finals.values()
    plain, _ = _simulation(Privacy(), data, InlineExecutor())
    assert not torch.equal(params, plain.params)
    for other_params, other_clip in others:
        assert torch.equal(other_params, params)
        assert other_clip == clip


@pytest.mark.parametrize("name", PRIVACIES)
def test_resumed_private_run_equals_the_uninterrupted_one(
    name: str, data: SyntheticPartitionedDataset
) -> None:
    """Two rounds, a checkpoint, a fresh federation from it, one more round."""
    privacy = PRIVACIES[name]
    straight, sim = _simulation(privacy, data, ThreadExecutor(2))
    sim.run_sync()
    _, sim = _simulation(privacy, data, ThreadExecutor(2))
    sim.run_sync(rounds=2)
    state = sim.state_dict()
    resumed, sim = _simulation(privacy, data, InlineExecutor())
    sim.load_state_dict(state)
    sim.run_sync()
    assert resumed.round == straight.round == 3
    assert _final(resumed)[1] == _final(straight)[1]
    assert torch.equal(resumed.params, straight.params)
