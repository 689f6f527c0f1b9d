"""Client errors are data: the failure policy decides what a round does with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sim_fakes import EXECUTORS, SEED
from sim_fakes import simulation as _sim

from blazefl import RoundFailedError
from blazefl.sim import (
    ClientFailure,
    Simulation,
    ThreadExecutor,
)
from blazefl.sim._results import aggregate_metrics
from fakes import FedAvgHandler, Misbehave, ScriptedWork, sampled

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", sorted(EXECUTORS))
async def test_client_error_fails_the_round_and_changes_nothing(
    kind: str, tmp_path: Path, reference: dict[str, Any]
) -> None:
    """Under fail_round an error aborts the round unapplied; the rerun is exact."""
    cid = sampled(FedAvgHandler(), 1)[2]
    handler = FedAvgHandler()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, kind)
    async with sim:
        await sim.run_round()
        params = handler.params.clone()
        work.arm("raise", cid=cid)
        with pytest.raises(
            RoundFailedError,
            match=(
                rf"^round 1: 1 of 6 clients failed \(first: client {cid}: "
                rf"ScriptedError: scripted failure of client {cid}\); "
                r"nothing was applied$"
            ),
        ) as info:
            await sim.run_round()
        (failure,) = info.value.failures
        assert isinstance(failure, ClientFailure)
        assert (failure.kind, failure.type) == ("error", "ScriptedError")
        assert failure.message == f"scripted failure of client {cid}"
        assert "Traceback (most recent call last)" in failure.traceback
        assert 'raise ScriptedError(f"scripted failure of client' in failure.traceback
        assert torch.equal(handler.params, params)
        assert (sim.round, handler.round, handler.load_calls) == (1, 1, 6)
        work.disarm("raise", cid=cid)
        await sim.run()
    assert handler.sample_calls == 3
    assert torch.equal(handler.params, reference["params"])


@pytest.mark.parametrize("kind", sorted(EXECUTORS))
async def test_drop_aggregates_the_survivors(kind: str, tmp_path: Path) -> None:
    """Under drop a failed client is a failed slot; load_round gets the survivors."""
    handler = FedAvgHandler(num_clients=4, per_round=4, rounds=1)
    start = handler.params.clone()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, kind, on_client_failure="drop", min_clients=3)
    work.arm("raise", cid=3)
    async with sim:
        result = await sim.run_round()
    slot = result.cids.index(3)
    (failed,) = result.failures
    assert failed is result.clients[slot]
    assert (failed.slot, failed.cid) == (slot, 3)
    assert failed.failure is not None
    assert (failed.failure.kind, failed.failure.type) == ("error", "ScriptedError")
    assert [c.ok for c in result.clients] == [c != 3 for c in result.cids]
    assert result.metrics == aggregate_metrics(
        [c.metrics for c in result.clients if c.ok]
    )
    assert result.metrics["num_samples"] == 3 * 24
    assert (handler.round, handler.load_calls) == (1, 1)
    assert not torch.equal(handler.params, start)


@pytest.mark.parametrize("kind", ["inline", "threads"])
async def test_drop_with_too_few_survivors_fails_the_round(
    kind: str, tmp_path: Path
) -> None:
    """Under drop, fewer survivors than min_clients abort the round unapplied."""
    handler = FedAvgHandler(num_clients=4, per_round=4, rounds=1)
    start = handler.params.clone()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, kind, on_client_failure="drop", min_clients=3)
    work.arm("raise", cid=1)
    work.arm("raise", cid=2)
    async with sim:
        with pytest.raises(
            RoundFailedError,
            match=r"^round 0: only 2 clients survived, fewer than min_clients=3",
        ) as info:
            await sim.run_round()
        assert sorted(f.message for f in info.value.failures) == [
            "scripted failure of client 1",
            "scripted failure of client 2",
        ]
        assert torch.equal(handler.params, start)
        assert (sim.round, handler.load_calls) == (0, 0)
        work.disarm("raise", cid=2)
        result = await sim.run_round()
    assert [f.cid for f in result.failures] == [1]


async def test_failed_round_is_rerun_with_the_same_clients(tmp_path: Path) -> None:
    """After a failed round the handler is not asked to sample again."""
    handler = FedAvgHandler(rounds=1)
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, "threads")
    work.arm("raise")
    async with sim:
        for _ in range(2):
            with pytest.raises(RoundFailedError, match=r"6 of 6 clients failed"):
                await sim.run_round()
        work.disarm("raise")
        result = await sim.run_round()
    assert handler.sample_calls == 1
    assert list(result.cids) == sampled(FedAvgHandler(), 0)


@pytest.mark.parametrize("kind", ["threads", "processes"])
async def test_client_state_of_a_failed_round_is_not_committed(
    kind: str, tmp_path: Path
) -> None:
    """ctx.state written in a failed round is dropped; committed rounds keep it."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=2)
    executor = EXECUTORS[kind]()
    work = Misbehave(ScriptedWork(record=True), str(tmp_path))
    sim = Simulation(handler, work, executor=executor, seed=SEED)
    work.arm("raise", cid=0)
    async with sim:
        with pytest.raises(RoundFailedError, match=r"client 0"):
            await sim.run_round()  # clients 1 and 2 ran and wrote their state
        work.disarm("raise", cid=0)
        first, second = await sim.run()
    assert [c.metrics["visits"] for c in first.clients] == [1, 1, 1]
    assert [c.metrics["visits"] for c in second.clients] == [2, 2, 2]


