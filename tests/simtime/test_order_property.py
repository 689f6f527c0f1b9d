"""The order of application is the virtual clock's: for random profiles and
random real completion orders, the applied updates are those sorted by
(virtual finish time, client id)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simtime_fakes import final_params, profiles, simulation

from blazefl.algorithms import FedBuff
from blazefl.sim import InlineExecutor, RoundTimed
from blazefl.sim.abc import (
    ClientJob,
    Executor,
    JobOutcome,
    JobWork,
    Placement,
    RoundSession,
    execute_job,
)
from blazefl.simtime import AsyncScheduler, ProfileSet, SimTime


@settings(max_examples=60, deadline=None)
@given(
    speeds=st.lists(st.floats(0.01, 10.0), min_size=3, max_size=25),
    concurrency=st.integers(1, 8),
    buffer=st.integers(1, 8),
    steps=st.integers(1, 12),
    seed=st.integers(0, 2**32),
)
def test_schedule_applies_in_virtual_finish_then_id_order(
    speeds: list[float], concurrency: int, buffer: int, steps: int, seed: int
) -> None:
    """Across steps, applied (finish, cid) are sorted and none is skipped."""
    n = len(speeds)
    concurrency = min(concurrency, n)
    buffer = min(buffer, concurrency)
    # Coarse speeds make ties in finish time likely: the id must break them.
    speeds = [round(s, 0) + 1.0 for s in speeds]
    p = ProfileSet(speeds, [1e9] * n, [1e9] * n, [0.0] * n)
    sched = AsyncScheduler(
        p,
        num_clients=n,
        concurrency=concurrency,
        buffer_size=buffer,
        seed=seed,
        duration=lambda cid: p[cid].compute_s_per_sample,
    )
    applied: list[tuple[float, int]] = []
    dispatched: list[tuple[float, int]] = []
    for version in range(steps):
        twin = sched.copy()
        plan = twin.plan_step(version, ())
        sched.adopt(twin)
        dispatched += [(f.finish, f.cid) for f in plan.dispatched]
        applied += [(f.finish, f.cid) for f in plan.arrivals]
        assert all(f.version <= version for f in plan.arrivals)
    assert applied == sorted(applied)
    end = applied[-1]
    assert applied == sorted(k for k in dispatched if k <= end)


class ShuffledExecutor(Executor):
    """Runs clients on threads, each after a delay from a given list: the real
    completion order is whatever the delays make it."""

    kind = "shuffled"
    placement = Placement.IN_PROCESS

    def __init__(self, delays: list[float]) -> None:
        super().__init__(max_workers=4)
        self._delays = itertools.cycle(delays)
        self._cache: dict[str, Any] = {}

    async def _start(self, work: JobWork) -> None:
        pass

    async def _close(self) -> None:
        self._cache.clear()

    @asynccontextmanager
    async def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> AsyncIterator[RoundSession]:
        yield _Session(self, work, payload)


class _Session(RoundSession):
    def __init__(self, owner: ShuffledExecutor, work: JobWork, payload: Any) -> None:
        self._owner, self._work, self._payload = owner, work, payload

    async def run(self, job: ClientJob) -> JobOutcome:
        await anyio.sleep(next(self._owner._delays))
        return await anyio.to_thread.run_sync(
            lambda: execute_job(
                self._work,
                job,
                self._payload,
                stop_event=threading.Event(),
                cache={},
                worker="shuffled",
            )
        )


def _time() -> SimTime:
    return SimTime(
        profiles(online_fraction=0.8), mode="async", buffer_size=2, concurrency=4
    )


def _run(executor: Executor) -> tuple[torch.Tensor, list[RoundTimed]]:
    server, sim = simulation(FedBuff(), executor, _time(), rounds=4)

    async def main() -> list[RoundTimed]:
        async with sim:
            stream = sim.events()
            await sim.run()
        async with stream:
            return [e async for e in stream if isinstance(e, RoundTimed)]

    return final_params(server), anyio.run(main)


_REFERENCE: dict[str, Any] = {}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(delays=st.lists(st.floats(0.0, 0.02), min_size=1, max_size=12))
def test_real_completion_order_never_decides(delays: list[float]) -> None:
    """Random real delays: same model, and updates applied by (finish, cid)."""
    if not _REFERENCE:
        _REFERENCE["run"] = _run(InlineExecutor())
    reference, ref_events = _REFERENCE["run"]
    params, events = _run(ShuffledExecutor(delays))
    assert torch.equal(params, reference)
    keys = [
        (t, c) for e in events for c, t in zip(e.applied, e.finish_times, strict=True)
    ]
    assert keys == sorted(keys)
    assert [e.applied for e in events] == [e.applied for e in ref_events]
