"""Round and client timeouts: a timed-out round applies nothing, a client fails."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import torch
from sim_fakes import OFF_LOOP, drain
from sim_fakes import simulation as _sim

from blazefl import RoundFailedError
from blazefl.sim import (
    ClientFailure,
    RoundAborted,
    Simulation,
    ThreadExecutor,
)
from fakes import (
    FedAvgHandler,
    Misbehave,
    ScriptedWork,
    active_clients,
)

pytestmark = pytest.mark.anyio


async def test_fail_after_around_run_round_applies_nothing(tmp_path: Path) -> None:
    """anyio.fail_after around run_round raises TimeoutError; the rerun commits."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    start = handler.params.clone()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, "threads")
    work.arm("hang")
    async with sim:
        with pytest.raises(TimeoutError), anyio.fail_after(0.3):
            await sim.run_round()
        assert active_clients() == 0
        assert torch.equal(handler.params, start)
        assert (sim.round, handler.load_calls) == (0, 0)
        work.disarm("hang")
        result = await sim.run_round()
    assert result.round == 0
    assert handler.round == 1


@pytest.mark.parametrize("kind", OFF_LOOP)
async def test_round_timeout_raises_and_applies_nothing(
    kind: str, tmp_path: Path
) -> None:
    """round_timeout aborts the whole round with TimeoutError, nothing applied."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    start = handler.params.clone()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, kind, round_timeout=0.4)
    work.arm("hang")
    async with sim:
        stream = sim.events()
        with anyio.fail_after(10):
            with pytest.raises(TimeoutError):
                await sim.run_round()
        assert torch.equal(handler.params, start)
        assert (sim.round, handler.load_calls) == (0, 0)
        work.disarm("hang")
        result = await sim.run_round()
    assert result.round == 0
    assert handler.sample_calls == 1
    (aborted,) = [e for e in await drain(stream) if isinstance(e, RoundAborted)]
    assert aborted.round == 0
    assert aborted.reason == "round timeout (0.4s)"


@pytest.mark.parametrize("kind", OFF_LOOP)
async def test_client_timeout_fails_the_round_under_fail_round(
    kind: str, tmp_path: Path
) -> None:
    """A client past client_timeout is a 'timeout' failure that aborts the round."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    start = handler.params.clone()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, kind, client_timeout=0.3)
    work.arm("hang", cid=1)
    async with sim:
        with pytest.raises(
            RoundFailedError, match=r"^round 0: 1 of 3 clients failed \(first: client 1"
        ) as info:
            await sim.run_round()
        (failure,) = info.value.failures
        assert isinstance(failure, ClientFailure)
        assert failure.kind == "timeout"
        assert failure.type == "ClientTimeoutError"
        assert "client 1 ran past its 0.3s timeout" in failure.message
        assert work.stopped(0) == {1}  # its stop flag was set
        assert torch.equal(handler.params, start)
        assert (sim.round, handler.load_calls) == (0, 0)
        work.disarm("hang", cid=1)
        result = await sim.run_round()
    assert result.failures == ()
    assert handler.round == 1


@pytest.mark.parametrize("kind", OFF_LOOP)
async def test_client_timeout_drops_the_client_under_drop(
    kind: str, tmp_path: Path
) -> None:
    """Under drop, a timed-out client is a failed slot and the rest are aggregated."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(
        handler,
        work,
        kind,
        client_timeout=0.3,
        on_client_failure="drop",
        min_clients=2,
    )
    work.arm("hang", cid=1)
    async with sim:
        result = await sim.run_round()
    (failed,) = result.failures
    assert failed.cid == 1
    assert failed is result.clients[result.cids.index(1)]
    assert failed.failure is not None
    assert failed.failure.kind == "timeout"
    assert result.metrics["num_samples"] == 2 * 24
    assert (handler.round, handler.load_calls) == (1, 1)  # one load_round call


async def test_client_timeout_does_not_count_the_wait_for_a_worker() -> None:
    """client_timeout measures a client's own run, not its queueing for a worker."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=1)
    sim = Simulation(
        handler,
        ScriptedWork(busy=0.15),
        executor=ThreadExecutor(1),
        client_timeout=0.4,
    )
    async with sim:
        result = await sim.run_round()
    assert result.failures == ()
    assert result.seconds > 0.4
