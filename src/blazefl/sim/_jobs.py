"""The messages between the coordinator and its executors, and the one function
that runs a job on a worker.

Every executor (inline, threads, processes) ends up calling `execute_job` on
its worker, so how a context is built, how errors are captured and how the
client's state comes back exists exactly once.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog
import structlog.contextvars

from blazefl._exceptions import (
    ClientError,
    ClientTimeoutError,
    NonFiniteUpdateError,
    PayloadModifiedError,
    UpdateRejectedError,
    WorkerDiedError,
)
from blazefl.reproducibility._lazy import LazyRNGSuite
from blazefl.sim._context import ClientContext, ClientState, StopFlag
from blazefl.sim._finite import nonfinite
from blazefl.sim._payload import PayloadCopy

__all__ = [
    "ClientFailure",
    "ClientJob",
    "JobOutcome",
    "JobWork",
    "error_info",
    "execute_job",
    "recorded",
    "refusal",
]

FailureKind = Literal["error", "timeout", "worker_died", "rejected"]

# The failures the framework itself records, by class name: a ClientFailure
# crosses processes as plain text, and `exception()` turns it back into these.
_KINDS: tuple[tuple[type[ClientError], FailureKind], ...] = (
    (ClientTimeoutError, "timeout"),
    (WorkerDiedError, "worker_died"),
    (UpdateRejectedError, "rejected"),
    (NonFiniteUpdateError, "rejected"),
    (PayloadModifiedError, "rejected"),
)
_FRAMEWORK_ERRORS = {cls.__name__: (cls, kind) for cls, kind in _KINDS}
_BY_KIND: dict[str, type[ClientError]] = {
    "timeout": ClientTimeoutError,
    "worker_died": WorkerDiedError,
    "rejected": UpdateRejectedError,
}


def _prime_log_context() -> None:
    """Create structlog's context variables for ``round`` and ``cid`` now, on
    the importing thread, before any worker binds them.

    structlog makes a key's `ContextVar` the first time the key is bound,
    without a lock: on a free-threaded build two workers binding ``cid`` at
    once each made one, and the worker whose variable was replaced failed its
    client on the reset ("Token ... was created by a different ContextVar").
    """
    structlog.contextvars.reset_contextvars(
        **structlog.contextvars.bind_contextvars(round=None, cid=None)
    )


_prime_log_context()


class JobWork(Protocol):
    """The executor-facing form of client work: the user's work plus a per-job
    argument computed by the coordinator (e.g. a BlazeFL client config)."""

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class ClientJob:
    """One client's work order for one round."""

    round: int
    slot: int
    cid: int
    device: str
    state: ClientState
    arg: Any = None
    #: check the update for NaN/inf on the worker, right after the work
    #: returns (the engine sets it where nothing transforms the update before
    #: its own check would run; see `blazefl.sim._finite`)
    check_finite: bool = False


@dataclass(frozen=True, slots=True)
class ClientFailure:
    """Why one client produced no result, in a form that crosses processes.

    ``kind`` is "error" (the work raised), "timeout" (it ran past its
    per-client timeout), "worker_died" (its worker process exited) or
    "rejected" (the coordinator refused its update). ``type`` is the class
    name of the exception; `exception` rebuilds a catchable `ClientError`.
    """

    kind: FailureKind
    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"

    def exception(self) -> ClientError:
        """The failure as an exception to raise, catch or ``match`` on.

        The class follows the kind: `ClientTimeoutError`, `WorkerDiedError`,
        `UpdateRejectedError` (`NonFiniteUpdateError` for NaN/inf,
        `PayloadModifiedError` for a write into the payload) or, for an
        exception the client's work raised, `ClientError`. Where the original
        exception was another class (a client's ``KeyError``, the
        ``ConfigurationError`` a handler's ``check_uplink`` raised),
        ``type_name`` names it and the message starts with it.
        """
        known = _FRAMEWORK_ERRORS.get(self.type)
        if known is not None and known[1] == self.kind:
            return known[0](self.message)
        cls = _BY_KIND.get(self.kind, ClientError)
        return cls(f"{self.type}: {self.message}", type_name=self.type)


