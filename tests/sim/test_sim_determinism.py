"""Bitwise determinism: the same seed gives the same model on every executor."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sim_fakes import SEED, digest, finish_order, run_federation

from blazefl.sim import (
    Executor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)
from fakes import FedAvgHandler, ScriptedWork, quick_processes

MAX_SLEEP = 0.04


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert torch.equal(got["params"], want["params"])
    assert got["metrics"] == want["metrics"]
    assert got["client_metrics"] == want["client_metrics"]
    assert got["cids"] == want["cids"]
    assert got["summary"] == want["summary"]


async def _run(executor: Executor, salt: int) -> tuple[dict[str, Any], list[Any]]:
    handler = FedAvgHandler()
    work = ScriptedWork(salt=salt, max_sleep=MAX_SLEEP)
    sim = Simulation(handler, work, executor=executor, seed=SEED)
    results, events = await run_federation(sim)
    return digest(handler, results), events


def _some_round_out_of_order(events: list[Any]) -> bool:
    orders = [finish_order(events, r) for r in range(3)]
    assert all(sorted(order) == list(range(6)) for order in orders)
    return any(order != sorted(order) for order in orders)


def test_reference_differs_from_initial_model(reference: dict[str, Any]) -> None:
    """The reference run trains: the final model is not the initial one."""
    assert not torch.equal(reference["params"], FedAvgHandler().params)
    assert reference["metrics"][0]["num_samples"] == 6 * 24


@pytest.mark.anyio
async def test_inline_with_sleeps_matches_reference(
    reference: dict[str, Any],
) -> None:
    """Random per-client sleeps alone change nothing on the inline executor."""
    got, _ = await _run(InlineExecutor(), salt=1)
    _assert_same(got, reference)


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 2, 4])
async def test_threads_match_reference_bitwise(
    reference: dict[str, Any], workers: int
) -> None:
    """ThreadExecutor gives the inline model bit for bit, whatever the workers."""
    got, events = await _run(ThreadExecutor(workers), salt=10 + workers)
    _assert_same(got, reference)
    if workers > 1:
        assert _some_round_out_of_order(events)


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_spawned_processes_match_reference_bitwise(
    reference: dict[str, Any],
) -> None:
    """ProcessExecutor (spawn, 2 workers) gives the inline model bit for bit."""
    executor = ProcessExecutor(2)
    got, events = await _run(executor, salt=22)
    _assert_same(got, reference)
    assert _some_round_out_of_order(events)


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 4])
async def test_forkserver_processes_match_reference_bitwise(
    reference: dict[str, Any], workers: int
) -> None:
    """ProcessExecutor (forkserver) gives the inline model bit for bit, any workers."""
    got, events = await _run(quick_processes(workers), salt=30 + workers)
    _assert_same(got, reference)
    if workers > 1:
        assert _some_round_out_of_order(events)


def test_run_sync_matches_async(reference: dict[str, Any]) -> None:
    """run_sync() from plain sync code gives the async run's model (threads, trio)."""
    handler = FedAvgHandler()
    sim = Simulation(handler, ScriptedWork(), executor=ThreadExecutor(2), seed=SEED)
    results = sim.run_sync(backend="trio")
    _assert_same(digest(handler, results), reference)
    assert not sim.running


def test_run_sync_rounds_limit() -> None:
    """run_sync(rounds=n) runs exactly n rounds and leaves the rest to a later run."""
    handler = FedAvgHandler()
    sim = Simulation(handler, ScriptedWork(), executor=InlineExecutor(), seed=SEED)
    first = sim.run_sync(rounds=2)
    assert [r.round for r in first] == [0, 1]
    assert sim.round == 2
    assert handler.round == 2
    rest = sim.run_sync()
    assert [r.round for r in rest] == [2]


def test_different_seed_gives_different_model(reference: dict[str, Any]) -> None:
    """The seed matters: another run seed changes the clients' RNG and the model."""
    handler = FedAvgHandler()
    Simulation(
        handler, ScriptedWork(), executor=InlineExecutor(), seed=SEED + 1
    ).run_sync()
    assert not torch.equal(handler.params, reference["params"])
