"""Checkpoints: bitwise resume and atomic writes.

Damaged, altered, foreign and code-running checkpoint files are cases of the
hostile-input catalogue (tests/test_hostile_inputs.py, ``checkpoint-*``), which
matches each refusal's whole message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.algorithms import FederatedClient, FederatedServer, Scaffold
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import (
    Executor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
    load_checkpoint,
    save_checkpoint,
)

CLIENTS = 8


@pytest.fixture(scope="module")
def data() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(CLIENTS, seed=3, samples_per_client=24)


def _federation(
    data: SyntheticPartitionedDataset, executor: Executor
) -> tuple[FederatedServer, Simulation[Any, Any]]:
    algorithm = Scaffold(num_clients=CLIENTS)
    server = FederatedServer(
        algorithm,
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=CLIENTS,
        rounds=4,
        sample_ratio=0.5,
        seed=5,
    )
    client = FederatedClient(algorithm, ModelZoo(), "mlp", data, batch_size=8, lr=0.1)
    return server, Simulation(server, client, executor=executor, seed=5)


def test_resume_is_bitwise_across_executors(
    data: SyntheticPartitionedDataset, tmp_path: Path
) -> None:
    """4 rounds straight equal 2 rounds, a checkpoint, and 2 more on processes."""
    straight, sim = _federation(data, ThreadExecutor(2))
    expected = sim.run_sync()

    _, sim = _federation(data, ThreadExecutor(2))
    sim.run_sync(rounds=2)
    save_checkpoint(tmp_path / "ckpt", sim.state_dict())

    resumed, sim = _federation(data, ProcessExecutor(2))
    sim.load_state_dict(load_checkpoint(tmp_path / "ckpt"))
    assert sim.round == 2
    rest = sim.run_sync()
    assert torch.equal(resumed.params, straight.params)
    assert torch.equal(resumed.state["c"], straight.state["c"])
    assert [r.metrics for r in rest] == [r.metrics for r in expected[2:]]
    assert [r.cids for r in rest] == [r.cids for r in expected[2:]]


def test_state_dict_holds_client_states(
    data: SyntheticPartitionedDataset,
) -> None:
    """The state carries each sampled client's RNG suite and algorithm state."""
    _, sim = _federation(data, ThreadExecutor(1))
    results = sim.run_sync(rounds=1)
    state = sim.state_dict()
    clients = state["clients"]["clients"]
    assert sorted(int(c) for c in clients) == sorted(results[0].cids)
    assert all("c" in entry["data"] for entry in clients.values())
    assert state["round"] == 1
    assert state["pending_cids"] is None


def test_checkpoint_from_another_seed_is_refused(
    data: SyntheticPartitionedDataset, tmp_path: Path
) -> None:
    """Client states derived from another run seed are not silently adopted."""
    _, sim = _federation(data, ThreadExecutor(1))
    sim.run_sync(rounds=1)
    state = sim.state_dict()
    state["clients"]["seed"] = 99
    _, other = _federation(data, ThreadExecutor(1))
    with pytest.raises(ConfigurationError, match=r"derive from seed 99"):
        other.load_state_dict(state)


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt"
    save_checkpoint(path, {"round": 3, "params": torch.arange(5.0)})
    return path


def test_round_trip(tmp_path: Path) -> None:
    """What was saved is what is loaded."""
    state = load_checkpoint(_write(tmp_path))
    assert state["round"] == 3
    assert torch.equal(state["params"], torch.arange(5.0))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_failed_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    """A write that fails (read-only folder) leaves the old checkpoint intact."""
    path = _write(tmp_path)
    before = path.read_bytes()
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"Permission denied"):
            save_checkpoint(path, {"round": 4})
    finally:
        tmp_path.chmod(0o700)
    assert path.read_bytes() == before


def test_failed_serialisation_keeps_previous_checkpoint(tmp_path: Path) -> None:
    """A state that cannot be written leaves the old checkpoint and no temp file."""
    path = _write(tmp_path)
    before = path.read_bytes()
    with pytest.raises(Exception, match=r"pickle|lambda|serial"):
        save_checkpoint(path, {"round": lambda: 4})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
