"""The live workers of an executor whose workers can die (processes, Ray
actors), and the one way a dead worker is replaced.

A worker that dies, or is killed because its cancelled client would not stop,
is retired and a fresh one takes its place in the same position, with the next
index (so its label never repeats) and the same position (so the same device,
see `blazefl.sim._devices`). The client it was running becomes a failed slot
of kind "worker_died" (`died`); the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from blazefl._exceptions import WorkerDiedError
from blazefl.sim._jobs import ClientJob, JobOutcome, recorded

__all__ = ["WorkerPool", "died"]

W = TypeVar("W")


class WorkerPool(Generic[W]):
    """An executor's workers, started with ``spawn(index, position)``; ``retire``
    kills one. ``index`` counts every worker ever started; ``position`` is the
    worker's place in the pool, which its replacement takes over.

    ``retire`` must work on a worker that is already dead (and may block
    briefly: it runs where the dead worker was found).
    """

    def __init__(
        self, spawn: Callable[[int, int], W], retire: Callable[[W], None]
    ) -> None:
        self._spawn = spawn
        self._retire = retire
        self._workers: list[W] = []
        self._next_index = 0

    def __iter__(self) -> Iterator[W]:
        return iter(list(self._workers))

    def __len__(self) -> int:
        return len(self._workers)

    def start(self, count: int) -> None:
        """Spawn ``count`` workers (they may still be starting up)."""
        for _ in range(count):
            self._workers.append(self._new(len(self._workers)))

    def replace(self, dead: W) -> W:
        """Retire ``dead`` and put a fresh worker in its place."""
        self._retire(dead)
        position = next(i for i, w in enumerate(self._workers) if w is dead)
        new = self._new(position)
        self._workers[position] = new
        return new

    def take_all(self) -> list[W]:
        """Hand every worker over for shutting down; the pool is empty after."""
        workers, self._workers = self._workers, []
        return workers

    def _new(self, position: int) -> W:
        index = self._next_index
        self._next_index += 1
        return self._spawn(index, position)


def died(job: ClientJob, worker: str, message: str, detail: str = "") -> JobOutcome:
    """The outcome of a client whose worker died under it."""
    return JobOutcome(
        slot=job.slot,
        cid=job.cid,
        worker=worker,
        seconds=0.0,
        error=recorded(WorkerDiedError, message, detail),
    )
