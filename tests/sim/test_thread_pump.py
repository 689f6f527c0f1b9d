"""Thread workers that take a round's jobs themselves (no per-client timeout)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import torch

from blazefl.sim import ClientContext, Simulation, ThreadExecutor
from fakes import FedAvgHandler

pytestmark = pytest.mark.anyio


class Recorder:
    """Work that records which slots started, in what order, how many at once."""

    def __init__(self, fail_slot: int | None = None) -> None:
        self._lock = threading.Lock()
        self.starts: list[int] = []
        self.running = 0
        self.most = 0
        self.fail_slot = fail_slot

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        with self._lock:
            self.starts.append(ctx.slot)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.002)
            if ctx.slot == self.fail_slot:
                raise ValueError(f"slot {ctx.slot} fails on purpose")
            noise = torch.rand(payload.shape, generator=ctx.rng.torch_cpu)
            return payload + noise * 0.01, 1
        finally:
            with self._lock:
                self.running -= 1


async def test_one_worker_runs_clients_in_slot_order() -> None:
    """A single worker thread takes the round's clients one by one, in slot order."""
    work = Recorder()
    handler = FedAvgHandler(num_clients=12, per_round=9, rounds=1)
    async with Simulation(handler, work, executor=ThreadExecutor(1)) as sim:
        result = await sim.run_round()
    assert work.starts == list(range(9))
    assert [c.slot for c in result.clients] == list(range(9))


async def test_workers_never_run_more_clients_than_there_are_workers() -> None:
    """Three workers take twelve clients: each once, never four at a time."""
    work = Recorder()
    handler = FedAvgHandler(num_clients=12, per_round=12, rounds=1)
    async with Simulation(handler, work, executor=ThreadExecutor(3)) as sim:
        await sim.run_round()
    assert sorted(work.starts) == list(range(12))
    assert 1 <= work.most <= 3


async def test_a_failing_client_is_its_slot_and_the_others_still_run() -> None:
    """One client raising is a failed slot; the workers go on with the rest."""
    work = Recorder(fail_slot=2)
    handler = FedAvgHandler(num_clients=8, per_round=6, rounds=1)
    sim = Simulation(
        handler, work, executor=ThreadExecutor(2), on_client_failure="drop"
    )
    async with sim:
        result = await sim.run_round()
    assert sorted(work.starts) == list(range(6))
    failed = [c for c in result.clients if not c.ok]
    assert [c.slot for c in failed] == [2]
    assert "fails on purpose" in str(failed[0].failure)


async def test_pulled_rounds_equal_rounds_handed_out_one_by_one() -> None:
    """With and without a (never reached) per-client timeout, which hands clients
    out one by one, the final model is bitwise the same."""
    finals = []
    for timeout in (None, 60.0):
        handler = FedAvgHandler(num_clients=10, per_round=6, rounds=3)
        sim = Simulation(
            handler, Recorder(), executor=ThreadExecutor(2), client_timeout=timeout
        )
        async with sim:
            await sim.run()
        finals.append(handler.params)
    assert torch.equal(finals[0], finals[1])
