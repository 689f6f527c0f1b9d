"""One synchronous round, as `Simulation.run_round` runs it.

Run the sampled clients on the executor; file each outcome in its slot; apply
the failure policy; then, shielded from cancellation, feed the results to the
handler in slot order, commit the clients' new states and (with simulated
time) move the virtual clock to the round's end. Until that last step nothing
is changed, so a cancelled, timed-out or failed round leaves the simulation
exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from blazefl._exceptions import RoundFailedError
from blazefl.sim._engine import OnOutcome, RoundRunner
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

__all__ = ["SyncRound"]


@dataclass(frozen=True)
class SyncRound:
    """What one synchronous round needs of its simulation."""

    runner: RoundRunner
    policy: RoundPolicy
    described: Mapping[str, Any]
    emit: Callable[[Event], None]
    on_outcome: OnOutcome
    #: ``aggregate(index, packages, partial) -> summary``, run in a thread
    aggregate: Callable[[int, list[Any], bool], dict[str, Any]]
    #: called between the commit and the round's last events (the GIL check)
    after_commit: Callable[[], None]

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
        executor, workers = self.described["executor"], self.described["workers"]
        self.emit(RoundStarted(index, tuple(cids), executor, workers))
        start = time.perf_counter()
        scope = anyio.fail_after(round_timeout) if round_timeout else nullcontext()
        try:
            with scope:
                outcomes = await self.runner.run(index, payload, cids, self.on_outcome)
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
