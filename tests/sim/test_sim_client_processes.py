"""Processes a client starts itself end with its process worker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sim_fakes import wait_for

from blazefl import RoundFailedError
from blazefl.sim import ClientContext, Simulation
from fakes import FedAvgHandler, ScriptedWork, quick_processes
from leaks import pid_alive

pytestmark = pytest.mark.anyio


class Spawning:
    """Trains as `ScriptedWork`, after starting a ``sleep`` it leaves behind;
    with ``detach`` the sleep leaves the worker's process group."""

    def __init__(self, control: str, detach: bool = False) -> None:
        self.work = ScriptedWork()
        self.control = control
        self.detach = detach

    def __call__(self, ctx: ClientContext, payload: Any) -> Any:
        child = subprocess.Popen(["sleep", "60"], start_new_session=self.detach)
        Path(self.control, f"{ctx.round}-{ctx.cid}").write_text(str(child.pid))
        return self.work(ctx, payload)


def _started(control: Path) -> list[int]:
    return [int(p.read_text()) for p in control.iterdir()]


async def test_a_clients_own_processes_end_when_the_executor_closes(
    tmp_path: Path,
) -> None:
    """Each worker leads a process group; closing the executor ends its rest."""
    handler = FedAvgHandler(num_clients=2, per_round=2, rounds=1)
    sim = Simulation(handler, Spawning(str(tmp_path)), executor=quick_processes(2))
    async with sim:
        await sim.run()
        started = _started(tmp_path)
        assert len(started) == 2
        assert all(pid_alive(pid) for pid in started)
    await wait_for(lambda: not any(pid_alive(pid) for pid in started), within=5)


async def test_a_stuck_workers_processes_are_killed_with_it(tmp_path: Path) -> None:
    """A worker killed past its stop grace takes its group along."""
    handler = FedAvgHandler(num_clients=1, per_round=1, rounds=1)
    sim = Simulation(
        handler,
        _Stuck(str(tmp_path)),
        executor=quick_processes(1, stop_grace=0.1),
        client_timeout=2.0,
    )
    async with sim:
        with pytest.raises(RoundFailedError, match="ClientTimeoutError"):
            await sim.run_round()
        started = _started(tmp_path)
        assert len(started) == 1
        await wait_for(lambda: not pid_alive(started[0]), within=5)


async def test_a_detached_process_is_left_alone(tmp_path: Path) -> None:
    """What leaves the worker's group (its own session) is not blazefl's to end."""
    handler = FedAvgHandler(num_clients=1, per_round=1, rounds=1)
    work = Spawning(str(tmp_path), detach=True)
    sim = Simulation(handler, work, executor=quick_processes(1))
    async with sim:
        await sim.run()
    (pid,) = _started(tmp_path)
    try:
        assert pid_alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


class _Stuck(Spawning):
    """Starts a sleep, then ignores its stop flag until killed."""

    def __call__(self, ctx: ClientContext, payload: Any) -> Any:
        child = subprocess.Popen(["sleep", "60"])
        Path(self.control, f"{ctx.round}-{ctx.cid}").write_text(str(child.pid))
        time.sleep(60)
        raise AssertionError("a stuck worker was never killed")
