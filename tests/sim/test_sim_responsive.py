"""The event loop stays responsive while a round trains off the loop thread."""

from __future__ import annotations

import anyio
import pytest
from sim_fakes import EXECUTORS, OFF_LOOP

from blazefl.sim import (
    Executor,
    InlineExecutor,
    RoundResult,
    Simulation,
)
from fakes import FedAvgHandler, ScriptedWork

pytestmark = pytest.mark.anyio

# Long enough that even a heavily loaded machine ticks many times; the
# assertion needs only 5 of a possible 100.
BUSY_SECONDS = 1.0
TICK_SECONDS = 0.01


async def _ticks_during_round(executor: Executor) -> tuple[RoundResult, int]:
    """Run one CPU-bound round while another task ticks every 10 ms."""
    handler = FedAvgHandler(num_clients=2, per_round=2, rounds=1)
    sim = Simulation(handler, ScriptedWork(busy=BUSY_SECONDS), executor=executor)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(TICK_SECONDS)
            ticks += 1

    async with sim, anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        before = ticks
        result = await sim.run_round()
        during = ticks - before
        tg.cancel_scope.cancel()
    return result, during


@pytest.mark.parametrize("kind", OFF_LOOP)
async def test_loop_keeps_ticking_while_clients_train(kind: str) -> None:
    """Another task on the loop runs many times during a CPU-bound round."""
    result, ticks = await _ticks_during_round(EXECUTORS[kind]())
    assert result.seconds >= BUSY_SECONDS
    assert ticks >= 5


async def test_inline_executor_blocks_the_loop_as_documented() -> None:
    """The control: inline clients block the loop, so the same probe barely ticks."""
    result, ticks = await _ticks_during_round(InlineExecutor())
    assert result.seconds >= 2 * BUSY_SECONDS
    # At most one tick per point where the loop regains control between
    # clients; 200 if the loop had been free.
    assert ticks <= 6
