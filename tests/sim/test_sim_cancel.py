"""Cancelling run_round(): clients stop, nothing is applied, nothing leaks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import torch
from sim_fakes import SEED, wait_for

from blazefl.sim import Executor, ProcessExecutor, Simulation, ThreadExecutor
from fakes import (
    FedAvgHandler,
    Misbehave,
    ScriptedWork,
    active_clients,
    quick_processes,
)
from leaks import pid_alive, shm_left, shm_mapped_by

pytestmark = pytest.mark.anyio


async def _cancel_mid_round(sim: Simulation[Any, Any], work: Misbehave) -> None:
    """Start a round whose clients block, wait until they run, cancel it."""
    index = sim.round
    work.arm("hang")
    async with anyio.create_task_group() as tg:
        tg.start_soon(sim.run_round)
        await wait_for(lambda: bool(work.started(index)))
        tg.cancel_scope.cancel()
    work.disarm("hang")


class _Snapshot:
    """The simulation and handler state a cancelled round must not touch."""

    def __init__(self, sim: Simulation[Any, Any], handler: FedAvgHandler) -> None:
        self.params = handler.params.clone()
        self.counts = (sim.round, handler.round, handler.load_calls)

    def assert_unchanged(
        self, sim: Simulation[Any, Any], handler: FedAvgHandler
    ) -> None:
        assert torch.equal(handler.params, self.params)
        assert (sim.round, handler.round, handler.load_calls) == self.counts


async def _disturbed_run(
    executor: Executor, control: Path, reference: dict[str, Any]
) -> None:
    handler = FedAvgHandler()
    work = Misbehave(ScriptedWork(), str(control))
    sim = Simulation(handler, work, executor=executor, seed=SEED)
    async with sim:
        await sim.run_round()
        snapshot = _Snapshot(sim, handler)
        await _cancel_mid_round(sim, work)
        snapshot.assert_unchanged(sim, handler)
        # Every client that started saw its stop flag and returned.
        assert work.started(1) == work.stopped(1)
        await sim.run()
    # The rerun sampled nothing new and used the clients' uncommitted RNG states.
    assert handler.sample_calls == 3
    assert torch.equal(handler.params, reference["params"])


async def test_cancelled_round_on_threads_changes_nothing(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    """A cancelled threaded round stops its clients and leaves no trace in the run."""
    await _disturbed_run(ThreadExecutor(2), tmp_path, reference)


async def test_cancelled_threaded_clients_are_not_left_running(
    tmp_path: Path,
) -> None:
    """When cancellation returns, no thread is still running client work."""
    handler = FedAvgHandler()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(handler, work, executor=ThreadExecutor(3))
    baseline = threading.active_count()
    async with sim:
        await _cancel_mid_round(sim, work)
        assert active_clients() == 0
    assert active_clients() == 0
    # Idle pool threads of the event loop may linger, but no more than one per
    # worker and the one that waited for their outcomes (`_thread_pump`): the
    # executor starts no threads of its own.
    assert threading.active_count() <= baseline + 3 + 1


@pytest.mark.anyio_backends("asyncio")
async def test_cancelled_round_on_processes_changes_nothing(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    """A cancelled round on spawned processes is undone; the workers survive it."""
    executor = ProcessExecutor(1)
    handler = FedAvgHandler()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(handler, work, executor=executor, seed=SEED)
    async with sim:
        await sim.run_round()
        pids = executor.pids
        snapshot = _Snapshot(sim, handler)
        await _cancel_mid_round(sim, work)
        snapshot.assert_unchanged(sim, handler)
        assert executor.pids == pids  # the client honoured its stop flag
        shm = shm_mapped_by(pids)
        await sim.run()
    assert torch.equal(handler.params, reference["params"])
    await wait_for(lambda: not any(pid_alive(p) for p in pids), 10)
    await wait_for(lambda: not shm_left(shm), 5)


async def test_cancelled_round_on_forkserver_processes_changes_nothing(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    """The same on forkserver workers, under asyncio and trio."""
    await _disturbed_run(quick_processes(2), tmp_path, reference)


async def test_cancel_kills_and_replaces_a_worker_that_ignores_its_stop_flag(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    """A process client stuck past stop_grace is killed; a new worker takes over."""
    executor = quick_processes(1, stop_grace=0.2)
    handler = FedAvgHandler()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(handler, work, executor=executor, seed=SEED)
    async with sim:
        await sim.run_round()
        (old,) = executor.pids
        shm = shm_mapped_by([old])
        snapshot = _Snapshot(sim, handler)
        work.arm("stuck")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sim.run_round)
            await wait_for(lambda: bool(work.started(1)))
            tg.cancel_scope.cancel()
        work.disarm("stuck")
        snapshot.assert_unchanged(sim, handler)
        (new,) = executor.pids
        assert new != old
        assert not pid_alive(old)
        shm |= shm_mapped_by([new])
        await sim.run()
    assert torch.equal(handler.params, reference["params"])
    await wait_for(lambda: not pid_alive(new), 10)
    await wait_for(lambda: not shm_left(shm), 5)


async def test_move_on_after_around_run_round_cancels_it(tmp_path: Path) -> None:
    """A cancel scope deadline around run_round cancels it cleanly (threads)."""
    handler = FedAvgHandler()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(handler, work, executor=ThreadExecutor(2))
    work.arm("hang")
    async with sim:
        with anyio.move_on_after(0.3) as scope:
            await sim.run_round()
        assert scope.cancelled_caught
        assert active_clients() == 0
        assert (sim.round, handler.load_calls) == (0, 0)
        work.disarm("hang")
        result = await sim.run_round()
    assert result.round == 0
    assert handler.round == 1


class _SlowDownlink(FedAvgHandler):
    """A handler whose downlink takes a while to build (a big model, say)."""

    def downlink_package(self) -> torch.Tensor:
        time.sleep(0.4)
        return super().downlink_package()


async def test_cancel_while_the_handler_samples_keeps_the_sample(
    reference: dict[str, Any],
) -> None:
    """A cancel during sample_clients/downlink_package loses nothing of the run."""
    handler = _SlowDownlink()
    sim = Simulation(handler, ScriptedWork(), executor=ThreadExecutor(2), seed=SEED)
    async with sim:
        with anyio.move_on_after(0.1) as scope:
            await sim.run_round()
        assert scope.cancelled_caught
        assert (sim.round, handler.load_calls) == (0, 0)
        await sim.run()
    assert handler.sample_calls == 3
    assert torch.equal(handler.params, reference["params"])
