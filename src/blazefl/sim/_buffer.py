"""The index-keyed result buffer.

Result ``i`` belongs to sampled client ``i`` of the round. Workers finish in any
order; the buffer files each outcome under its slot and hands them back in
slot order, so aggregation is the same whatever the completion order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

__all__ = ["ResultBuffer"]

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
