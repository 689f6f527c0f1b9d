"""The process executor: persistent worker processes fed through shared memory.

Why ``spawn``: a forked child inherits the parent's threads' locks (torch's
OpenMP pool, anyio's worker threads, the event loop) in whatever state they were
at the fork, which deadlocks or corrupts; ``spawn`` starts a clean interpreter
and is what torch recommends. Its start-up cost (importing torch, about a
second) is paid once per worker per run, not per round: workers live for the
whole run, and a dead worker is replaced by a new one.

Per round, the payload's tensors are copied into the executor's own shared
memory, the same segments round after round (see `_shared_payload`), and each
worker maps them once (only handles are pickled). Results come back through
shared result buffers that each worker maps once, and reach the server as views
into them, not copies (see `_result_pool`).

With ``devices``, worker ``i`` is pinned to ``devices[i % len(devices)]``
(its replacement too): it selects that GPU when it starts and runs every
client on it, on a CUDA stream of its own (see `blazefl.sim._devices`).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_number
from blazefl._versions import version_of
from blazefl.sim._devices import DeviceSpec
from blazefl.sim._executors._base import Executor, Placement, RoundSession
from blazefl.sim._executors._group import kill_worker
from blazefl.sim._executors._job_body import torch_settings
from blazefl.sim._executors._pool import WorkerPool, died
from blazefl.sim._executors._process_worker import worker_main
from blazefl.sim._executors._result_buffers import tensor_bytes, unpack_result
from blazefl.sim._executors._result_pool import ResultPool, ResultSlot
from blazefl.sim._executors._shared_payload import SharedPayload
from blazefl.sim._jobs import ClientFailure, ClientJob, JobOutcome, JobWork

__all__ = ["ProcessExecutor"]

_START_METHODS = ("spawn", "forkserver")


@dataclass(eq=False)
class _Worker:
    index: int
    device: str | None
    process: BaseProcess
    conn: Connection
    stop: Any  # a multiprocessing Event
    ready: bool = False
    pid: int | None = None
    payload_round: int | None = None
    #: the version of the client work this worker holds (see `blazefl._versions`)
    work_version: Hashable = None
    #: the ids of the result buffers this worker has mapped (see `_result_pool`)
    mapped: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"process-{self.index}"


class ProcessExecutor(Executor):
    """Runs up to ``max_workers`` clients at once in persistent worker processes.

    Each worker process keeps what the work caches in ``ctx.cache`` (models,
    optimizers' buffers) for the whole run, maps the data set's tensors from
    shared memory once, and gets each round's payload as shared-memory handles.
    The work must be picklable. A worker that dies is reported as a failed
    client and replaced.

    :param start_method: ``"spawn"`` (default) or ``"forkserver"``; ``fork``
        is refused because it is unsafe once torch or anyio started threads.
    :param stop_grace: seconds a cancelled client gets to honour its stop flag
        before its worker process is killed and replaced.
    :param devices: pin worker ``i`` to ``devices[i % len(devices)]``
        (``"cuda"``: every visible GPU, round-robin); see `Executor`.
    """

    kind = "processes"
    placement = Placement.ON_HOST

    def __init__(
        self,
        max_workers: int = 2,
        *,
        torch_threads: int = 1,
        start_method: str = "spawn",
        stop_grace: float = 5.0,
        devices: DeviceSpec = None,
    ) -> None:
        super().__init__(max_workers, torch_threads=torch_threads, devices=devices)
        if start_method not in _START_METHODS:
            raise ConfigurationError(
                f"start_method must be one of {_START_METHODS}, got {start_method!r}"
            )
        self._start_method = start_method
        self._stop_grace = check_number(
            "stop_grace", stop_grace, allow_zero=True, unit="seconds"
        )
        self._workers = WorkerPool(self._spawn, self._retire)
        self._results = ResultPool()
        self._shared = SharedPayload()
        self._work_version: Hashable = None

    @property
    def pids(self) -> list[int]:
        """The PIDs of the live worker processes."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    # -- lifecycle ---------------------------------------------------------

    async def _start(self, work: JobWork) -> None:
        try:
            self._new_version()
            self._workers.start(self.max_workers)
            for worker in self._workers:
                await self._await_ready(worker)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise

    def _spawn(self, index: int, position: int) -> _Worker:
        ctx = mp.get_context(self._start_method)
        device = self.worker_device(position)
        version, work_bytes = self._work_now()
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        stop = ctx.Event()
        process = ctx.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(
                index,
                work_bytes,
                child_conn,
                stop,
                self.torch_threads,
                torch_settings(),
                device,
            ),
            name=f"blazefl-worker-{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()  # so the parent sees EOF when the child dies
        return _Worker(index, device, process, parent_conn, stop, work_version=version)

    def _work_now(self) -> tuple[Hashable, bytes]:
        """The work's current version, and a pickle of it for one worker.

        A pickle made by `ForkingPickler` hands its tensors' shared memory
        over once, so each worker gets a pickle of its own.
        """
        work = self._work
        assert work is not None  # workers start (and restart) only while running
        return self._work_version, _pickled(work)

    def _new_version(self) -> Hashable:
        """Read the work's version at the start of a round (see `_versions`).

        Static work (every built-in one) keeps its version, so it is sent to
        each worker once per run; work whose version changed (a data set with
        per-round state, `set_dataset`) goes to each worker again, as BlazeFL
        sends it with every task.
        """
        self._work_version = version_of(self._work)
        return self._work_version

    async def _await_ready(self, worker: _Worker) -> None:
        if worker.ready:
            return
        try:
            message = await _recv(worker.conn)
        except (EOFError, OSError):
            code = await _reap(worker.process)
            raise ConfigurationError(
                f"worker process {worker.label} exited with code {code} during "
                "start-up (see its output above)"
            ) from None
        if message[0] == "fatal":
            info: ClientFailure = message[1]
            raise ConfigurationError(
                f"worker process {worker.label} could not load the client work: "
                f"{info}. A spawned worker imports the work's module afresh: define "
                "it in an importable module (not in __main__ of an interactive "
                f"session, not in a file off sys.path).\n{info.traceback}"
            )
        worker.ready, worker.pid = True, message[1]

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):
            workers = self._workers.take_all()
            for worker in workers:
                with suppress(OSError, ValueError):
                    worker.conn.send(("stop",))
            for worker in workers:
                await _reap(worker.process, wait=self._stop_grace + 5)
                worker.conn.close()
            self._results = ResultPool()
            self._shared.clear()

    @staticmethod
    def _retire(dead: _Worker) -> None:
        """Kill a dead or stuck worker; its replacement is ready on first use."""
        with suppress(OSError):
            dead.conn.close()
        if dead.process.is_alive():
            kill_worker(dead.process)
        dead.process.join(timeout=5)

    # -- rounds ------------------------------------------------------------

    @asynccontextmanager
    async def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> AsyncIterator[RoundSession]:
        payload = self._shared.share(payload)
        self._new_version()
        if self._results.capacity == 0:
            # A first guess that is exact for "send back a model like the one
            # you got" algorithms; grown after any result that does not fit.
            self._results.grow(tensor_bytes(payload))
        send, receive = anyio.create_memory_object_stream[_Worker](len(self._workers))
        for worker in self._workers:
            send.send_nowait(worker)
        with send, receive:
            yield _ProcessSession(self, index, payload, send, receive)

    def _result_slot(self, worker: _Worker) -> tuple[ResultSlot | None, Any]:
        """A result buffer for the worker's next client, and how to name it.

        The name is ``(id, buffer or None, dropped ids)``: the buffer itself
        only the first time this worker gets it, and the ids of buffers the
        pool forgot, for the worker to unmap.
        """
        slot = self._results.take()
        live = self._results.ids
        dropped = tuple(worker.mapped - live)
        worker.mapped &= live
        if slot is None:
            return None, (None, None, dropped)
        first = slot.id not in worker.mapped
        worker.mapped.add(slot.id)
        return slot, (slot.id, slot.tensor if first else None, dropped)


