"""One asynchronous server update, as `Simulation.run_round` runs it in
``mode="async"``.

Plan the update on a copy of the schedule (`TimedRounds.plan_step`), which
computes every real result it needs on the executor; only then, shielded from
cancellation, apply the arrived updates to the handler in (virtual arrival
time, client id) order, commit the arrived clients' states, and adopt the
planned schedule. A failure or a cancellation before that point leaves the
simulation as it was (results already computed stay cached: they are the same
whenever they are computed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from blazefl._exceptions import RoundFailedError, SimulationFinishedError
from blazefl._prechecked import prechecked
from blazefl.sim._engine import OnOutcome, RoundRunner
from blazefl.sim._events import (
    Event,
    RoundAborted,
    RoundFinished,
    RoundStarted,
    RoundTimed,
)
from blazefl.sim._gil import gil_enabled
from blazefl.sim._results import ClientReport, RoundResult, aggregate_metrics
from blazefl.sim._timed import TimedRounds

__all__ = ["AsyncRound", "run_async_update"]

if TYPE_CHECKING:
    from blazefl.sim._simulation import Simulation


@dataclass(frozen=True)
class AsyncRound:
    """What one asynchronous update needs of its simulation."""

    timed: TimedRounds
    handler: Any
    runner: RoundRunner
    described: Mapping[str, Any]
    emit: Callable[[Event], None]
    on_outcome: OnOutcome
    summary_if_due: Callable[[int], dict[str, Any]]

    async def run(
        self,
        index: int,
        *,
        fail_round: bool,
        round_timeout: float | None,
        on_commit: Callable[[], None],
        after_commit: Callable[[], None],
    ) -> RoundResult:
        timed = self.timed
        assert timed.scheduler is not None
        if self.handler.is_stopped():
            raise SimulationFinishedError(
                f"the handler reports training is over after {index} server "
                "updates (is_stopped() is True)"
            )
        start = time.perf_counter()
        payload = await anyio.to_thread.run_sync(self.handler.downlink_package)
        scope = anyio.fail_after(round_timeout) if round_timeout else nullcontext()
        try:
            with scope:
                plan, twin = await timed.plan_step(
                    index, payload, fail_round, self.on_outcome
                )
        except RoundFailedError as exc:
            self.emit(RoundAborted(index, str(exc)))
            raise
        except TimeoutError:
            self.emit(RoundAborted(index, f"round timeout ({round_timeout}s)"))
            raise
        except anyio.get_cancelled_exc_class():
            self.emit(RoundAborted(index, "cancelled"))
            raise
        arrived = [timed.results[f.key] for f in plan.arrivals]
        cids = tuple(f.cid for f in plan.arrivals)
        executor, workers = self.described["executor"], self.described["workers"]
        self.emit(RoundStarted(index, cids, executor, workers))
        staleness = [index - f.version for f in plan.arrivals]
        entries = [
            (o.result, tau, timed.versions[f.version])
            for o, tau, f in zip(arrived, staleness, plan.arrivals, strict=True)
        ]
        with anyio.CancelScope(shield=True):
            summary = await anyio.to_thread.run_sync(self._apply, index, entries)
            self.runner.commit(arrived, index + 1)
            timed.commit_step(plan, twin)
            on_commit()
        after_commit()
        lost = tuple(f.cid for f in plan.dropped)
        result = RoundResult(
            round=index,
            cids=cids,
            clients=tuple(
                ClientReport(slot, o.cid, o.worker, o.seconds, o.metrics, o.error)
                for slot, o in enumerate(arrived)
            ),
            seconds=time.perf_counter() - start,
            metrics=aggregate_metrics([o.metrics for o in arrived]),
            summary=summary,
            virtual_time=plan.end,
            stragglers=lost,
        )
        self.emit(
            RoundTimed(
                index,
                min(f.start for f in plan.arrivals),
                plan.end,
                cids,
                tuple(f.finish for f in plan.arrivals),
                (),
                lost,
                timed.scheduler.in_flight,
                sum(staleness) / len(staleness),
                max(staleness),
            )
        )
        self.emit(
            RoundFinished(
                round=index,
                seconds=result.seconds,
                clients=len(arrived),
                failed=0,
                metrics=result.metrics,
                summary=summary,
                executor=executor,
                workers=workers,
                gil_enabled=gil_enabled(),
            )
        )
        return result

    def _apply(self, index: int, entries: list[Any]) -> dict[str, Any]:
        """Apply the arrived updates and evaluate if due; in a worker thread."""
        with prechecked():  # the engine checked each update as it arrived
            self.timed.load_stale(entries)
        return self.summary_if_due(index)


# -- as a Simulation runs it ---------------------------------------------


async def run_async_update(sim: Simulation[Any, Any]) -> RoundResult:
    """Simulation ``sim``'s next asynchronous server update."""
    assert sim._time is not None
    step = AsyncRound(
        sim._time,
        sim.handler,
        sim._runner,
        sim.executor.describe(),
        emit=sim._emit,
        on_outcome=sim._on_outcome,
        summary_if_due=sim._summary_if_due,
    )
    return await step.run(
        sim._round,
        fail_round=sim._policy.on_failure == "fail_round",
        round_timeout=sim._round_timeout,
        on_commit=partial(_advance, sim),
        after_commit=lambda: sim._gil.check(sim._log),
    )


def _advance(sim: Simulation[Any, Any]) -> None:
    sim._round += 1
