"""ProcessExecutor: persistent workers, a shared payload, and dying workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from sim_fakes import SEED, RecordingHandler, aliased_uplink, drain, wait_for

from blazefl import RoundFailedError
from blazefl.sim import ClientFailed, ClientFailure, Simulation, ThreadExecutor
from fakes import FedAvgHandler, Misbehave, ScriptedWork, quick_processes
from leaks import pid_alive

pytestmark = [pytest.mark.anyio, pytest.mark.anyio_backends("asyncio")]


async def test_workers_keep_their_pids_across_rounds() -> None:
    """The same worker processes serve every round; no worker is respawned."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=3)
    executor = quick_processes(1)
    sim = Simulation(handler, ScriptedWork(record=True), executor=executor)
    async with sim:
        before = executor.pids
        results = await sim.run()
        after = executor.pids
    assert len(before) == 1
    assert after == before
    reported = {c.metrics["pid"] for r in results for c in r.clients}
    assert reported == set(before)
    assert {c.worker for r in results for c in r.clients} == {"process-0"}


async def test_payload_is_mapped_and_copied_once_per_worker_and_round() -> None:
    """Clients on one worker in one round get the very same payload object: the
    worker's own copy of the shared mapping, never the shared memory itself."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=2)
    sim = Simulation(handler, ScriptedWork(record=True), executor=quick_processes(1))
    async with sim:
        results = await sim.run()
    for result in results:
        assert all(c.metrics["payload_shared"] == 0.0 for c in result.clients)
        ids = {c.metrics["payload_id"] for c in result.clients}
        assert len(ids) == 1, "the payload was unpickled again for a client"


async def test_dead_worker_is_a_failed_slot_and_is_replaced(tmp_path: Path) -> None:
    """A worker exiting mid-client fails that slot only; a fresh one replaces it."""
    handler = FedAvgHandler(num_clients=4, per_round=4, rounds=3)
    executor = quick_processes(2)
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(
        handler, work, executor=executor, on_client_failure="drop", min_clients=1
    )
    async with sim:
        stream = sim.events()
        await sim.run_round()
        before = executor.pids
        work.arm("exit", cid=2, once=True)
        hit = await sim.run_round()
        after = executor.pids
        last = await sim.run_round()
    events = await drain(stream)

    (failed,) = hit.failures
    assert failed.cid == 2
    assert failed.failure is not None
    assert failed.failure.kind == "worker_died"
    assert failed.failure.type == "WorkerDiedError"
    assert "code 3" in failed.failure.message
    assert sum(c.ok for c in hit.clients) == 3
    assert handler.round == 3
    assert last.failures == ()

    assert len(after) == 2
    (dead,) = set(before) - set(after)
    (fresh,) = set(after) - set(before)
    assert not pid_alive(dead)
    assert fresh not in before
    (died_event,) = [e for e in events if isinstance(e, ClientFailed)]
    assert (died_event.round, died_event.cid, died_event.kind) == (1, 2, "worker_died")
    await wait_for(lambda: not any(pid_alive(p) for p in before + after), 10)


async def test_dead_worker_fails_the_round_then_the_rerun_succeeds(
    tmp_path: Path,
) -> None:
    """Under fail_round a worker death aborts the round unapplied; the rerun works."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    start = handler.params.clone()
    executor = quick_processes(1)
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(handler, work, executor=executor)
    async with sim:
        work.arm("exit", cid=1, once=True)
        with pytest.raises(
            RoundFailedError, match=r"client 1: WorkerDiedError"
        ) as info:
            await sim.run_round()
        assert torch.equal(handler.params, start)
        assert (sim.round, handler.load_calls) == (0, 0)
        (failure,) = info.value.failures
        assert isinstance(failure, ClientFailure)
        assert failure.kind == "worker_died"
        result = await sim.run_round()
        assert len(executor.pids) == 1
    assert result.round == 0
    assert result.failures == ()
    assert handler.round == 1
    assert handler.sample_calls == 1


async def test_worker_killed_between_rounds_is_replaced_before_the_next(
    reference: dict[str, Any],
) -> None:
    """A worker killed while idle is replaced; the next round runs in full, exactly."""
    handler = FedAvgHandler()
    executor = quick_processes(2)
    sim = Simulation(handler, ScriptedWork(), executor=executor, seed=SEED)
    async with sim:
        await sim.run_round()
        victim = executor.pids[0]
        os.kill(victim, signal.SIGKILL)
        # Until the forkserver reports the exit, is_alive() cannot know it; a
        # death that races with the next job is a worker_died failure instead.
        await wait_for(
            lambda: victim not in {p.pid for p in multiprocessing.active_children()},
            10,
        )
        results = await sim.run()
        assert victim not in executor.pids
        assert len(executor.pids) == 2
    assert all(r.failures == () for r in results)
    assert torch.equal(handler.params, reference["params"])


@pytest.mark.parametrize("kind", ["threads", "processes"])
async def test_uplink_tensor_aliasing_survives_the_trip(kind: str) -> None:
    """One tensor under two keys of an uplink arrives as one tensor, every round."""
    handler = RecordingHandler(rounds=2)
    executor = ThreadExecutor(1) if kind == "threads" else quick_processes(1)
    sim = Simulation(handler, aliased_uplink, executor=executor)
    async with sim:
        await sim.run()
    assert len(handler.received) == 6
    for package in handler.received:
        assert torch.equal(package["encoder"], package["decoder"])
        assert package["encoder"].data_ptr() == package["decoder"].data_ptr()


def test_client_state_crosses_processes_by_value() -> None:
    """State tensors pickle as bytes (no shared-memory segment, no fd): dtype,
    shape, values and aliasing survive, and nothing is shared afterwards."""
    from multiprocessing.reduction import ForkingPickler

    from blazefl.reproducibility import create_rng_suite
    from blazefl.sim import ClientState

    a = torch.randn(3, 4)
    data = {
        "a": a,
        "alias": [a],
        "half": torch.tensor([1.5], dtype=torch.bfloat16),
        "empty": torch.empty(0, 2),
        "step": 3,
    }
    state = ClientState(create_rng_suite(1).get_state(), data)
    back = ForkingPickler.loads(bytes(ForkingPickler.dumps(state)))
    assert back.rng == state.rng
    assert torch.equal(back.data["a"], a)
    assert back.data["alias"][0] is back.data["a"]
    assert back.data["half"].dtype == torch.bfloat16
    assert back.data["empty"].shape == (0, 2)
    assert back.data["step"] == 3
    assert not back.data["a"].is_shared()
    back.data["a"].add_(1)
    assert not torch.equal(back.data["a"], a)