class _ProcessSession(RoundSession):
    def __init__(
        self,
        owner: ProcessExecutor,
        index: int,
        payload: Any,
        send: MemoryObjectSendStream[_Worker],
        receive: MemoryObjectReceiveStream[_Worker],
    ) -> None:
        self._owner = owner
        self._index = index
        self._payload = payload
        self._send = send
        self._receive = receive

    def expect(self, jobs: Sequence[ClientJob]) -> None:
        # What a round can view at once: every client's result, and one
        # buffer per worker being written (copied results free theirs at once).
        results, workers = self._owner._results, len(self._owner._workers)
        results.keep = workers + 1 if results.copies else len(jobs) + workers

    async def run(self, job: ClientJob) -> JobOutcome:
        owner = self._owner
        worker = await self._receive.receive()
        sent = False
        slot: ResultSlot | None = None
        try:
            worker = await self._prepare(worker, job)
            slot, name = owner._result_slot(worker)
            worker.stop.clear()
            worker.conn.send(("job", job, name))
            sent = True
            message = await _recv(worker.conn)
        except (EOFError, OSError):
            owner._results.discard(slot)
            code = await _reap(worker.process)
            self._send.send_nowait(owner._workers.replace(worker))
            return died(
                job,
                worker.label,
                f"worker process {worker.label} (pid {worker.pid}) exited with "
                f"code {code} while running client {job.cid}",
            )
        except BaseException:
            # Cancelled (timeout or the round was cancelled): ask the client to
            # stop, give it a grace period, then kill and replace its worker.
            with anyio.CancelScope(shield=True):
                answered = not sent
                if sent:
                    worker.stop.set()
                    with anyio.move_on_after(owner._stop_grace):
                        with suppress(EOFError, OSError):
                            await _recv(worker.conn)
                            answered = True
                if answered:
                    owner._results.give_back(slot)
                else:
                    owner._results.discard(slot)
                self._send.send_nowait(
                    worker if answered else owner._workers.replace(worker)
                )
            raise
        outcome: JobOutcome
        _, outcome, used, packed = message
        results = owner._results
        if packed:
            assert slot is not None
            # Views into the buffer, which stays out of the workers' reach
            # for as long as any of them lives (see `_result_pool`).
            outcome.result = unpack_result(
                outcome.result, slot.tensor, copy=results.copies
            )
        elif outcome.ok:
            results.grow(used)
        results.give_back(slot)
        self._send.send_nowait(worker)
        return outcome

    async def _prepare(self, worker: _Worker, job: ClientJob) -> _Worker:
        """Make sure the worker is alive and holds the work and the payload."""
        owner = self._owner
        if not worker.process.is_alive():
            await _reap(worker.process)
            worker = owner._workers.replace(worker)
        await owner._await_ready(worker)
        if worker.work_version != owner._work_version:
            version, work_bytes = owner._work_now()
            await anyio.to_thread.run_sync(worker.conn.send, ("work", work_bytes))
            worker.work_version = version
        if worker.payload_round != self._index:
            await anyio.to_thread.run_sync(
                worker.conn.send, ("payload", self._index, self._payload)
            )
            worker.payload_round = self._index
        return worker


def _pickled(work: JobWork) -> bytes:
    try:
        return bytes(ForkingPickler.dumps(work))
    except Exception as exc:
        raise ConfigurationError(
            f"the client work {work!r} cannot be pickled, which the process "
            f"executor needs ({type(exc).__name__}: {exc}); define it at module "
            "level, or use ThreadExecutor"
        ) from exc


async def _recv(conn: Connection) -> Any:
    """Receive one message without blocking the event loop."""
    while not conn.poll():
        await anyio.wait_readable(conn.fileno())
    return conn.recv()


async def _reap(process: BaseProcess, wait: float = 5.0) -> int | None:
    """Join a worker process, killing it if it does not exit in time."""
    await anyio.to_thread.run_sync(process.join, wait)
    if process.is_alive():
        kill_worker(process)
        await anyio.to_thread.run_sync(process.join, 5.0)
    return process.exitcode
