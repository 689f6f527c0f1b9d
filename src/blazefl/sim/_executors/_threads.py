"""The thread executor: clients on worker threads of this process."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread

from blazefl.sim._devices import DeviceSpec, WorkerDevice
from blazefl.sim._executors._base import Executor, Placement, RoundSession
from blazefl.sim._executors._thread_pump import Attempt, pump_round
from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork, execute_job
from blazefl.sim._payload import PayloadCopy

__all__ = ["ThreadExecutor"]

# How long a cancelled thread client gets to notice its stop flag before the
# executor stops waiting for it (the thread then finishes on its own; its
# result is discarded and its worker cache is never reused).
_STOP_GRACE_SECONDS = 5.0


class ThreadExecutor(Executor):
    """Runs up to ``max_workers`` clients at once on worker threads.

    Threads share the data set in memory, with no copies; each worker thread
    copies the round's payload once, the first time it runs a client of the
    round, so that no client can write into the handler's tensors. On a
    free-threaded CPython build (GIL off) they run Python code in parallel; on
    a GIL build they still overlap in torch's kernels, which release the GIL.
    Each worker keeps its own ``ctx.cache`` (e.g. a model) for the whole run.

    With ``devices``, worker ``i`` computes on ``devices[i % len(devices)]``;
    workers sharing a GPU each queue their kernels on a CUDA stream of their
    own (see docs/gpu.md).
    """

    kind = "threads"
    placement = Placement.IN_PROCESS

    def __init__(
        self,
        max_workers: int = 2,
        *,
        torch_threads: int = 1,
        devices: DeviceSpec = None,
    ) -> None:
        super().__init__(max_workers, torch_threads=torch_threads, devices=devices)
        self._caches: dict[int, dict[str, Any]] = {}
        self._places: dict[int, WorkerDevice] = {}
        # Each worker's latest copy of a payload, whose memory the next
        # round's copy reuses (see `PayloadCopy.renew`).
        self._payloads: dict[int, PayloadCopy] = {}
        self._idle: list[int] = []
        self._ids = itertools.count()

    async def _start(self, work: JobWork) -> None:
        self._idle = [next(self._ids) for _ in range(self.max_workers)]
        self._caches = {wid: {} for wid in self._idle}
        self._places = {
            wid: WorkerDevice(self.worker_device(i)) for i, wid in enumerate(self._idle)
        }

    async def _close(self) -> None:
        self._caches.clear()
        self._places.clear()
        self._payloads.clear()
        self._idle.clear()

    @asynccontextmanager
    async def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> AsyncIterator[RoundSession]:
        yield _ThreadSession(self, work, payload)

    def _copy_for(
        self, wid: int, payload: Any, copies: dict[int, PayloadCopy]
    ) -> PayloadCopy:
        """Worker ``wid``'s copy of the round's payload (``copies``: the
        round's, by worker), made in the memory of its copy before."""
        lent = copies.get(wid)
        if lent is None:
            old = self._payloads.get(wid)
            lent = old.renew(payload) if old is not None else PayloadCopy(payload)
            copies[wid] = self._payloads[wid] = lent
        return lent

    def _retire(self, wid: int) -> int:
        """Replace a worker whose thread may still be running after a cancel."""
        self._caches.pop(wid, None)
        self._payloads.pop(wid, None)  # its client may still hold the copy
        old = self._places.pop(wid, WorkerDevice())
        new = next(self._ids)
        self._caches[new] = {}
        self._places[new] = WorkerDevice(old.device)  # same device, new stream
        return new


class _ThreadSession(RoundSession):
    pulls = True

    def __init__(self, owner: ThreadExecutor, work: JobWork, payload: Any) -> None:
        self._owner = owner
        self._work = work
        self._payload = payload
        # Each worker's own copy of the payload, made on first use.
        self._copies: dict[int, PayloadCopy] = {}
        self._limiter = anyio.CapacityLimiter(owner.max_workers)
        self._idle = anyio.Semaphore(len(owner._idle))

    async def run_all(
        self,
        jobs: Sequence[ClientJob],
        done: Callable[[ClientJob, JobOutcome], None],
    ) -> None:
        await pump_round(
            self._owner,
            self._work,
            self._copies,
            self._payload,
            jobs,
            done,
            _STOP_GRACE_SECONDS,
        )

    async def run(self, job: ClientJob) -> JobOutcome:
        owner = self._owner
        async with self._idle:
            wid = owner._idle.pop(0)
            attempt = Attempt()
            cache = owner._caches[wid]
            place = owner._places[wid]
            lent = owner._copy_for(wid, self._payload, self._copies)
            label = f"thread-{wid}"

            def execute(placed: ClientJob) -> JobOutcome:
                return execute_job(
                    self._work,
                    placed,
                    lent,
                    stop_event=attempt.stop,
                    cache=cache,
                    worker=label,
                )

            def call() -> JobOutcome | None:
                if not attempt.begin():
                    return None  # cancelled before the thread picked it up
                try:
                    return place.run(job, execute, label)
                finally:
                    attempt.finish()

            try:
                outcome = await anyio.to_thread.run_sync(
                    call, limiter=self._limiter, abandon_on_cancel=True
                )
                assert outcome is not None  # only None once abandoned
                return outcome
            finally:
                if attempt.abandon():
                    # The thread is running the client: ask it to stop and
                    # give it a grace period before giving up on it.
                    with anyio.CancelScope(shield=True):
                        with anyio.move_on_after(_STOP_GRACE_SECONDS):
                            # `done` is set by the thread, off the loop;
                            # polling is the portable way to await it here.
                            while not attempt.done:  # noqa: ASYNC110
                                await anyio.sleep(0.005)
                    if not attempt.done:
                        wid = owner._retire(wid)
                owner._idle.append(wid)


_Attempt = Attempt  # the cohort executor's name for it
