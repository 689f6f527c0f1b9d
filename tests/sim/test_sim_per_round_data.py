"""Process workers see a data set that changes between rounds, as threads do."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from per_round_fakes import PICKLED, CurriculumData, DeclaredStatic, Undeclared

from blazefl._versions import STATIC, version_of
from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import InlineExecutor, Simulation, ThreadExecutor
from fakes import quick_processes

EXECUTORS = {
    "inline": InlineExecutor,
    "threads": lambda: ThreadExecutor(2),
    "processes": lambda: quick_processes(2),
}
ROUNDS = 3


def _federation(data: Any) -> tuple[FederatedServer, FederatedClient]:
    server = FederatedServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=4,
        rounds=ROUNDS,
        sample_ratio=1.0,
        seed=0,
    )
    client = FederatedClient(FedAvg(), ModelZoo(), "mlp", data, batch_size=4, lr=0.1)
    return server, client


def _data(cls: type[SyntheticPartitionedDataset]) -> Any:
    return cls(4, seed=1, samples_per_client=16, test_samples=40)


def _run(data: Any, executor: str, between: Any) -> torch.Tensor:
    """Run ROUNDS rounds, calling ``between(data, r)`` before each round r."""
    server, client = _federation(data)

    async def main() -> None:
        async with Simulation(
            server, client, executor=EXECUTORS[executor](), evaluate_every=0
        ) as sim:
            for r in range(ROUNDS):
                between(data, r)
                await sim.run_round()

    import anyio

    anyio.run(main)
    return server.params


def _raise_stage(data: CurriculumData, r: int) -> None:
    data.stage = r + 1


def _override_client_0(data: SyntheticPartitionedDataset, r: int) -> None:
    if r == 1:  # from round 1 on, client 0 trains on client 1's data
        data.set_dataset("train", 0, data.get_dataset("train", 1))


@pytest.mark.parametrize(
    ("cls", "between"),
    [(CurriculumData, _raise_stage), (SyntheticPartitionedDataset, _override_client_0)],
    ids=["user-curriculum", "set_dataset"],
)
def test_per_round_data_gives_the_same_model_on_every_executor(
    cls: type[SyntheticPartitionedDataset], between: Any
) -> None:
    """A data set changed between rounds trains the same on processes as inline."""
    models = {kind: _run(_data(cls), kind, between) for kind in EXECUTORS}
    assert torch.equal(models["inline"], models["threads"])
    assert torch.equal(models["inline"], models["processes"])
    unchanged = _run(_data(cls), "inline", lambda d, r: None)
    assert not torch.equal(models["inline"], unchanged)  # the change mattered


def test_static_work_is_sent_to_process_workers_once() -> None:
    """A data set that declares a fixed version goes to each worker once."""
    PICKLED.clear()
    _run(_data(DeclaredStatic), "processes", lambda d, r: None)
    assert PICKLED["DeclaredStatic"] == 2  # one pickle per worker, at start


def test_undeclared_work_is_sent_again_every_round() -> None:
    """Work that declares no version is sent again in every round, as BlazeFL."""
    PICKLED.clear()
    _run(_data(Undeclared), "processes", lambda d, r: None)
    assert PICKLED["Undeclared"] == 2 * (1 + ROUNDS)  # 2 workers: start + rounds


def test_versions_of_the_built_ins() -> None:
    """Built-in data sets change only through set_dataset; functions never."""
    data = _data(SyntheticPartitionedDataset)
    before = version_of(data)
    assert version_of(data) == before
    data.set_dataset("train", 0, data.get_dataset("train", 1))
    assert version_of(data) != before
    assert version_of(len) == STATIC
    assert version_of(_run) == STATIC
    curriculum = _data(CurriculumData)  # a subclass outside blazefl: per round
    assert version_of(curriculum) != version_of(curriculum)
