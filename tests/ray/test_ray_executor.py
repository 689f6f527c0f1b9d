"""RayExecutor on one machine: bitwise equal to threads, the payload shared
once per round, as many actors as the cluster fits, and clear errors."""

from __future__ import annotations

import sys
from collections import defaultdict

import pytest
import torch

from blazefl import ConfigurationError, MissingDependencyError
from blazefl.algorithms import FedAvg, Scaffold
from blazefl.sim import RayExecutor, Simulation, ThreadExecutor

# "ray.exceptions", not "ray": without Ray installed, tests/ray itself would
# import as a namespace package named ray.
pytest.importorskip("ray.exceptions")

from ray_fakes import NUM_CLIENTS, Probe, federation, final_params

pytestmark = [
    pytest.mark.usefixtures("ray_local"),
    pytest.mark.anyio,
    pytest.mark.anyio_backends("asyncio"),
]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fedavg_bitwise_equal_to_threads(backend: str) -> None:
    """FedAvg on Ray actors ends on exactly the thread executor's parameters."""
    expected, _ = final_params(ThreadExecutor(2), FedAvg())
    server, client = federation(FedAvg())
    results = Simulation(server, client, executor=RayExecutor(2), seed=0).run_sync(
        backend=backend
    )
    assert all(c.worker.startswith("ray-") for r in results for c in r.clients)
    assert torch.equal(server.params, expected)


def test_scaffold_bitwise_equal_to_threads() -> None:
    """SCAFFOLD's client state travels with the job: same parameters and c."""
    server_t, client_t = federation(Scaffold(num_clients=NUM_CLIENTS))
    Simulation(server_t, client_t, executor=ThreadExecutor(2), seed=0).run_sync()
    server_r, client_r = federation(Scaffold(num_clients=NUM_CLIENTS))
    results = Simulation(server_r, client_r, executor=RayExecutor(2), seed=0).run_sync()
    sampled = [cid for r in results for cid in r.cids]
    assert len(set(sampled)) < len(sampled), "no client's state was read back"
    assert torch.count_nonzero(server_r.state["c"]) > 0
    assert torch.equal(server_r.params, server_t.params)
    assert torch.equal(server_r.state["c"], server_t.state["c"])


def test_payload_resolved_once_per_round_and_actor() -> None:
    """Clients of one round on one actor read the very same payload object."""
    _, client = federation()
    _, results = final_params(RayExecutor(1), work=Probe(client))
    for result in results:
        ids = defaultdict(set)
        for report in result.clients:
            ids[report.worker].add(report.metrics["payload_id"])
        assert all(len(seen) == 1 for seen in ids.values()), ids
    pids = {c.metrics["pid"] for r in results for c in r.clients}
    assert len(pids) == 1, "the actor was not kept across rounds"


async def test_actor_count_follows_cluster_resources() -> None:
    """Without max_workers, the 2-CPU instance fits one actor of 2 CPUs.

    (One CPU per client fitting one actor per node: see the two-node test.)
    """
    _, client = federation()
    executor = RayExecutor(cpus_per_client=2)
    await executor.start(client)
    try:
        assert executor.max_workers == 1
        assert executor.describe() == {
            "executor": "ray",
            "workers": 1,
            "address": "local",
        }
    finally:
        await executor.aclose()
    assert not executor.running


async def test_more_workers_than_the_cluster_fits_fails_at_start() -> None:
    """max_workers beyond the cluster's CPUs is a ConfigurationError, not a hang."""
    _, client = federation()
    executor = RayExecutor(3, cpus_per_client=1)
    with pytest.raises(ConfigurationError, match=r"fits 2 clients .* max_workers=3"):
        await executor.start(client)
    assert not executor.running


async def test_unpicklable_work_fails_at_start() -> None:
    """Work Ray cannot serialize is refused with the reason."""
    lock = __import__("threading").Lock()

    def work(ctx: object, payload: object) -> object:
        return lock

    executor = RayExecutor(1)
    with pytest.raises(ConfigurationError, match=r"cannot be serialized for Ray"):
        await executor.start(lambda ctx, payload, arg: work(ctx, payload))  # type: ignore[arg-type]


def test_bad_resources_fail_at_construction() -> None:
    """Resource settings are checked when the executor is built."""
    with pytest.raises(ConfigurationError, match=r"cpus_per_client"):
        RayExecutor(cpus_per_client=-1)
    with pytest.raises(ConfigurationError, match=r"use cpus_per_client"):
        RayExecutor(resources_per_client={"CPU": 1})
    with pytest.raises(ConfigurationError, match=r"set max_workers"):
        RayExecutor(cpus_per_client=0)


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray, constructing the executor says which extra to install."""
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"blazefl\[ray\]") as info:
        RayExecutor()
    assert info.value.extra == "ray"
