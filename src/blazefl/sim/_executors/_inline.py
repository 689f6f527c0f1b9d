"""The inline executor: clients one after another on the event loop's thread."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel

from blazefl.sim._devices import DeviceSpec, WorkerDevice
from blazefl.sim._executors._base import Executor, Placement, RoundSession
from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork, execute_job
from blazefl.sim._payload import PayloadCopy

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Runs clients one after another on the event loop's own thread.

    For debugging: breakpoints, profilers and tracebacks see plain sequential
    code. It blocks the event loop while a client trains, and a timeout or
    cancellation takes effect only between clients. Use `ThreadExecutor` in
    anything that must stay responsive.
    """

    kind = "inline"
    placement = Placement.IN_PROCESS

    def __init__(self, *, torch_threads: int = 1, devices: DeviceSpec = None) -> None:
        super().__init__(1, torch_threads=torch_threads, devices=devices)
        self._cache: dict[str, Any] = {}
        self._place = WorkerDevice(self.worker_device(0))
        self._payload = PayloadCopy(None)

    async def _start(self, work: JobWork) -> None:
        pass

    async def _close(self) -> None:
        self._cache.clear()
        self._payload = PayloadCopy(None)

    @asynccontextmanager
    async def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> AsyncIterator[RoundSession]:
        # One worker: one copy per round, in the last round's memory.
        self._payload = self._payload.renew(payload)
        yield _InlineSession(work, self._payload, self._cache, self._place)


class _InlineSession(RoundSession):
    def __init__(
        self,
        work: JobWork,
        payload: PayloadCopy,
        cache: dict[str, Any],
        place: WorkerDevice,
    ) -> None:
        self._work = work
        self._payload = payload
        self._cache = cache
        self._place = place
        self._lock = anyio.Lock()

    async def run(self, job: ClientJob) -> JobOutcome:
        def execute(placed: ClientJob) -> JobOutcome:
            return execute_job(
                self._work,
                placed,
                self._payload,
                stop_event=threading.Event(),
                cache=self._cache,
                worker="inline",
            )

        async with self._lock:
            await anyio.lowlevel.checkpoint()
            return self._place.run(job, execute, "inline")
