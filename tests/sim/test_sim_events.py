"""The progress event stream: what it yields, in which order, and when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from sim_fakes import SEED, drain

from blazefl import RoundFailedError
from blazefl.sim import (
    ClientFailed,
    ClientFinished,
    Event,
    EventStream,
    RoundAborted,
    RoundFinished,
    RoundStarted,
    Simulation,
    ThreadExecutor,
    gil_enabled,
)
from fakes import FedAvgHandler, Misbehave, ScriptedWork, quick_processes

pytestmark = pytest.mark.anyio


async def test_round_events_arrive_live_in_order_and_the_stream_ends() -> None:
    """RoundStarted, one ClientFinished per client, RoundFinished; then the end."""
    handler = FedAvgHandler(per_round=4, rounds=2)
    sim = Simulation(
        handler,
        ScriptedWork(max_sleep=0.02),
        executor=ThreadExecutor(2),
        seed=SEED,
    )
    events: list[Event] = []
    ended = anyio.Event()

    async def consume(stream: EventStream) -> None:
        async with stream:
            events.extend([event async for event in stream])
        ended.set()

    async with anyio.create_task_group() as tg:
        async with sim:
            tg.start_soon(consume, sim.events())
            results = await sim.run()
        with anyio.fail_after(5):
            await ended.wait()  # the stream ended because the sim closed

    assert len(events) == 2 * (1 + 4 + 1)
    for result, chunk in zip(results, (events[:6], events[6:]), strict=True):
        first, *clients, last = chunk
        assert first == RoundStarted(result.round, result.cids, "threads", 2)
        assert all(isinstance(e, ClientFinished) for e in clients)
        assert sorted((e.slot, e.cid) for e in clients) == list(enumerate(result.cids))
        for event in clients:
            report = result.clients[event.slot]
            assert event.round == result.round
            assert event.worker.startswith("thread-")
            assert event.worker == report.worker
            assert event.seconds > 0
            assert event.metrics == report.metrics
            assert event.metrics["num_samples"] == 24
        assert isinstance(last, RoundFinished)
        assert (last.round, last.clients, last.failed) == (result.round, 4, 0)
        assert last.metrics == result.metrics
        assert last.metrics["num_samples"] == 4 * 24
        assert (
            last.summary
            == result.summary
            == {"round": result.round + 1} | {"norm": result.summary["norm"]}
        )
        assert (last.executor, last.workers) == ("threads", 2)
        assert last.gil_enabled == gil_enabled()


@pytest.mark.parametrize("kind", ["threads", "processes"])
async def test_client_failed_event_carries_the_traceback(
    kind: str, tmp_path: Path
) -> None:
    """A failed client's event names it and carries its formatted traceback."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    executor = ThreadExecutor(2) if kind == "threads" else quick_processes(2)
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(handler, work, executor=executor, on_client_failure="drop")
    work.arm("raise", cid=2)
    async with sim:
        stream = sim.events()
        result = await sim.run_round()
    events = await drain(stream)
    (failed,) = [e for e in events if isinstance(e, ClientFailed)]
    assert (failed.round, failed.cid, failed.slot) == (0, 2, result.cids.index(2))
    assert failed.worker == result.clients[failed.slot].worker != ""
    assert failed.kind == "error"
    assert failed.error == "ScriptedError: scripted failure of client 2"
    assert failed.traceback.startswith("Traceback (most recent call last)")
    assert "misbehave.py" in failed.traceback
    assert failed.traceback.rstrip().endswith(
        "ScriptedError: scripted failure of client 2"
    )
    assert isinstance(events[-1], RoundFinished)
    assert events[-1].failed == 1


async def test_failed_round_emits_round_aborted_and_no_round_finished(
    tmp_path: Path,
) -> None:
    """A round rejected by its policy ends with RoundAborted giving the reason."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = Simulation(handler, work, executor=ThreadExecutor(2))
    work.arm("raise", cid=0)
    async with sim:
        stream = sim.events()
        with pytest.raises(RoundFailedError, match=r"client 0"):
            await sim.run_round()
    events = await drain(stream)
    assert isinstance(events[0], RoundStarted)
    assert not any(isinstance(e, RoundFinished) for e in events)
    aborted = events[-1]
    assert isinstance(aborted, RoundAborted)
    assert aborted.round == 0
    assert aborted.reason.startswith("1 of 3 clients failed (first: client 0")


async def test_every_subscriber_sees_the_same_events() -> None:
    """Two streams opened together receive identical event sequences."""
    handler = FedAvgHandler(per_round=3, rounds=1)
    sim = Simulation(handler, ScriptedWork(), executor=ThreadExecutor(3))
    async with sim:
        first, second = sim.events(), sim.events()
        await sim.run()
    one, two = await drain(first), await drain(second)
    assert one == two
    assert len(one) == 1 + 3 + 1


async def test_stream_opened_after_close_is_already_ended() -> None:
    """events() on a closed simulation yields nothing instead of waiting forever."""
    sim = Simulation(
        FedAvgHandler(rounds=1), ScriptedWork(), executor=ThreadExecutor(1)
    )
    async with sim:
        await sim.run()
    with anyio.fail_after(5):
        assert await drain(sim.events()) == []


async def test_stream_of_a_restarted_simulation_gets_the_new_events() -> None:
    """A simulation started again after a close streams its new rounds."""
    handler = FedAvgHandler(per_round=2, rounds=2)
    sim = Simulation(handler, ScriptedWork(), executor=ThreadExecutor(1))
    async with sim:
        await sim.run_round()
    async with sim:
        stream = sim.events()
        await sim.run_round()
    events: list[Any] = await drain(stream)
    assert [type(e).__name__ for e in events] == [
        "RoundStarted",
        "ClientFinished",
        "ClientFinished",
        "RoundFinished",
    ]
    assert events[0].round == 1
