"""Synchronous rounds on the virtual clock: deadlines, over-selection,
availability, stragglers; bitwise equal across executors and worker counts."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
import torch
from simtime_fakes import final_params, profiles, simulation

from blazefl import ConfigurationError
from blazefl.algorithms import FedAvg
from blazefl.sim import InlineExecutor, RoundTimed, ThreadExecutor
from blazefl.simtime import ProfileSet, SimTime, plan_round
from fakes import quick_processes


def _flat(n: int, speeds: list[float]) -> ProfileSet:
    return ProfileSet(speeds, [1e9] * n, [1e9] * n, [0.0] * n)


def _plan(profiles: ProfileSet, target: int, **kwargs: Any) -> Any:
    options = {"over_selection": 0.0, "deadline": None, **kwargs}
    return plan_round(
        profiles,
        0.0,
        num_clients=len(profiles),
        target=target,
        sample=lambda pool, k: sorted(pool)[:k],
        duration=lambda cid: profiles[cid].compute_s_per_sample,
        **options,
    )


def test_over_selection_keeps_the_first_k_by_finish_then_id() -> None:
    """ceil(k(1+x)) sampled; the k earliest finishers kept, ties by client id."""
    p = _flat(6, [5.0, 1.0, 3.0, 1.0, 2.0, 9.0])
    plan = _plan(p, 2, over_selection=0.5)  # ceil(2 * 1.5) = 3 sampled: 0, 1, 2
    assert plan.sampled == (0, 1, 2)
    assert plan.kept == (1, 2)
    assert plan.stragglers == (0,)
    assert plan.end == 3.0
    tie = _plan(p, 1, over_selection=3.0)  # 4 sampled; clients 1 and 3 tie at 1.0
    assert tie.kept == (1,)
    assert tie.stragglers == (0, 2, 3)


def test_deadline_drops_stragglers_and_ends_the_round_there() -> None:
    """Clients finishing after the deadline are dropped; the round waits until it."""
    p = _flat(4, [1.0, 4.0, 2.0, 8.0])
    plan = _plan(p, 4, deadline=3.0)
    assert plan.kept == (0, 2)
    assert plan.stragglers == (1, 3)
    assert plan.partial
    assert plan.end == 3.0


def test_only_online_clients_are_sampled_and_leavers_dropped() -> None:
    """Availability-aware sampling, and a client that goes offline is dropped."""
    windows = [((0.0, 100.0),), ((50.0, 100.0),), ((0.0, 0.5),), None]
    p = ProfileSet([1.0] * 4, [1e9] * 4, [1e9] * 4, [0.0] * 4, windows=windows)
    plan = _plan(p, 3)
    assert 1 not in plan.sampled
    assert plan.offline == (2,)
    assert plan.kept == (0, 3)


def test_nobody_online_waits_for_the_first_to_come_online() -> None:
    """The round starts when the first client comes online."""
    windows = [((10.0, 20.0),), ((12.0, 20.0),)]
    p = ProfileSet([1.0] * 2, [1e9] * 2, [1e9] * 2, [0.0] * 2, windows=windows)
    plan = _plan(p, 1)
    assert plan.start == 10.0
    assert plan.kept == (0,)


def _run(executor: Any, time_model: SimTime | None) -> tuple[torch.Tensor, list[Any]]:
    server, sim = simulation(FedAvg(), executor, time_model)
    results = sim.run_sync()
    return final_params(server), results


def test_profiles_without_deadline_change_no_number() -> None:
    """Timed rounds that drop nobody train exactly as plain rounds do."""
    plain, _ = _run(InlineExecutor(), None)
    timed, results = _run(InlineExecutor(), SimTime(profiles()))
    assert torch.equal(plain, timed)
    assert all(r.virtual_time is not None for r in results)
    assert [r.virtual_time for r in results] == sorted(r.virtual_time for r in results)


def _deadline_model() -> SimTime:
    # The 12 clients take 0.22-0.76 virtual s; a 0.4 s deadline cuts some.
    return SimTime(profiles(online_fraction=0.7), deadline=0.4, over_selection=0.5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ThreadExecutor(1),
        lambda: ThreadExecutor(2),
        lambda: quick_processes(2),
    ],
    ids=["threads-1", "threads-2", "processes-2"],
)
def test_deadline_rounds_are_bitwise_equal_across_executors(make: Any) -> None:
    """Deadline + over-selection runs end bitwise equal, whatever the real order."""
    reference, ref_results = _run(InlineExecutor(), _deadline_model())
    assert any(r.stragglers for r in ref_results)  # the deadline did bite
    params, results = _run(make(), _deadline_model())
    assert torch.equal(reference, params)
    assert [r.cids for r in results] == [r.cids for r in ref_results]
    assert [r.virtual_time for r in results] == [r.virtual_time for r in ref_results]


def test_round_timed_events_and_run_until() -> None:
    """run_until stops at the virtual time; every round reports its clock."""
    _, sim = simulation(FedAvg(), InlineExecutor(), _deadline_model(), rounds=50)
    seen: list[RoundTimed] = []

    async def main() -> None:
        async with sim:
            stream = sim.events()
            await sim.run_until(2.0)
        async with stream:  # ended by the close: holds the whole run
            seen.extend([e async for e in stream if isinstance(e, RoundTimed)])

    anyio.run(main)
    assert sim.now is not None
    assert sim.now >= 2.0
    assert seen
    assert seen[-1].virtual_time == sim.now
    assert len(seen) == sim.round
    assert sim.round < 50
    assert all(e.virtual_time - e.virtual_start <= 0.4 + 1e-12 for e in seen)


def test_now_is_none_without_profiles() -> None:
    """Without simulated time there is no clock and run_until refuses."""
    _, sim = simulation(FedAvg(), InlineExecutor(), None)
    assert sim.now is None

    async def main() -> None:
        async with sim:
            await sim.run_until(1.0)

    with pytest.raises(ConfigurationError, match=r"run_until\(\) needs simulated time"):
        anyio.run(main)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf])
def test_deadline_must_be_positive(bad: float) -> None:
    """A deadline <= 0 (or infinite) is refused, naming it."""
    with pytest.raises(ConfigurationError, match=r"deadline must be a finite number"):
        SimTime(profiles(), deadline=bad)


def test_negative_over_selection_is_refused() -> None:
    """over_selection must be >= 0."""
    with pytest.raises(ConfigurationError, match=r"over_selection must be"):
        SimTime(profiles(), over_selection=-0.1)


def test_profiles_must_cover_the_federation() -> None:
    """A profile set smaller than the federation is refused at construction."""
    small = SimTime(ProfileSet([0.1], [1.0], [1.0], [0.0]))
    with pytest.raises(ConfigurationError, match=r"clients 1\.\.11 have no profile"):
        simulation(FedAvg(), InlineExecutor(), small)


def test_deadline_run_resumes_bitwise(tmp_path: Any) -> None:
    """Checkpoint after round 2, resume in a fresh simulation: same end, same clock."""
    from blazefl.sim import load_checkpoint, save_checkpoint

    reference, ref_results = _run(InlineExecutor(), _deadline_model())
    path = tmp_path / "ckpt"

    async def first() -> None:
        _, sim = simulation(FedAvg(), ThreadExecutor(2), _deadline_model())
        async with sim:
            await sim.run(2)
            save_checkpoint(path, sim.state_dict())

    anyio.run(first)
    server, sim = simulation(FedAvg(), InlineExecutor(), _deadline_model())
    sim.load_state_dict(load_checkpoint(path))
    assert sim.now == ref_results[1].virtual_time
    results = sim.run_sync()
    assert torch.equal(final_params(server), reference)
    assert [r.virtual_time for r in results] == [
        r.virtual_time for r in ref_results[2:]
    ]


def test_plain_checkpoint_does_not_resume_timed() -> None:
    """A checkpoint without simulated time is refused by a timed simulation."""
    _, plain = simulation(FedAvg(), InlineExecutor(), None)
    state = plain.state_dict()
    _, timed = simulation(FedAvg(), InlineExecutor(), _deadline_model())
    with pytest.raises(ConfigurationError, match="written without simulated time"):
        timed.load_state_dict(state)
