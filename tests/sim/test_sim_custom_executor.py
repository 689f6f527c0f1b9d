"""An executor written against blazefl.sim.abc alone (docs/writing-an-executor.md)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import torch

from blazefl.sim import InlineExecutor, Simulation
from blazefl.sim.abc import (
    ClientJob,
    Executor,
    JobOutcome,
    JobWork,
    Placement,
    RoundSession,
    execute_job,
)
from fakes import FedAvgHandler, ScriptedWork


# -- the example of docs/writing-an-executor.md, verbatim ----------------------
class OneThreadExecutor(Executor):
    """Runs every client, one at a time, on one worker thread of its own."""

    kind = "one-thread"
    placement = Placement.IN_PROCESS  # the work object itself is shared

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self._cache: dict[str, Any] = {}  # ctx.cache: kept for the whole run

    async def _start(self, work: JobWork) -> None:
        self._limiter = anyio.CapacityLimiter(1)

    async def _close(self) -> None:
        self._cache.clear()

    @asynccontextmanager
    async def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> AsyncIterator[RoundSession]:
        yield _OneThreadSession(self, work, payload)


class _OneThreadSession(RoundSession):
    def __init__(self, owner: OneThreadExecutor, work: JobWork, payload: Any) -> None:
        self._owner, self._work, self._payload = owner, work, payload

    async def run(self, job: ClientJob) -> JobOutcome:
        stop = threading.Event()

        def call() -> JobOutcome:
            return execute_job(
                self._work,
                job,
                self._payload,
                stop_event=stop,
                cache=self._owner._cache,
                worker="one-thread",
            )

        try:
            return await anyio.to_thread.run_sync(call, limiter=self._owner._limiter)
        except BaseException:
            stop.set()  # cancelled: ask the client to stop (a real executor waits)
            raise


# -----------------------------------------------------------------------------


def _final(executor: Executor) -> torch.Tensor:
    handler = FedAvgHandler()
    Simulation(handler, ScriptedWork(), executor=executor, seed=5).run_sync()
    return handler.params


def test_a_custom_executor_gives_bitwise_the_inline_result() -> None:
    """An executor built on blazefl.sim.abc alone keeps the determinism contract."""
    assert torch.equal(_final(OneThreadExecutor()), _final(InlineExecutor()))


def test_a_custom_executor_reports_its_kind() -> None:
    """Its kind and worker count appear in every round's description."""
    handler = FedAvgHandler(rounds=1)
    sim = Simulation(handler, ScriptedWork(), executor=OneThreadExecutor())
    (result,) = sim.run_sync()
    assert {c.worker for c in result.clients} == {"one-thread"}
    assert sim.executor.describe() == {"executor": "one-thread", "workers": 1}
