"""The index-keyed result buffer, and the fold of its completed prefix.

Result ``i`` belongs to sampled client ``i`` of the round. Workers finish in any
order; the buffer files each outcome under its slot and hands them back in
slot order, so aggregation is the same whatever the completion order.

`PrefixFold` folds a round's updates into the server's aggregate while the
round runs: slot k once slots 0..k-1 are in (failed slots skipped), on a
thread of its own, so the event loop never waits for it and the fold's order
is the slot order whatever order clients finish in.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["HandlerFold", "PrefixFold", "ResultBuffer"]

T = TypeVar("T")

_EMPTY: Any = object()  # an empty slot (None is a legitimate result)


class ResultBuffer(Generic[T]):
    """A fixed row of slots, each filled exactly once."""

    __slots__ = ("_cids", "_items")

    def __init__(self, cids: list[int]) -> None:
        self._cids = tuple(cids)
        self._items: list[Any] = [_EMPTY] * len(cids)

    def put(self, slot: int, cid: int, item: T) -> None:
        """File ``item`` for client ``cid`` under ``slot``; refuse mismatches."""
        if not 0 <= slot < len(self._items):
            raise IndexError(f"slot {slot} is outside 0..{len(self._items) - 1}")
        if self._cids[slot] != cid:
            raise ValueError(
                f"slot {slot} belongs to client {self._cids[slot]}, not client {cid}"
            )
        if self._items[slot] is not _EMPTY:
            raise ValueError(f"slot {slot} (client {cid}) was already filled")
        self._items[slot] = item

    @property
    def complete(self) -> bool:
        return all(item is not _EMPTY for item in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        """The items in slot order; raises if any slot is still empty."""
        for slot, item in enumerate(self._items):
            if item is _EMPTY:
                raise ValueError(f"slot {slot} (client {self._cids[slot]}) is empty")
            yield item


class HandlerFold(Protocol):
    """What a handler's ``round_fold()`` returns (`blazefl.algorithms.RoundFold`)."""

    def add(self, update: Any) -> None: ...

    def applied(self, updates: Sequence[Any]) -> AbstractContextManager[None]: ...


_DONE: Any = object()  # the fold thread's last item


class PrefixFold:
    """Folds a round's successful results into ``fold``, slot by slot.

    `offer` (on the event loop, as each outcome is filed) releases the
    completed prefix to the fold thread; `applied` (in the aggregation
    thread) waits for it and hands the handler its folded aggregate, or
    nothing if a fold failed (the handler then computes its own, which
    raises the same error); `discard` drops it (a round that is not applied).
    """

    def __init__(self, fold: HandlerFold, slots: int) -> None:
        self._fold = fold
        self._arrived: dict[int, Any] = {}
        self._next = 0
        self._slots = slots
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._failed = False
        self._dropped = False
        self._thread = threading.Thread(
            target=self._run, name="blazefl-fold", daemon=True
        )

    def offer(self, outcome: Any) -> None:
        """File ``outcome`` (a `JobOutcome`); fold whatever prefix it completes."""
        self._arrived[outcome.slot] = outcome
        while self._next in self._arrived:
            ready = self._arrived.pop(self._next)
            self._next += 1
            if ready.ok:
                if self._thread.ident is None:
                    self._thread.start()
                self._queue.put(ready.result)

    def _run(self) -> None:
        while (update := self._queue.get()) is not _DONE:
            if self._failed or self._dropped:
                continue
            try:
                self._fold.add(update)
            except Exception:
                self._failed = True  # the handler's own aggregation reports it

    def _join(self) -> None:
        if self._thread.ident is not None:
            self._queue.put(_DONE)
            self._thread.join()

    def applied(self, packages: Sequence[Any]) -> AbstractContextManager[None]:
        """Wait for the fold; within the block the handler's aggregation of
        ``packages`` finds it (when every slot came in and nothing failed)."""
        self._join()
        if self._failed or self._next != self._slots:
            return nullcontext()
        return self._fold.applied(packages)

    def discard(self) -> None:
        """The round is not applied: stop folding (the thread ends by itself)."""
        self._dropped = True
        if self._thread.ident is not None:
            self._queue.put(_DONE)
