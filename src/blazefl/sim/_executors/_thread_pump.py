"""Thread workers that take a round's jobs themselves (`RoundSession.run_all`).

Handing each client to a worker thread from the event loop costs two thread
wake-ups per client: the loop wakes to collect a result and send the next job,
and the worker waits meanwhile. On a quiet machine that is tens of
microseconds; on a loaded one each wake-up waits for a time slice, milliseconds
per client, which a hand-written thread pool (whose workers just take the next
job) never pays. So when no per-client timeout has to be clocked, each worker
thread runs a *pump*: take the next job in slot order, run it, post the outcome
to the loop without waiting for it, take the next. The loop checks outcomes as
they arrive, while the workers go on.

How an outcome reaches the loop: the worker puts it on a `queue.SimpleQueue`
and goes on; one waiting thread takes whatever has arrived and wakes the loop.
A worker that woke the loop itself (``call_soon_threadsafe`` writes to the
loop's self-pipe) released the GIL for that write and then waited to get it
back from the other workers: on the GIL build, with two workers at batch size
1, that wait was a switch interval (5 ms) per client, 40% of a round.

Clients still start in slot order, at most one per worker at a time, each with
its own stop flag; a cancelled round stops the running clients exactly like
`_ThreadSession.run` does (stop flag, grace period, then the worker is retired).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork, execute_job
from blazefl.sim._payload import PayloadCopy

if TYPE_CHECKING:
    from blazefl.sim._executors._threads import ThreadExecutor

__all__ = ["Attempt", "pump_round"]

Done = Callable[[ClientJob, JobOutcome], None]


# Put on the outcome queue to wake the waiting thread when nobody collects.
_CLOSED: Any = object()


def _arrived(outcomes: queue.SimpleQueue[Any]) -> list[Any]:
    """Block (off the loop) until an outcome arrives; return all that have."""
    items = [outcomes.get()]
    while True:
        try:
            items.append(outcomes.get_nowait())
        except queue.Empty:
            return items


class Attempt:
    """One client's hand-over to a worker thread, safe against a racing cancel.

    anyio may drop a job that was cancelled before its thread started it; the
    lock makes "started" and "abandoned" mutually exclusive, so a cancel never
    waits for a client that will never run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._abandoned = False
        self.stop = threading.Event()
        # A flag, not a second Event: it is only polled, after a cancel.
        self.done = False

    def begin(self) -> bool:
        """Called by the thread: False if the job was abandoned first."""
        with self._lock:
            if self._abandoned:
                return False
            self._started = True
            return True

    def finish(self) -> None:
        """Called by the thread once the client returned or raised."""
        with self._lock:
            self.done = True

    def abandon(self) -> bool:
        """Called on the loop after the call: True if a running client must stop."""
        with self._lock:
            if self.done:
                return False
            self._abandoned = True
            if self._started:
                self.stop.set()
            return self._started


class _Pump:
    """The round's shared job queue and what each worker thread is running."""

    def __init__(self, jobs: Sequence[ClientJob]) -> None:
        self._lock = threading.Lock()
        self._jobs: Iterator[ClientJob] = iter(jobs)
        self._stopping = False
        self.running: dict[int, Attempt] = {}

    def next(self, wid: int, attempt: Attempt) -> ClientJob | None:
        """The next job in slot order for worker ``wid``, or None when done."""
        with self._lock:
            if self._stopping:
                return None
            job = next(self._jobs, None)
            if job is not None:
                attempt.begin()
                self.running[wid] = attempt
            return job

    def stop(self) -> dict[int, Attempt]:
        """Start no more jobs; ask the running ones to stop; return them."""
        with self._lock:
            self._stopping = True
            running = dict(self.running)
        for attempt in running.values():
            attempt.stop.set()
        return running


async def pump_round(
    owner: ThreadExecutor,
    work: JobWork,
    copies: dict[int, PayloadCopy],
    payload: Any,
    jobs: Sequence[ClientJob],
    done: Done,
    grace: float,
) -> None:
    """Run ``jobs`` on all of ``owner``'s worker threads; see the module doc."""
    pump = _Pump(jobs)
    outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    wids = [owner._idle.pop(0) for _ in range(min(len(owner._idle), len(jobs)))]
    limiter = anyio.CapacityLimiter(max(1, len(wids)))

    def worker(wid: int) -> None:
        cache: dict[str, Any] | None = None
        lent: PayloadCopy | None = None
        while True:
            attempt = Attempt()
            job = pump.next(wid, attempt)
            if job is None:
                if lent is not None:
                    lent.release()  # here, on the thread that made the copy
                return  # also where a thread that started late after a cancel ends
            if cache is None or lent is None:
                cache = owner._caches[wid]
                lent = owner._copy_for(wid, payload, copies)
            label = f"thread-{wid}"
            execute = partial(
                execute_job,
                work,
                payload=lent,
                stop_event=attempt.stop,
                cache=cache,
                worker=label,
            )
            try:
                # On the worker's device (and CUDA stream), as a client the
                # loop hands out one by one is.
                outcome = owner._places[wid].run(job, execute, label)
            finally:
                attempt.finish()
            outcomes.put((job, outcome))

    try:
        async with anyio.create_task_group() as tg:
            for wid in wids:
                tg.start_soon(
                    partial(
                        anyio.to_thread.run_sync,
                        partial(worker, wid),
                        limiter=limiter,
                        abandon_on_cancel=True,
                    )
                )
            left = len(jobs)
            while left:
                for job, outcome in await anyio.to_thread.run_sync(
                    _arrived, outcomes, abandon_on_cancel=True
                ):
                    done(job, outcome)
                    left -= 1
    finally:
        outcomes.put(_CLOSED)  # a waiting thread left behind by a cancel ends
        running = pump.stop()
        stuck = {wid for wid, a in running.items() if not a.done}
        if stuck:
            with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
                # `done` is set by the threads, off the loop: poll it.
                while any(not running[w].done for w in stuck):  # noqa: ASYNC110
                    await anyio.sleep(0.005)
        for wid in wids:
            attempt = running.get(wid)
            owner._idle.append(
                owner._retire(wid) if attempt is not None and not attempt.done else wid
            )
