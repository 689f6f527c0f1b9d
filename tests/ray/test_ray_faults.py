"""RayExecutor faults: a dying actor is a failed (or retried) slot and is
replaced; a stuck client is stopped by killing its actor; the run goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from blazefl.sim import RayExecutor, Simulation, ThreadExecutor

# "ray.exceptions", not "ray": without Ray installed, tests/ray itself would
# import as a namespace package named ray.
pytest.importorskip("ray.exceptions")

from ray_fakes import Probe, federation, final_params

from misbehave import Misbehave

pytestmark = [
    pytest.mark.usefixtures("ray_local"),
    pytest.mark.anyio,
    pytest.mark.anyio_backends("asyncio"),
]

# FedAvg with seed 0 samples (0, 3, 5), (2, 3, 4), (2, 3, 5).
ROUND1_CLIENT = 3


async def test_dead_actor_is_a_failed_slot_and_is_replaced(tmp_path: Path) -> None:
    """An actor killed mid-client fails that slot only; a new actor takes over."""
    server, client = federation()
    misbehave = Misbehave(client, str(tmp_path))
    marker = misbehave.arm("kill", cid=ROUND1_CLIENT, round=1, once=True)
    work = Probe(misbehave)
    sim = Simulation(
        server, work, executor=RayExecutor(2), seed=0, on_client_failure="drop"
    )
    async with sim:
        before = await sim.run_round()
        hit = await sim.run_round()
        after = await sim.run_round()
    assert not marker.exists(), "the client never ran its fatal round"
    assert before.failures == ()
    assert after.failures == ()
    (failed,) = hit.failures
    assert failed.cid == ROUND1_CLIENT
    assert failed.failure is not None
    assert failed.failure.kind == "worker_died"
    assert "died while running client 3" in failed.failure.message
    assert len(hit.clients) - len(hit.failures) == 2
    old = {c.metrics["pid"] for c in before.clients}
    new = {c.metrics["pid"] for c in after.clients}
    assert new - old, "no replacement actor served the next round"


def test_dead_actor_retried_on_replacement_is_bitwise_equal(tmp_path: Path) -> None:
    """With max_retries=1 the killed client reruns elsewhere, same final model."""
    expected, _ = final_params(ThreadExecutor(2))
    _server, client = federation()
    work = Misbehave(client, str(tmp_path))
    marker = work.arm("kill", cid=ROUND1_CLIENT, round=1, once=True)
    params, results = final_params(RayExecutor(2, max_retries=1), work=work)
    assert not marker.exists(), "no actor was killed"
    assert all(r.failures == () for r in results)
    assert torch.equal(params, expected)


async def test_stuck_client_times_out_and_its_actor_is_replaced(
    tmp_path: Path,
) -> None:
    """A client ignoring its stop flag is killed with its actor after the grace."""
    server, client = federation()
    work = Misbehave(client, str(tmp_path))
    work.arm("stuck", cid=0)  # sampled in round 0
    executor = RayExecutor(2, stop_grace=0.5)
    sim = Simulation(
        server,
        work,
        executor=executor,
        seed=0,
        client_timeout=5.0,
        on_client_failure="drop",
    )
    async with sim:
        stuck = await sim.run_round()
        work.disarm("stuck", cid=0)
        rest = await sim.run()
    (failed,) = stuck.failures
    assert failed.cid == 0
    assert failed.failure is not None
    assert failed.failure.kind == "timeout"
    assert [len(r.failures) for r in rest] == [0, 0]
    assert len(rest) == 2