class _DivergingWork:
    """Client 1 returns NaNs; everyone else returns the payload plus one."""

    def __call__(self, ctx: Any, payload: torch.Tensor) -> torch.Tensor:
        if ctx.cid == 1:
            return torch.full_like(payload, float("nan"))
        return payload + 1


class _SumHandler:
    """Samples clients 0-2 once; keeps the slot-ordered sum of what it loads."""

    def __init__(self) -> None:
        self.loaded: list[torch.Tensor] = []
        self.done = False

    def sample_clients(self) -> list[int]:
        return [0, 1, 2]

    def downlink_package(self) -> torch.Tensor:
        return torch.zeros(3)

    def is_stopped(self) -> bool:
        return self.done

    def load(self, package: torch.Tensor) -> bool:
        self.loaded.append(package)
        return False

    def load_round(self, packages: list[torch.Tensor]) -> None:
        self.loaded = list(packages)
        self.done = True


async def test_nonfinite_update_is_a_failed_slot() -> None:
    """An update with NaN is rejected as a failed slot and never reaches the handler."""
    handler = _SumHandler()
    sim = Simulation(
        handler,
        _DivergingWork(),
        executor=ThreadExecutor(2),
        on_client_failure="drop",
        min_clients=2,
    )
    async with sim:
        result = await sim.run_round()
    (failed,) = result.failures
    assert failed.cid == 1
    assert failed.failure is not None
    assert failed.failure.type == "NonFiniteUpdateError"
    assert "NaN or infinite" in failed.failure.message
    assert [p.tolist() for p in handler.loaded] == [[1.0] * 3, [1.0] * 3]


def test_nonfinite_check_is_exact_when_the_sum_overflows() -> None:
    """The fast path (a finite sum) never hides a NaN/inf, and a sum that
    overflows on finite values does not make a good update look bad."""
    from blazefl.sim._finite import nonfinite as _nonfinite

    huge = torch.full((10,), 3e38)  # finite, but the float32 sum is inf
    assert _nonfinite({"w": huge}) is None
    assert _nonfinite([torch.zeros(3), torch.tensor([1.0, float("nan")])]) == (
        "tensor #1 (shape (2,))"
    )
    assert _nonfinite(torch.tensor([float("inf"), -float("inf")])) is not None
    assert _nonfinite(torch.tensor([1, 2], dtype=torch.int64)) is None
