"""The cohort executor: chunks of a round's clients trained as one batched step.

Per-client executors pay Python and dispatch overhead per client and per
step; for hundreds of small clients that overhead, not the arithmetic, is the
round. `CohortExecutor` cuts the round's sampled clients into chunks of
``max_cohort`` in slot order and hands each chunk to the work's *cohort
trainer* (`CohortTrainer`: `blazefl.algorithms.FederatedClient.as_cohort`),
which trains the whole chunk as one batched computation. ``workers`` chunks
train at once, each on its own worker thread of this process.

The executor knows nothing about models or algorithms: client work opts in by
providing ``as_cohort()``, which returns a trainer or raises
`ConfigurationError` saying why it cannot be batched (checked when the
`Simulation` is built, through `Executor.refuse_work`). Everything around the
batch is the same as on every executor: one `JobOutcome` per client, a client
that raises fails its own slot (the trainer reports per-client errors; if the
batched computation itself fails, the chunk's clients run again one at a
time through `execute_job`, so each gets its own outcome), and the engine's
uplink check and NaN/inf scan fail a client's slot, not the chunk.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.to_thread
import structlog

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int
from blazefl.sim._context import ClientState, StopFlag
from blazefl.sim._devices import DeviceSpec, WorkerDevice
from blazefl.sim._executors._base import Executor, Placement, RoundSession
from blazefl.sim._executors._threads import _STOP_GRACE_SECONDS, _Attempt
from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork, error_info, execute_job

__all__ = ["CohortExecutor", "CohortMember", "CohortResult", "CohortTrainer"]

_PER_CLIENT = (
    "InlineExecutor, ThreadExecutor, ProcessExecutor or RayExecutor; "
    "blazefl run --executor inline, threads, processes or ray"
)
_log = structlog.get_logger("blazefl.cohort")


@dataclass(frozen=True, slots=True)
class CohortMember:
    """One client of a chunk: its job and a private copy of its state."""

    job: ClientJob
    state: ClientState


@dataclass(slots=True)
class CohortResult:
    """What a cohort trainer returns for one member: a result or an error.

    ``state`` is the client's new state (RNG suite position and data), as
    `execute_job` would capture it; ``metrics`` are its reported numbers.
    """

    result: Any = None
    error: BaseException | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    state: ClientState | None = None


class CohortTrainer(Protocol):
    """What ``work.as_cohort()`` returns: trains a chunk of clients at once."""

    def cohort_size(self) -> int:
        """The chunk size to use when the user sets none (fits memory)."""
        ...

    # Optional: ``chunk_invariant`` (a bool attribute), True when how a round
    # is cut into chunks cannot change any client's result. Only then may an
    # automatic ``max_cohort`` cut a round into more, smaller chunks to keep
    # every worker busy; without it the cut depends on the size alone.

    def train(
        self,
        members: Sequence[CohortMember],
        payload: Any,
        *,
        stop_event: StopFlag,
        cache: dict[str, Any],
    ) -> list[CohortResult]:
        """Train ``members``; one `CohortResult` each, in the same order."""
        ...


def _trainer_of(work: JobWork) -> CohortTrainer | str:
    """The work's cohort trainer, or why there is none."""
    user = getattr(work, "work", work)  # native work arrives wrapped
    as_cohort = getattr(user, "as_cohort", None)
    if not callable(as_cohort):
        name = getattr(user, "__qualname__", type(user).__qualname__)
        return (
            f"{name} cannot run on CohortExecutor: cohort execution batches "
            "client work that provides as_cohort() (blazefl.algorithms."
            f"FederatedClient); run it on {_PER_CLIENT}"
        )
    try:
        return as_cohort()  # type: ignore[no-any-return]
    except ConfigurationError as exc:
        return str(exc)


