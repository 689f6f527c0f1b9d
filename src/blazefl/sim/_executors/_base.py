"""The one interface every executor presents to the coordinator.

The coordinator never asks which executor it has: it starts it with the run's
work, opens one *round session* per round with that round's payload, and awaits
``session.run(job)`` once per sampled client. An executor

- keeps its workers (threads or processes) for the whole run;
- shares the round's payload with its workers once per round;
- turns client failures into data (`JobOutcome.error`), never exceptions;
- when a ``run`` is cancelled, stops that client (stop flag, then terminate
  where it can) before the cancellation propagates.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from enum import IntEnum
from typing import Any, ClassVar

from blazefl._exceptions import ConfigurationError, ExecutorClosedError
from blazefl._validate import check_int
from blazefl.reproducibility import set_torch_threads
from blazefl.sim._devices import (
    DeviceSpec,
    device_for,
    enable_cuda_determinism,
    is_cuda,
    parse_devices,
)
from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork

__all__ = ["Executor", "Placement", "RoundSession"]


class _ThreadPin:
    """torch's intra-op thread count is process-wide: several simulations in one
    process (a service) share one pin, restored when the last one closes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._count = 0
        self._saved = 0

    def acquire(self, count: int) -> None:
        with self._lock:
            if self._users and count != self._count:
                raise ConfigurationError(
                    f"torch_threads={count} conflicts with torch_threads="
                    f"{self._count} of another running in-process executor; "
                    "torch's intra-op thread count is per process"
                )
            if not self._users:
                self._saved = set_torch_threads(count)
                self._count = count
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if not self._users:
                set_torch_threads(self._saved)


_THREAD_PIN = _ThreadPin()


class Placement(IntEnum):
    """Where an executor runs client code, nearest first.

    Client code that can run at one placement can run at every nearer one;
    which client code goes how far is decided in `blazefl.sim._adapters`.
    """

    #: in this process: the trainer object itself is shared (inline, threads)
    IN_PROCESS = 0
    #: in other processes of this machine: pickled work, local shared memory
    ON_HOST = 1
    #: on any node of a cluster: pickled work, nothing shared but the wire
    CLUSTER = 2


class RoundSession(ABC):
    """An executor's view of one round: the payload is already with the workers."""

    def expect(self, jobs: Sequence[ClientJob]) -> None:
        """The round's jobs in slot order, before the first `run`.

        For sessions that train several clients at once (`CohortExecutor`
        forms its chunks here); the default ignores it.
        """
        del jobs

    #: True when `run_all` is offered: the session's workers take the round's
    #: jobs themselves, in slot order (used when no per-client timeout is set).
    pulls: ClassVar[bool] = False

    @abstractmethod
    async def run(self, job: ClientJob) -> JobOutcome:
        """Run one client; return its outcome. On cancellation, stop the client."""

    async def run_all(
        self,
        jobs: Sequence[ClientJob],
        done: Callable[[ClientJob, JobOutcome], None],
    ) -> None:
        """Run every job, at most ``max_workers`` at once, starting them in slot
        order; call ``done`` on this loop as each finishes. On cancellation,
        stop the running clients. Only where `pulls` is True."""
        raise NotImplementedError(f"{type(self).__name__} does not pull jobs")


class Executor(ABC):
    """Runs client work for the coordinator. Subclasses differ only in *where*.

    :param max_workers: how many clients run at the same time.
    :param torch_threads: torch intra-op threads per worker, and in the
        coordinator's process while the executor runs (where the handler
        aggregates and evaluates). Keep it equal across executors you compare:
        it changes float results as well as speed.
    :param devices: where the workers compute: ``"cpu"``, ``"cuda"`` (every
        visible GPU), ``"cuda:N"``, or a list of those (``"cuda:0,cuda:1"``);
        worker ``i`` takes ``devices[i % len(devices)]`` for every client it
        runs. None (the default): each client runs on the device the
        simulation gives it (``Simulation(device=...)``). See docs/gpu.md.
    """

    kind: ClassVar[str]
    #: where this executor's workers run, i.e. which client code it can take
    placement: ClassVar[Placement]

    def __init__(
        self,
        max_workers: int = 1,
        *,
        torch_threads: int = 1,
        devices: DeviceSpec = None,
    ) -> None:
        self._max_workers = check_int("max_workers", max_workers)
        self._torch_threads = check_int("torch_threads", torch_threads)
        self._devices = parse_devices(devices)
        self._work: JobWork | None = None
        self._saved_threads: int | None = None

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def torch_threads(self) -> int:
        return self._torch_threads

    @property
    def devices(self) -> tuple[str, ...] | None:
        """The devices workers are placed on, round-robin; None: the job's own."""
        return self._devices

    def worker_device(self, position: int) -> str | None:
        """The device of the worker at ``position`` (None: the job's own)."""
        return device_for(self._devices, position)

    @property
    def running(self) -> bool:
        return self._work is not None

    def refuse_work(self, work: JobWork) -> str | None:
        """Why this executor cannot run ``work``, or None if it can.

        Called when a `Simulation` is built, so work an executor cannot run
        fails at construction; the default accepts any work its `placement`
        admits.
        """
        del work
        return None

    def describe(self) -> dict[str, Any]:
        """The fields logged with every round."""
        fields: dict[str, Any] = {"executor": self.kind, "workers": self._max_workers}
        if self._devices is not None:
            fields["devices"] = ",".join(self._devices)
        return fields

    async def start(self, work: JobWork) -> None:
        """Start the workers for a run of ``work``."""
        if self._work is not None:
            raise ConfigurationError(
                f"{type(self).__name__} is already running; one executor serves "
                "one simulation at a time"
            )
        # The coordinator's own process computes too (in-process workers, the
        # handler's aggregation and evaluation): same thread count everywhere.
        self._pin_torch_threads()
        if any(is_cuda(d) for d in self._devices or ()):
            # Before any worker (thread or process) touches CUDA.
            enable_cuda_determinism()
        self._work = work
        try:
            await self._start(work)
        except BaseException:
            self._work = None
            self._unpin_torch_threads()
            raise

    async def aclose(self) -> None:
        """Stop every worker. Safe to call twice."""
        if self._work is None:
            return
        try:
            await self._close()
        finally:
            self._work = None
            self._unpin_torch_threads()

    @asynccontextmanager
    async def round(self, index: int, payload: Any) -> AsyncIterator[RoundSession]:
        """Share ``payload`` with the workers and yield the round's session."""
        if self._work is None:
            raise ExecutorClosedError(
                f"{type(self).__name__} is not running; use it through "
                "`async with Simulation(...)` or call `await executor.start(work)`"
            )
        async with self._round(self._work, index, payload) as session:
            yield session

    def _pin_torch_threads(self) -> None:
        """Fix the intra-op thread count in this process for in-process workers."""
        _THREAD_PIN.acquire(self._torch_threads)
        self._saved_threads = self._torch_threads

    def _unpin_torch_threads(self) -> None:
        if self._saved_threads is not None:
            _THREAD_PIN.release()
            self._saved_threads = None

    @abstractmethod
    async def _start(self, work: JobWork) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> Any:  # an async context manager yielding a RoundSession
        ...
