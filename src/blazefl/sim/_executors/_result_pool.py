"""The process executor's shared result buffers, handed out without a copy.

Why: a worker writes a client's result tensors into a shared buffer
(`_result_buffers`); copying them out again in the parent cost 35-40 ms per
45 MB ResNet-18 result (a fresh allocation's page faults plus the copy), a
quarter of a communication-heavy round. So the parent hands the server *views*
into the buffer itself, and gives the worker another buffer for its next client.

What keeps a result from changing under its consumer: a buffer goes to a
worker again only once no tensor refers to its memory any more (torch's use
count of the buffer's storage is back to what the pool alone holds), however
long the consumer keeps the result: the round's aggregation, a fold on another
thread, an algorithm that keeps a result as its state. A buffer still viewed
after the pool has grown past `keep` is forgotten (dropped by the pool and by
the workers that mapped it); its memory lives as long as the views do, and
goes with them. Nothing here is named in ``/dev/shm``: torch's
``file_descriptor`` sharing unlinks each segment as it creates it, so no
segment can outlive the processes that map it.

Views pay off for big results only: results smaller than `VIEW_MIN_BYTES`
are copied out (cheap at that size) and their buffer is lent again at once, so
a round of 10,000 light clients keeps one buffer per worker instead of one per
client (each of which every worker would map, and `take` would scan). Where
this torch does not expose the use count, every result is copied out
(`copies` is True).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from blazefl.sim._executors._result_buffers import allocate_slot

__all__ = ["VIEW_MIN_BYTES", "ResultPool", "ResultSlot"]

#: Buffers smaller than this (1 MiB) are copied out of, not viewed.
VIEW_MIN_BYTES = 1 << 20

_USE_COUNT: Callable[[int], int] | None = getattr(torch._C, "_storage_Use_Count", None)


def _uses(tensor: torch.Tensor) -> int:
    assert _USE_COUNT is not None
    return _USE_COUNT(tensor.untyped_storage()._cdata)


@dataclass(eq=False)
class ResultSlot:
    """One shared result buffer: ``id`` names it to the workers that mapped it."""

    id: int
    tensor: torch.Tensor
    #: the storage's use count while only the pool refers to it
    idle_uses: int
    #: lent to a worker for a client that has not answered yet
    reserved: bool = False

    def idle(self) -> bool:
        return not self.reserved and (
            _USE_COUNT is None or _uses(self.tensor) <= self.idle_uses
        )


@dataclass
class ResultPool:
    """The buffers results come back in; `take` one per client, `give_back` it.

    ``capacity``: bytes each buffer holds (0: none yet, results travel pickled);
    grown with `grow` after a result that did not fit. ``keep``: how many
    buffers the pool holds at most (the executor sets it to the clients per
    round plus the workers: what can be viewed at once in a round).
    ``view_min_bytes``: below this capacity results are copied out.
    """

    capacity: int = 0
    keep: int = 2
    view_min_bytes: int = VIEW_MIN_BYTES
    _slots: list[ResultSlot] = field(default_factory=list)
    _ids: Any = field(default_factory=itertools.count)

    @property
    def copies(self) -> bool:
        """Whether results are copied out of their buffer (small buffers, or
        no use count to tell when a view is gone) rather than viewed."""
        return _USE_COUNT is None or self.capacity < self.view_min_bytes

    @property
    def ids(self) -> set[int]:
        """The ids of the buffers the pool still holds (workers may drop others)."""
        return {slot.id for slot in self._slots}

    def take(self) -> ResultSlot | None:
        """An idle buffer of ``capacity`` bytes, reserved; None before any."""
        if self.capacity == 0:
            return None
        for slot in self._slots:
            if slot.tensor.numel() >= self.capacity and slot.idle():
                slot.reserved = True
                return slot
        tensor = allocate_slot(self.capacity)
        slot = ResultSlot(next(self._ids), tensor, 0, reserved=True)
        if _USE_COUNT is not None:
            slot.idle_uses = _uses(tensor)
        self._slots.append(slot)
        self._trim()
        return slot

    def give_back(self, slot: ResultSlot | None) -> None:
        """The worker answered: ``slot`` is idle again once no result views it."""
        if slot is not None:
            slot.reserved = False
            if self.copies:
                return  # copied out already
            if slot.tensor.numel() < self.capacity and slot.idle():
                self._forget(slot)

    def discard(self, slot: ResultSlot | None) -> None:
        """Never lend ``slot`` again (its worker may still be writing into it)."""
        if slot is not None:
            self._forget(slot)

    def grow(self, nbytes: int) -> None:
        """Make later buffers hold ``nbytes``; idle smaller ones are dropped."""
        if nbytes > self.capacity:
            self.capacity = nbytes
            for slot in list(self._slots):
                if slot.tensor.numel() < nbytes and slot.idle():
                    self._forget(slot)

    def clear(self) -> None:
        self._slots.clear()

    def _trim(self) -> None:
        # Idle buffers go first, oldest first; then the oldest still viewed
        # (the views keep that memory, and only the views).
        while len(self._slots) > self.keep:
            victim = next(
                (s for s in self._slots if s.idle()),
                next((s for s in self._slots if not s.reserved), None),
            )
            if victim is None:
                return
            self._forget(victim)

    def _forget(self, slot: ResultSlot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
