"""One synchronous round, as `Simulation.run_round` runs it.

Run the sampled clients on the executor; file each outcome in its slot (and,
when the handler folds, fold the completed prefix of slots into its aggregate
on a thread of its own while the other clients train); apply the failure
policy; then, shielded from cancellation, feed the results to the handler in
slot order, commit the clients' new states and (with simulated
time) move the virtual clock to the round's end. Until that last step nothing
is changed, so a cancelled, timed-out or failed round leaves the simulation
exactly as it was (a fold of such a round is discarded).
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

from blazefl._exceptions import RoundFailedError
from blazefl.sim._buffer import PrefixFold
from blazefl.sim._engine import OnOutcome, RoundRunner, check_cids
from blazefl.sim._events import (
    Event,
    RoundAborted,
    RoundFinished,
    RoundStarted,
    RoundTimed,
)
from blazefl.sim._gil import gil_enabled
from blazefl.sim._jobs import JobOutcome
from blazefl.sim._policy import RoundPolicy
from blazefl.sim._results import ClientReport, RoundResult, aggregate_metrics
from blazefl.simtime._sync import RoundPlan

__all__ = ["SyncRound", "run_sync_round", "sample_round"]

if TYPE_CHECKING:
    from blazefl.sim._simulation import Simulation


@dataclass(frozen=True)
class SyncRound:
    """What one synchronous round needs of its simulation."""

    runner: RoundRunner
    policy: RoundPolicy
    described: Mapping[str, Any]
    emit: Callable[[Event], None]
    on_outcome: OnOutcome
    #: ``aggregate(index, packages, partial, fold) -> summary``, in a thread
    aggregate: Callable[[int, list[Any], bool, PrefixFold | None], dict[str, Any]]
    #: called between the commit and the round's last events (the GIL check)
    after_commit: Callable[[], None]
    #: ``start_fold(slots)``: the round's fold, or None (collect, then aggregate)
    start_fold: Callable[[int], PrefixFold | None] = lambda slots: None

    async def run(
        self,
        index: int,
        cids: list[int],
        payload: Any,
        *,
        plan: RoundPlan | None,
        round_timeout: float | None,
        on_commit: Callable[[], None],
    ) -> RoundResult:
        fold = self.start_fold(len(cids))
        try:
            return await self._run(
                index, cids, payload, fold, plan, round_timeout, on_commit
            )
        finally:
            if fold is not None:
                fold.discard()  # a no-op once the round is applied

    async def _run(
        self,
        index: int,
        cids: list[int],
        payload: Any,
        fold: PrefixFold | None,
        plan: RoundPlan | None,
        round_timeout: float | None,
        on_commit: Callable[[], None],
    ) -> RoundResult:
        executor, workers = self.described["executor"], self.described["workers"]
        self.emit(RoundStarted(index, tuple(cids), executor, workers))
        start = time.perf_counter()
        on_outcome = self.on_outcome
        if fold is not None:
            on_outcome = partial(_fold_then, fold, self.on_outcome)
        scope = anyio.fail_after(round_timeout) if round_timeout else nullcontext()
        try:
            with scope:
                outcomes = await self.runner.run(index, payload, cids, on_outcome)
        except TimeoutError:
            self.emit(RoundAborted(index, f"round timeout ({round_timeout}s)"))
            raise
        except anyio.get_cancelled_exc_class():
            self.emit(RoundAborted(index, "cancelled"))
            raise
        failed = [o for o in outcomes if not o.ok]
        survivors = [o for o in outcomes if o.ok]
        reason = self.policy.reject_reason(failed, survivors)
        if reason is None and plan is not None and not survivors:
            reason = (
                f"no sampled client finished in time ({len(plan.stragglers)} "
                f"stragglers, {len(plan.offline)} went offline); raise the "
                "deadline or the over-selection"
            )
        if reason is not None:
            self.emit(RoundAborted(index, reason))
            raise RoundFailedError(
                f"round {index}: {reason}; nothing was applied",
                tuple(o.error for o in failed),
            )
        with anyio.CancelScope(shield=True):
            summary = await anyio.to_thread.run_sync(
                self.aggregate,
                index,
                [o.result for o in survivors],
                bool(failed) or (plan is not None and plan.partial),
                fold,
            )
            self.runner.commit(survivors, index + 1)
            on_commit()
        result = RoundResult(
            round=index,
            cids=tuple(cids),
            clients=tuple(
                ClientReport(o.slot, o.cid, o.worker, o.seconds, o.metrics, o.error)
                for o in outcomes
            ),
            seconds=time.perf_counter() - start,
            metrics=aggregate_metrics([o.metrics for o in survivors]),
            summary=summary,
            virtual_time=None if plan is None else plan.end,
            stragglers=() if plan is None else plan.stragglers + plan.offline,
        )
        self.after_commit()
        if plan is not None:
            self.emit(_timed_event(index, plan, survivors))
        self.emit(
            RoundFinished(
                round=index,
                seconds=result.seconds,
                clients=len(outcomes),
                failed=len(failed),
                metrics=result.metrics,
                summary=summary,
                executor=executor,
                workers=workers,
                gil_enabled=gil_enabled(),
            )
        )
        return result


def _fold_then(fold: PrefixFold, on_outcome: OnOutcome, outcome: JobOutcome) -> None:
    fold.offer(outcome)
    on_outcome(outcome)


def _timed_event(
    index: int, plan: RoundPlan, survivors: list[JobOutcome]
) -> RoundTimed:
    finish = dict(zip(plan.kept, plan.finish, strict=True))
    return RoundTimed(
        index,
        plan.start,
        plan.end,
        tuple(o.cid for o in survivors),
        tuple(finish[o.cid] for o in survivors),
        plan.stragglers,
        plan.offline,
        0,
        0.0,
        0,
    )


# -- as a Simulation runs it ---------------------------------------------


def sample_round(sim: Simulation[Any, Any]) -> tuple[list[int], Any]:
    """The round's clients and payload (or its plan on the virtual clock)."""
    if sim._time is not None:
        payload = sim.handler.downlink_package()
        plan = sim._time.plan_round(payload)
        sim._time.plan = plan
        return list(plan.kept), payload
    cids = check_cids(sim.handler.sample_clients())
    sim._policy.check_sampled(len(cids))
    return cids, sim.handler.downlink_package()


async def run_sync_round(
    sim: Simulation[Any, Any], cids: list[int], payload: Any
) -> RoundResult:
    """Simulation ``sim``'s next synchronous round, of ``cids``."""
    plan = None if sim._time is None else sim._time.plan
    step = SyncRound(
        sim._runner,
        sim._policy,
        sim.executor.describe(),
        emit=sim._emit,
        on_outcome=sim._on_outcome,
        aggregate=sim._aggregate,
        after_commit=lambda: sim._gil.check(sim._log),
        start_fold=sim._handler.start_fold,
    )
    return await step.run(
        sim._round,
        cids,
        payload,
        plan=plan,
        round_timeout=sim._round_timeout,
        on_commit=partial(_commit, sim),
    )


def _commit(sim: Simulation[Any, Any]) -> None:
    sim._pending = None
    sim._round += 1
    if sim._time is not None and sim._time.plan is not None:
        sim._time.clock.advance_to(sim._time.plan.end)
        sim._time.plan = None