class CohortExecutor(Executor):
    """Trains chunks of up to ``max_cohort`` clients as one batched computation.

    Choose it for many small clients of one architecture per round (cross-
    device FL): a round costs about what one client's steps cost, times the
    number of chunks. ``workers`` is the number of chunks trained at once,
    each on its own thread. ``max_cohort=None`` picks a size from the model
    and batch size (`max_cohort` tells it once the simulation is built).

    :param workers: chunks trained at the same time (worker threads).
    :param max_cohort: clients per chunk; None: automatic (a cap, see
        `chunk_sizes`: on CPU a round may be cut into one chunk per worker).
    :param devices: worker ``i`` trains its chunks on
        ``devices[i % len(devices)]`` (the stacked parameters live there), on
        a CUDA stream of its own; see `Executor`.
    """

    kind = "cohort"
    placement = Placement.IN_PROCESS

    def __init__(
        self,
        workers: int = 1,
        *,
        max_cohort: int | None = None,
        torch_threads: int = 1,
        devices: DeviceSpec = None,
    ) -> None:
        super().__init__(workers, torch_threads=torch_threads, devices=devices)
        self._workers = self._max_workers
        self._requested = (
            None if max_cohort is None else check_int("max_cohort", max_cohort)
        )
        self._size: int | None = self._requested
        # The work last vetted by refuse_work and its trainer (by identity).
        self._vetted: tuple[JobWork, CohortTrainer] | None = None
        self._trainer: CohortTrainer | None = None
        self._caches: dict[int, dict[str, Any]] = {}
        self._places: dict[int, WorkerDevice] = {}
        self._idle: list[int] = []
        self._ids = itertools.count()

    @property
    def workers(self) -> int:
        """How many chunks train at the same time."""
        return self._workers

    @property
    def max_cohort(self) -> int | None:
        """Clients per chunk: as given, or the automatic choice once known."""
        return self._size

    @property
    def max_workers(self) -> int:
        # The engine admits this many clients at once: whole chunks for
        # every worker, so a chunk never waits for a client held back.
        return self._workers * (self._size or 1)

    def describe(self) -> dict[str, Any]:
        fields = {**super().describe(), "workers": self._workers}
        fields["max_cohort"] = self._size
        return fields

    def refuse_work(self, work: JobWork) -> str | None:
        if self._vetted is not None and self._vetted[0] is work:
            return None
        trainer = _trainer_of(work)
        if isinstance(trainer, str):
            return trainer
        self._vetted = (work, trainer)
        if self._requested is None:
            self._size = check_int("automatic max_cohort", trainer.cohort_size())
        return None

    async def _start(self, work: JobWork) -> None:
        reason = self.refuse_work(work)
        if reason is not None:
            raise ConfigurationError(reason)
        assert self._vetted is not None
        self._trainer = self._vetted[1]
        self._idle = [next(self._ids) for _ in range(self._workers)]
        self._caches = {wid: {} for wid in self._idle}
        self._places = {
            wid: WorkerDevice(self.worker_device(i)) for i, wid in enumerate(self._idle)
        }

    async def _close(self) -> None:
        self._trainer = None
        self._caches.clear()
        self._places.clear()
        self._idle.clear()

    @asynccontextmanager
    async def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> AsyncIterator[RoundSession]:
        async with anyio.create_task_group() as tg:
            yield _CohortSession(self, work, payload, tg)

    def _train_chunk(
        self,
        work: JobWork,
        jobs: Sequence[ClientJob],
        payload: Any,
        stop: StopFlag,
        wid: int,
    ) -> dict[int, JobOutcome]:
        """On a worker thread: the chunk's outcomes by slot."""
        assert self._trainer is not None
        cache = self._caches.setdefault(wid, {})
        place = self._places.setdefault(wid, WorkerDevice())
        worker = f"cohort-{wid}"
        jobs = [place.place(job) for job in jobs]
        members = [CohortMember(job, job.state.copy()) for job in jobs]
        start = time.perf_counter()
        try:
            with place.computing(jobs[0].device):
                results = self._trainer.train(
                    members, payload, stop_event=stop, cache=cache
                )
        except Exception as exc:
            # The batch failed as a whole (out of memory, a kernel error):
            # run its clients one at a time so each gets its own outcome.
            _log.warning(
                "cohort_chunk_failed",
                error=f"{type(exc).__name__}: {exc}",
                clients=len(jobs),
                fallback="one client at a time",
            )
            execute = functools.partial(
                execute_job,
                work,
                payload=payload,
                stop_event=stop,
                cache=cache,
                worker=worker,
            )
            return {job.slot: place.run(job, execute, worker) for job in jobs}
        seconds = time.perf_counter() - start
        outcomes = {}
        for job, res in zip(jobs, results, strict=True):
            outcome = JobOutcome(
                slot=job.slot,
                cid=job.cid,
                worker=worker,
                seconds=seconds,
                metrics=dict(res.metrics),
            )
            if res.error is not None:
                outcome.error = error_info(res.error)
            else:
                outcome.result, outcome.state = res.result, res.state
            outcomes[job.slot] = outcome
        return outcomes

    def chunk_sizes(self, jobs: Sequence[ClientJob]) -> list[int]:
        """How a round's ``jobs`` (slot order) are cut into consecutive chunks.

        A ``max_cohort`` the user gave cuts chunks of exactly that size. The
        automatic one is a cap: when the trainer is chunk-invariant and the
        chunks train on CPU, the round is cut into at least one chunk per
        worker, of balanced sizes (200 clients on 2 workers: two of 100, not
        one of 200 and an idle worker); any cut gives the same bits then, so
        1 and 2 workers still end on the same model.
        """
        n, size = len(jobs), self._size or 1
        if n == 0:
            return []
        devices = self.devices or tuple({job.device for job in jobs})
        if (
            self._requested is None
            and getattr(self._trainer, "chunk_invariant", False)
            and all(d == "cpu" or d.startswith("cpu:") for d in devices)
        ):
            chunks = max(-(-n // size), min(self._workers, n))
            base, extra = divmod(n, chunks)
            return [base + 1] * extra + [base] * (chunks - extra)
        return [size] * (n // size) + ([n % size] if n % size else [])

    def _retire(self, wid: int) -> int:
        self._caches.pop(wid, None)
        old = self._places.pop(wid, WorkerDevice())
        new = next(self._ids)
        self._caches[new] = {}
        self._places[new] = WorkerDevice(old.device)  # same device, new stream
        return new


class _Chunk:
    """Consecutive slots trained together; its waiters share one result."""

    def __init__(self, jobs: list[ClientJob]) -> None:
        self.jobs = jobs
        self.arrived: list[ClientJob] = []
        self.waiting = 0
        self.done = anyio.Event()
        self.attempt = _Attempt()
        self.outcomes: dict[int, JobOutcome] = {}


class _CohortSession(RoundSession):
    def __init__(
        self,
        owner: CohortExecutor,
        work: JobWork,
        payload: Any,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        self._owner = owner
        self._work = work
        self._payload = payload
        self._tg = tg
        self._by_slot: dict[int, _Chunk] = {}
        self._slots = anyio.Semaphore(owner.workers)
        self._limiter = anyio.CapacityLimiter(owner.workers)

    def expect(self, jobs: Sequence[ClientJob]) -> None:
        start = 0
        for size in self._owner.chunk_sizes(jobs):
            chunk = _Chunk(list(jobs[start : start + size]))
            start += size
            for job in chunk.jobs:
                self._by_slot[job.slot] = chunk

    async def run(self, job: ClientJob) -> JobOutcome:
        chunk = self._by_slot.get(job.slot)
        if chunk is None:  # no expect(): a chunk of one
            chunk = self._by_slot[job.slot] = _Chunk([job])
        chunk.arrived.append(job)
        chunk.waiting += 1
        if len(chunk.arrived) == len(chunk.jobs):
            self._tg.start_soon(self._train, chunk)
        try:
            await chunk.done.wait()
        finally:
            chunk.waiting -= 1
            if not chunk.done.is_set() and chunk.waiting == 0:
                chunk.attempt.stop.set()  # nobody waits for this chunk any more
        return chunk.outcomes[job.slot]

    async def _train(self, chunk: _Chunk) -> None:
        owner = self._owner
        attempt = chunk.attempt
        async with self._slots:
            wid = owner._idle.pop(0)

            def call() -> dict[int, JobOutcome] | None:
                if not attempt.begin():
                    return None
                try:
                    return owner._train_chunk(
                        self._work, chunk.jobs, self._payload, attempt.stop, wid
                    )
                finally:
                    attempt.finish()

            try:
                outcomes = await anyio.to_thread.run_sync(
                    call, limiter=self._limiter, abandon_on_cancel=True
                )
                assert outcomes is not None  # only None once abandoned
                chunk.outcomes = outcomes
            except Exception as exc:
                # Never leave the chunk's waiters hanging: each slot fails.
                failure = error_info(exc)
                chunk.outcomes = {
                    job.slot: JobOutcome(job.slot, job.cid, "", 0.0, error=failure)
                    for job in chunk.jobs
                }
            finally:
                if chunk.outcomes:
                    chunk.done.set()
                if attempt.abandon():
                    with anyio.CancelScope(shield=True):
                        with anyio.move_on_after(_STOP_GRACE_SECONDS):
                            while not attempt.done:  # noqa: ASYNC110
                                await anyio.sleep(0.005)
                    if not attempt.done:
                        wid = owner._retire(wid)
                owner._idle.append(wid)
