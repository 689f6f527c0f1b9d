"""Server-sent events: one numbered log of event records, replayed and followed.

`EventLog` holds a run's events as the JSON objects of its ``events.jsonl``
lines, numbered from 1; any number of readers `follow` it from a position
(replaying what they missed, then waiting for more), so a browser tab that
reconnects with ``Last-Event-ID`` resumes exactly after the last event it
saw, and a late tab replays the whole history. `frame` writes one record as
one SSE frame (``id:``, ``event:``, ``data:``); `last_event_id` reads the
header, refusing anything that is not a non-negative decimal integer (the
caller answers 400).

The dashboard (`blazefl.dashboard`) and ``examples/async-service`` both
stream through this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio

__all__ = ["EventLog", "HEARTBEAT", "frame", "last_event_id"]

#: An SSE comment line: keeps idle connections (and proxies) alive.
HEARTBEAT = b": keep-alive\n\n"
_MAX_ID_DIGITS = 18


class BadLastEventIDError(ValueError):
    """A ``Last-Event-ID`` header that is not a decimal event number."""


def last_event_id(header: str | None) -> int:
    """The event number a reconnecting client saw last (0: none).

    Raises `BadLastEventIDError` for anything but 1 to 18 ASCII digits.
    """
    if header is None or header == "":
        return 0
    text = header.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_ID_DIGITS:
        raise BadLastEventIDError(
            f"Last-Event-ID must be a decimal event number, got {header[:40]!r}"
        )
    return int(text)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def frame(number: int, record: Mapping[str, Any]) -> bytes:
    """One record as an SSE frame; its ``event:`` is the record's ``event``."""
    name = str(record.get("event", "message")).replace("\n", " ")
    data = json.dumps(_finite(record), separators=(",", ":"), allow_nan=False)
    return f"id: {number}\nevent: {name}\ndata: {data}\n\n".encode()


class EventLog:
    """A growing list of event records that readers follow, in order.

    `append` adds records (from a file tailer, or a running simulation);
    `close` says no more will come, so followers end after the last one.
    """

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._frames: dict[int, bytes] = {}  # encoded once, sent to every reader
        self._changed = anyio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._records)

    def frame(self, number: int) -> bytes:
        """Record `number` (from 1) as its SSE frame, encoded once for all readers."""
        cached = self._frames.get(number)
        if cached is None:
            cached = self._frames[number] = frame(number, self._records[number - 1])
        return cached

    def last(self) -> dict[str, Any] | None:
        """The latest record, or None."""
        return self._records[-1] if self._records else None

    def append(self, record: dict[str, Any]) -> None:
        self._records.append(record)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def follow(
        self, after: int = 0, *, idle: float | None = None
    ) -> AsyncGenerator[tuple[int, dict[str, Any]] | None, None]:
        """Yield ``(number, record)`` for every record past `after`, then wait.

        With `idle` seconds, yields None whenever nothing arrived for that
        long (time for a heartbeat). Ends once the log is closed and drained.
        """
        position = after
        while True:
            while position < len(self._records):
                position += 1
                yield position, self._records[position - 1]
            if self.closed:
                return
            changed = self._changed
            if idle is None:
                await changed.wait()
                continue
            with anyio.move_on_after(idle) as scope:
                await changed.wait()
            if scope.cancelled_caught:
                yield None
