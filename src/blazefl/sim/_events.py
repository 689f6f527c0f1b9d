"""Typed progress events and the hub that fans them out.

Every event is published once by the coordinator: it goes to each open
`EventStream` *and* to the structlog logger under the same name with the same
fields, so the stream and the logs always say the same thing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from blazefl.sim._jobs import JobOutcome

__all__ = [
    "ClientFailed",
    "ClientFinished",
    "ClientsEvaluated",
    "Event",
    "EventStream",
    "RoundAborted",
    "RoundFinished",
    "RoundStarted",
    "RoundTimed",
]


class _EventBase:
    name: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        """The event's fields, as logged."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        """The fields as plain JSON data, plus ``"event": name``.

        Tuples become lists, mappings dicts, non-finite floats ``None`` (a
        diverged loss must not break a JSON consumer), anything else its repr.
        """
        return {"event": self.name, **_jsonable(self.fields())}


@dataclass(frozen=True, slots=True)
class RoundStarted(_EventBase):
    """A round sampled its clients and is about to run them."""

    name: ClassVar[str] = "round_started"
    round: int
    cids: tuple[int, ...]
    executor: str
    workers: int


@dataclass(frozen=True, slots=True)
class ClientFinished(_EventBase):
    """One client's work returned a result (in completion order)."""

    name: ClassVar[str] = "client_finished"
    round: int
    cid: int
    slot: int
    worker: str
    seconds: float
    metrics: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class ClientFailed(_EventBase):
    """One client produced no result: it raised, timed out, or its worker died."""

    name: ClassVar[str] = "client_failed"
    round: int
    cid: int
    slot: int
    worker: str
    seconds: float
    kind: str
    error: str
    traceback: str


@dataclass(frozen=True, slots=True)
class RoundFinished(_EventBase):
    """A round was aggregated and committed."""

    name: ClassVar[str] = "round_finished"
    round: int
    seconds: float
    clients: int
    failed: int
    metrics: Mapping[str, float]
    summary: Mapping[str, Any]
    executor: str
    workers: int
    gil_enabled: bool


@dataclass(frozen=True, slots=True)
class RoundAborted(_EventBase):
    """A round was cancelled, timed out, or failed; nothing of it was applied."""

    name: ClassVar[str] = "round_aborted"
    round: int
    reason: str


@dataclass(frozen=True, slots=True)
class RoundTimed(_EventBase):
    """A timed round (or async server update) on the virtual clock, published
    just before its `RoundFinished`; only when the simulation has ``time``.

    ``virtual_time`` is the clock after the round; ``applied`` the clients
    whose updates were applied, in order, ``finish_times`` their virtual
    finish times; ``stragglers`` missed the
    deadline or the first k; ``offline`` went offline before finishing;
    ``in_flight`` (async) clients still training; ``staleness_*`` (async)
    over the applied updates.
    """

    name: ClassVar[str] = "round_timed"
    round: int
    virtual_start: float
    virtual_time: float
    applied: tuple[int, ...]
    finish_times: tuple[float, ...]
    stragglers: tuple[int, ...]
    offline: tuple[int, ...]
    in_flight: int
    staleness_mean: float
    staleness_max: int


@dataclass(frozen=True, slots=True)
class ClientsEvaluated(_EventBase):
    """`Simulation.evaluate_clients` measured the clients on their own test
    data; ``round`` is the 0-based index of the last committed round, as in
    `RoundFinished` (-1: the initial model, before any round); ``stats`` is
    the spread (`blazefl.sim.ClientEvaluation.stats`: ``client_acc_mean``,
    ``client_acc_p10``, ...), ``failed`` how many clients' evaluations
    failed."""

    name: ClassVar[str] = "clients_evaluated"
    round: int
    clients: int
    failed: int
    seconds: float
    stats: Mapping[str, Any]


Event = (
    RoundStarted
    | ClientFinished
    | ClientFailed
    | RoundFinished
    | RoundAborted
    | RoundTimed
    | ClientsEvaluated
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _enabled(log: Any, level: int) -> bool:
    """False only where the logger says it drops ``level`` (structlog's
    filtering loggers can tell); any other logger gets every event."""
    check = getattr(log, "is_enabled_for", None)
    if check is None:
        return True
    try:
        return bool(check(level))
    except Exception:
        return True


class EventStream:
    """An async iterator over a simulation's events, from subscription on.

    Use it as ``async with sim.events() as events: async for e in events``;
    iteration ends when the simulation closes. Events queue up unboundedly
    while nobody reads, so close streams you stop reading.
    """

    def __init__(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        self._receive = receive

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def receive_nowait(self) -> Event | None:
        """The next event already queued, or None if none is (never waits)."""
        try:
            return self._receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    async def aclose(self) -> None:
        self._receive.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def client_event(round_index: int, outcome: JobOutcome) -> Event:
    """The event for one client's outcome: `ClientFinished` or `ClientFailed`."""
    error = outcome.error
    if error is None:
        return ClientFinished(
            round_index,
            outcome.cid,
            outcome.slot,
            outcome.worker,
            outcome.seconds,
            outcome.metrics,
        )
    return ClientFailed(
        round_index,
        outcome.cid,
        outcome.slot,
        outcome.worker,
        outcome.seconds,
        error.kind,
        str(error),
        error.traceback,
    )


class EventHub:
    """Fans each published event out to every open stream and to the log.

    The log line has the event's name and fields (a failure's traceback stays
    in the stream's event only), at ``warning`` for failures and aborts.
    """

    def __init__(self, log: Any) -> None:
        self._log = log
        self._sends: list[MemoryObjectSendStream[Event]] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self) -> EventStream:
        """A new stream; already ended if the hub is closed."""
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        if self._closed:
            send.close()
        else:
            self._sends.append(send)
        return EventStream(receive)

    def publish(self, event: Event) -> None:
        warn = isinstance(event, ClientFailed | RoundAborted)
        # One bound logger per event (a lazy proxy binds on every call); its
        # fields only when it will log them: one event per client per round.
        log = self._log.bind() if hasattr(self._log, "bind") else self._log
        if _enabled(log, logging.WARNING if warn else logging.INFO):
            fields = event.fields()
            if isinstance(event, ClientFailed):
                fields.pop("traceback")
            getattr(log, "warning" if warn else "info")(event.name, **fields)
        if not self._sends:
            return
        alive = []
        for send in self._sends:
            try:
                send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                send.close()
                continue
            alive.append(send)
        self._sends = alive

    def close(self) -> None:
        self._closed = True
        for send in self._sends:
            send.close()
        self._sends = []