@dataclass(slots=True)
class JobOutcome:
    """What came back for one job: a result or an error, never both."""

    slot: int
    cid: int
    worker: str
    seconds: float
    result: Any = None
    error: ClientFailure | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    state: ClientState | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    #: whether the worker checked ``result`` for NaN/inf (``job.check_finite``);
    #: ``refused`` is then its verdict, which the engine applies in its place
    checked: bool = False
    refused: ClientFailure | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def error_info(exc: BaseException) -> ClientFailure:
    """Capture an exception as plain text (type, message, formatted traceback).

    The kind follows from the type: the framework's own `ClientError`
    subclasses keep theirs, anything else the work raised is an "error".
    """
    known = _FRAMEWORK_ERRORS.get(type(exc).__name__)
    return ClientFailure(
        kind=known[1] if known is not None and isinstance(exc, known[0]) else "error",
        type=type(exc).__qualname__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def recorded(cls: type[ClientError], message: str, detail: str = "") -> ClientFailure:
    """A failure the framework records itself (a timeout, a dead worker, a
    refused update): the kind follows from ``cls``; ``detail`` stands where a
    traceback would."""
    return ClientFailure(
        _FRAMEWORK_ERRORS[cls.__name__][1], cls.__name__, message, detail
    )


def refusal(cid: int, result: Any) -> ClientFailure | None:
    """Why ``result`` must not be aggregated, or None when it is finite.

    An update the check cannot look through is refused too; whatever goes
    wrong here fails this client's slot, never the round.
    """
    try:
        bad = nonfinite(result)
    except Exception as exc:
        return recorded(
            UpdateRejectedError,
            f"client {cid} sent an update that cannot be checked for NaN or "
            f"infinite values: {exc}",
            "".join(traceback.format_exception(exc)),
        )
    if bad is None:
        return None
    # A diverged client must not poison the global model: reject its update
    # like any other failure (the policy decides).
    return recorded(
        NonFiniteUpdateError,
        f"client {cid} sent an update with NaN or infinite values in {bad}",
    )


def execute_job(
    work: JobWork,
    job: ClientJob,
    payload: Any,
    *,
    stop_event: StopFlag,
    cache: dict[str, Any],
    worker: str,
    make_logger: Callable[[ClientJob], Any] | None = None,
    contain_exits: bool | None = None,
    private_state: bool = False,
) -> JobOutcome:
    """Run one client's work on the calling worker and capture what happened.

    Client errors become data (an `ClientFailure`), never exceptions: the
    coordinator decides what a failure means for the round.

    ``payload`` is the worker's `PayloadCopy` of the round's payload, lent to
    the client and checked for writes afterwards (a write fails the client
    with `PayloadModifiedError`); a plain payload is copied for this one
    client. ``contain_exits``: whether a ``KeyboardInterrupt`` or
    ``SystemExit`` the work raises is a failed client too. By default it is
    everywhere but on the main thread, the only one Ctrl-C and signal handlers
    reach: there it may be the user's own Ctrl-C, which must stop the caller
    (the inline executor). ``private_state``: the job arrived as a copy (a
    process worker unpickled it), so its state needs no copy of its own
    before the work may change it.
    """
    lender = payload if isinstance(payload, PayloadCopy) else PayloadCopy(payload)
    if contain_exits is None:
        contain_exits = threading.current_thread() is not threading.main_thread()
    caught: tuple[type[BaseException], ...] = (
        (Exception, KeyboardInterrupt, SystemExit) if contain_exits else (Exception,)
    )
    # The work may change its state; the committed one must not change
    # unless the round commits (a copy of state a model in size, for SCAFFOLD).
    state = job.state if private_state else job.state.copy()
    ctx = ClientContext(
        cid=job.cid,
        round=job.round,
        slot=job.slot,
        device=job.device,
        # Generators are built when the work first touches them, and only
        # those it touched are captured again (see `LazyRNGSuite`).
        rng=LazyRNGSuite(state.rng),
        state=state.data,
        stop_event=stop_event,
        log=_LazyLogger(job, make_logger),
        cache=cache,
        worker=worker,
    )
    start = time.perf_counter()

    def failed(error: ClientFailure) -> JobOutcome:
        return JobOutcome(
            slot=job.slot,
            cid=job.cid,
            worker=worker,
            seconds=time.perf_counter() - start,
            error=error,
            metrics=dict(ctx.metrics),
        )

    try:
        lent, seal = lender.lend()
    except Exception as exc:  # e.g. a payload nested past the walker's limit
        return failed(error_info(exc))
    # Tokens, not `bound_contextvars`: resetting restores whatever was bound
    # before, without reading the whole context first.
    tokens = structlog.contextvars.bind_contextvars(round=job.round, cid=job.cid)
    try:
        result = work(ctx, lent, job.arg)
    except caught as exc:
        written = lender.written(seal)
        if written is not None:
            return failed(_payload_written(job.cid, written, exc))
        return failed(error_info(exc))
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    written = lender.written(seal)
    if written is not None:
        return failed(_payload_written(job.cid, written))
    outcome = JobOutcome(
        slot=job.slot,
        cid=job.cid,
        worker=worker,
        seconds=time.perf_counter() - start,
        result=result,
        metrics=dict(ctx.metrics),
        state=ClientState(ctx.rng.get_state(), ctx.state),
    )
    if job.check_finite:
        # Here, in parallel with the other workers, not on the coordinator's
        # thread; the engine applies the verdict where its own check stands.
        outcome.checked, outcome.refused = True, refusal(job.cid, result)
    return outcome


class _LazyLogger:
    """``ctx.log``: the client's logger bound to ``round`` and ``cid``, built on
    its first use (most work never logs; binding costs a few microseconds)."""

    __slots__ = ("_job", "_log", "_make")

    def __init__(self, job: ClientJob, make: Callable[[ClientJob], Any] | None) -> None:
        self._job, self._make, self._log = job, make, None

    def _bound(self) -> Any:
        if self._log is None:
            job = self._job
            self._log = (
                self._make(job)
                if self._make is not None
                else structlog.get_logger("blazefl.client").bind(
                    round=job.round, cid=job.cid
                )
            )
        return self._log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bound(), name)

    def __repr__(self) -> str:
        return repr(self._bound())


def _payload_written(
    cid: int, what: str, raised: BaseException | None = None
) -> ClientFailure:
    then = (
        ""
        if raised is None
        else f" (it then raised {type(raised).__qualname__}: {raised})"
    )
    return recorded(
        PayloadModifiedError,
        f"client {cid} wrote into the round's payload: {what}{then}. The payload "
        "is lent to every client of the round and must not change: copy a tensor "
        "before changing it (t = t.clone())",
        "" if raised is None else "".join(traceback.format_exception(raised)),
    )
