"""The engine: run one round's sampled clients on an executor.

This is the only code that schedules clients. `Simulation.run_round` and the
BlazeFL trainers' ``local_process`` both call `RoundRunner.run`, so
determinism, timeouts and failure capture exist once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import anyio

from blazefl._exceptions import ClientTimeoutError, ConfigurationError
from blazefl._validate import check_number
from blazefl.sim._adapters import Adapter, check_executor, metrics_of
from blazefl.sim._buffer import ResultBuffer
from blazefl.sim._executors._base import Executor, RoundSession
from blazefl.sim._jobs import (
    ClientJob,
    JobOutcome,
    error_info,
    recorded,
    refusal,
)
from blazefl.sim._states import ClientStateStore

__all__ = ["CID_BOUND", "RoundRunner", "check_cids"]

#: Client ids are ints in [0, CID_BOUND): `derive_seed` takes key elements
#: below 2**32, so every store (in memory or SQLite) refuses the same ids.
CID_BOUND = 2**32

OnOutcome = Callable[[JobOutcome], None]


class _NoScope:
    """Stands for the cancel scope of a client without a timeout: entering an
    anyio scope costs microseconds per client for a deadline that never comes."""

    cancelled_caught = False

    def __enter__(self) -> _NoScope:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SCOPE = _NoScope()


def check_cids(cids: Any) -> list[int]:
    """Validate a round's sampled client ids: non-empty, ints in [0, 2**32),
    no repeats."""
    try:
        out = list(cids)
    except TypeError:
        raise ConfigurationError(
            f"sample_clients() must return a list of client ids, got {cids!r}"
        ) from None
    if not out:
        raise ConfigurationError("sample_clients() returned no clients")
    for cid in out:
        if isinstance(cid, bool) or not isinstance(cid, int) or cid < 0:
            raise ConfigurationError(
                f"sample_clients() returned {cid!r}; client ids must be ints >= 0"
            )
        if cid >= CID_BOUND:
            raise ConfigurationError(
                f"sample_clients() returned {cid}; client ids must be below 2**32 "
                "(each names a stream of `derive_seed` and a row of the on-disk "
                "state store)"
            )
    if len(set(out)) != len(out):
        seen: set[int] = set()
        dupes = sorted({c for c in out if c in seen or seen.add(c)})  # type: ignore[func-returns-value]
        raise ConfigurationError(
            f"sample_clients() returned duplicate client ids {dupes}; each sampled "
            "client must be distinct within a round"
        )
    return out


class RoundRunner:
    """Runs rounds of client work on one executor, keeping client states.

    States of the clients that succeed are returned with their outcomes and
    only become the clients' states when the caller commits them, so an
    aborted round changes nothing.
    """

    def __init__(
        self,
        adapter: Adapter,
        executor: Executor,
        states: ClientStateStore,
        *,
        client_timeout: float | None = None,
        check_uplink: Callable[[Any], None] | None = None,
    ) -> None:
        if client_timeout is not None:
            client_timeout = check_number(
                "client_timeout", client_timeout, unit="seconds"
            )
        check_executor(adapter, executor)
        self.adapter = adapter
        self.executor = executor
        self.states = states
        self.client_timeout = client_timeout
        self.check_uplink = check_uplink
        #: whether workers check updates for NaN/inf themselves: only where
        #: the adapter's ``finish`` does not rebuild the update first
        self.check_on_workers = adapter.finish is None

    async def run(
        self,
        index: int,
        payload: Any,
        cids: Sequence[int],
        on_outcome: OnOutcome | None = None,
    ) -> list[JobOutcome]:
        """Run every sampled client once; outcomes come back in slot order."""
        adapter = self.adapter
        jobs = [
            ClientJob(
                round=index,
                slot=slot,
                cid=cid,
                device=adapter.device_of(cid),
                state=state,
                arg=adapter.job_arg(cid, slot) if adapter.job_arg else None,
                check_finite=self.check_on_workers,
            )
            for slot, (cid, state) in enumerate(
                zip(cids, self.states.get_many(cids), strict=True)
            )
        ]
        return await self.run_jobs(index, payload, jobs, on_outcome)

    async def run_jobs(
        self,
        index: int,
        payload: Any,
        jobs: Sequence[ClientJob],
        on_outcome: OnOutcome | None = None,
    ) -> list[JobOutcome]:
        """Run prepared jobs (slots 0..n-1) in one executor session.

        ``index`` names the session (the executor shares ``payload`` with its
        workers once per index); outcomes come back in slot order.
        """
        buffer: ResultBuffer[JobOutcome] = ResultBuffer([job.cid for job in jobs])
        # Admit no more clients than there are workers, so a client's timeout
        # counts its own running time, not its wait for a free worker: one
        # lane per worker, each taking the next job in slot order, so clients
        # start in slot order. (Lanes, not a task per client behind a
        # semaphore: a task and a semaphore round trip per client were a
        # tenth of a millisecond of the fixed cost per client.)
        pending = iter(jobs)
        lanes = min(self.executor.max_workers, len(jobs))

        def finish(job: ClientJob, outcome: JobOutcome) -> None:
            self._finish(job, outcome, buffer, on_outcome)

        async with self.executor.round(index, payload) as session:
            session.expect(jobs)
            if self.client_timeout is None and session.pulls:
                # No timeout to clock per client: the workers take the jobs
                # themselves, with no round trip through this loop in between.
                await session.run_all(jobs, finish)
            else:
                async with anyio.create_task_group() as tg:
                    for _ in range(lanes):
                        tg.start_soon(self._lane, session, pending, finish)
        return list(buffer)

    def commit(self, outcomes: Sequence[JobOutcome], rounds: int) -> None:
        """Make the successful clients' new states their states, all at once.

        ``rounds`` is the number of committed rounds once this one is.
        """
        self.states.commit_round(
            rounds,
            [
                (outcome.cid, outcome.state)
                for outcome in outcomes
                if outcome.ok and outcome.state is not None
            ],
        )

    async def _lane(
        self,
        session: RoundSession,
        pending: Iterator[ClientJob],
        finish: Callable[[ClientJob, JobOutcome], None],
    ) -> None:
        for job in pending:
            finish(job, await self._one(session, job))

    async def _one(self, session: RoundSession, job: ClientJob) -> JobOutcome:
        start = time.perf_counter()
        timeout = self.client_timeout
        scope: anyio.CancelScope | _NoScope = (
            anyio.move_on_after(timeout) if timeout is not None else _NO_SCOPE
        )
        with scope:
            try:
                outcome = await session.run(job)
            except Exception as exc:
                # The executor itself failed for this client (e.g. a
                # replacement worker could not start): that is a failed
                # slot too, reported with its traceback, not a crash.
                outcome = JobOutcome(
                    slot=job.slot,
                    cid=job.cid,
                    worker="",
                    seconds=time.perf_counter() - start,
                    error=error_info(exc),
                )
        if scope.cancelled_caught:
            return JobOutcome(
                slot=job.slot,
                cid=job.cid,
                worker="",
                seconds=time.perf_counter() - start,
                error=recorded(
                    ClientTimeoutError,
                    f"client {job.cid} ran past its {self.client_timeout}s timeout "
                    "and was stopped",
                ),
            )
        return outcome

    def _finish(
        self,
        job: ClientJob,
        outcome: JobOutcome,
        buffer: ResultBuffer[JobOutcome],
        on_outcome: OnOutcome | None,
    ) -> None:
        """Check a finished client's update and put it in its slot."""
        if outcome.ok:
            if self.adapter.finish is not None:
                outcome.checked = False  # what a worker checked is rebuilt now
                try:
                    outcome.result = self.adapter.finish(job.slot, outcome.result)
                except Exception as exc:
                    outcome.result, outcome.state = None, None
                    outcome.error = error_info(exc)
            if outcome.ok and self.check_uplink is not None:
                # The handler's own check (shapes and dtypes against the
                # global model): a malformed update is a failed slot, caught
                # here in the parent before anything is aggregated.
                try:
                    self.check_uplink(outcome.result)
                except Exception as exc:
                    outcome.result, outcome.state = None, None
                    outcome.error = replace(error_info(exc), kind="rejected")
            if outcome.ok and (
                refused := outcome.refused
                if outcome.checked
                else refusal(job.cid, outcome.result)
            ):
                outcome.result, outcome.state = None, None
                outcome.error = refused
            if not outcome.metrics and outcome.ok:
                outcome.metrics = metrics_of(outcome.result)
        buffer.put(job.slot, job.cid, outcome)
        if on_outcome is not None:
            on_outcome(outcome)
