"""The messages between the coordinator and its executors, and the one function
that runs a job on a worker.

Every executor (inline, threads, processes) ends up calling `execute_job` on
its worker, so how a context is built, how errors are captured and how the
client's state comes back exists exactly once.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog
import structlog.contextvars

from blazefl.reproducibility import RNGSuite
from blazefl.sim._context import ClientContext, ClientState, StopFlag

__all__ = ["ClientJob", "ClientFailure", "JobOutcome", "JobWork", "execute_job"]

FailureKind = Literal["error", "timeout", "worker_died", "cancelled"]


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


@dataclass(frozen=True, slots=True)
class ClientFailure:
    """Why one client produced no result, in a form that crosses processes.

    ``kind`` is "error" (the work raised), "timeout" (it ran past its
    per-client timeout) or "worker_died" (its worker process exited).
    """

    kind: FailureKind
    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


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

    @property
    def ok(self) -> bool:
        return self.error is None


def error_info(exc: BaseException, kind: FailureKind = "error") -> ClientFailure:
    """Capture an exception as plain text (type, message, formatted traceback)."""
    return ClientFailure(
        kind=kind,
        type=type(exc).__qualname__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
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
) -> JobOutcome:
    """Run one client's work on the calling worker and capture what happened.

    Client errors become data (an `ClientFailure`), never exceptions: the
    coordinator decides what a failure means for the round.
    """
    state = job.state.copy()
    log = (
        make_logger(job)
        if make_logger is not None
        else structlog.get_logger("blazefl.client").bind(round=job.round, cid=job.cid)
    )
    ctx = ClientContext(
        cid=job.cid,
        round=job.round,
        slot=job.slot,
        device=job.device,
        rng=RNGSuite.from_state(state.rng),
        state=state.data,
        stop_event=stop_event,
        log=log,
        cache=cache,
        worker=worker,
    )
    start = time.perf_counter()
    try:
        with structlog.contextvars.bound_contextvars(round=job.round, cid=job.cid):
            result = work(ctx, payload, job.arg)
    except Exception as exc:
        return JobOutcome(
            slot=job.slot,
            cid=job.cid,
            worker=worker,
            seconds=time.perf_counter() - start,
            error=error_info(exc),
            metrics=dict(ctx.metrics),
        )
    return JobOutcome(
        slot=job.slot,
        cid=job.cid,
        worker=worker,
        seconds=time.perf_counter() - start,
        result=result,
        metrics=dict(ctx.metrics),
        state=ClientState(ctx.rng.get_state(), ctx.state),
    )
