"""The index-keyed result buffer, and slot-order aggregation end to end."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blazefl import RoundFailedError
from blazefl.sim import (
    ClientContext,
    ClientFinished,
    InlineExecutor,
    Simulation,
    ThreadExecutor,
)
from blazefl.sim._buffer import ResultBuffer
from blazefl.sim._results import aggregate_metrics

# -- ResultBuffer ----------------------------------------------------------


def test_items_come_back_in_slot_order_whatever_the_put_order() -> None:
    """Filled out of order, the buffer iterates in slot order."""
    buffer: ResultBuffer[str] = ResultBuffer([7, 3, 5])
    buffer.put(2, 5, "c")
    buffer.put(0, 7, "a")
    assert not buffer.complete
    buffer.put(1, 3, "b")
    assert buffer.complete
    assert list(buffer) == ["a", "b", "c"]
    assert len(buffer) == 3


def test_a_slot_cannot_be_filled_twice() -> None:
    """A second result for the same slot is refused."""
    buffer: ResultBuffer[str] = ResultBuffer([7, 3])
    buffer.put(1, 3, "b")
    with pytest.raises(ValueError, match=r"^slot 1 \(client 3\) was already filled$"):
        buffer.put(1, 3, "again")
    assert not buffer.complete


def test_a_slot_refuses_another_clients_result() -> None:
    """A result filed under a slot that belongs to another client is refused."""
    buffer: ResultBuffer[str] = ResultBuffer([7, 3])
    with pytest.raises(ValueError, match=r"^slot 0 belongs to client 7, not client 3$"):
        buffer.put(0, 3, "x")


@pytest.mark.parametrize("slot", [-1, 2])
def test_a_slot_outside_the_row_is_refused(slot: int) -> None:
    """Slots outside 0..n-1 raise IndexError (no wrap-around for -1)."""
    buffer: ResultBuffer[str] = ResultBuffer([7, 3])
    with pytest.raises(IndexError, match=rf"^slot {slot} is outside 0\.\.1$"):
        buffer.put(slot, 7, "x")


def test_iterating_with_an_empty_slot_raises() -> None:
    """Reading the results before every slot is filled names the empty slot."""
    buffer: ResultBuffer[str] = ResultBuffer([7, 3, 5])
    buffer.put(0, 7, "a")
    buffer.put(2, 5, "c")
    with pytest.raises(ValueError, match=r"^slot 1 \(client 3\) is empty$"):
        list(buffer)


def test_a_none_result_fills_its_slot() -> None:
    """A result that is None still fills its slot exactly once."""
    buffer: ResultBuffer[None] = ResultBuffer([7])
    buffer.put(0, 7, None)
    assert buffer.complete
    with pytest.raises(ValueError, match=r"already filled"):
        buffer.put(0, 7, None)


@given(order=st.permutations(range(6)))
@settings(max_examples=50, deadline=None, database=None)
def test_buffer_order_is_independent_of_put_order(order: list[int]) -> None:
    """Any completion order gives the same slot-ordered row."""
    cids = [9, 4, 7, 0, 2, 5]
    buffer: ResultBuffer[tuple[int, int]] = ResultBuffer(cids)
    for slot in order:
        buffer.put(slot, cids[slot], (slot, cids[slot]))
    assert list(buffer) == list(enumerate(cids))


# -- slot-order aggregation through the real coordinator ------------------

CIDS = [4, 1, 3, 0, 2]
# Float sums of these depend on the order of the terms: only slot order is right.
VALUES = {4: 1e16, 1: 1.0, 3: -1e16, 0: 3.0, 2: 0.1}
WEIGHTS = {4: 3, 1: 1, 3: 3, 0: 2, 2: 5}


def _ordered_sum(cids: list[int]) -> float:
    total = 0.0
    for cid in cids:
        total += VALUES[cid] * WEIGHTS[cid]
    return total


def test_the_probe_values_are_order_sensitive() -> None:
    """Sanity: summing the probe values in another order gives another float."""
    assert _ordered_sum(CIDS) != _ordered_sum(list(reversed(CIDS)))


class FloatSumHandler:
    """Sums each client's value * weight in the order it is given the packages."""

    def __init__(self) -> None:
        self.total: float | None = None
        self._buffer: list[tuple[float, int]] = []

    def sample_clients(self) -> list[int]:
        return list(CIDS)

    def downlink_package(self) -> float:
        return 0.0

    def load(self, package: tuple[float, int]) -> bool:
        self._buffer.append(package)
        if len(self._buffer) < len(CIDS):
            return False
        self.load_round(self._buffer)
        return True

    def load_round(self, packages: list[tuple[float, int]]) -> None:
        total = 0.0
        for value, weight in packages:
            total += value * weight
        self.total = total

    def is_stopped(self) -> bool:
        return self.total is not None


@dataclass(frozen=True)
class PermutedWork:
    """Finishes clients in a given order (by sleeping), fails some of them and
    makes others hang until the coordinator stops them (their timeout)."""

    rank: dict[int, int]
    failing: frozenset[int]
    hanging: frozenset[int] = frozenset()

    def __call__(self, ctx: ClientContext, payload: float) -> tuple[float, int]:
        time.sleep(0.012 * self.rank[ctx.cid])
        if ctx.cid in self.hanging:
            deadline = time.monotonic() + 30
            while not ctx.should_stop() and time.monotonic() < deadline:
                time.sleep(0.005)
        if ctx.cid in self.failing:
            raise ValueError(f"client {ctx.cid} was drawn to fail")
        ctx.metrics["value"] = VALUES[ctx.cid]
        ctx.metrics["num_samples"] = WEIGHTS[ctx.cid]
        return VALUES[ctx.cid], WEIGHTS[ctx.cid]


@given(
    order=st.permutations(CIDS),
    failing=st.frozensets(st.sampled_from(CIDS), max_size=len(CIDS)),
    hanging=st.frozensets(st.sampled_from(CIDS), max_size=2),
    kind=st.sampled_from(["threads", "inline"]),
    backend=st.sampled_from(["asyncio", "trio"]),
)
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_aggregation_reads_survivors_in_slot_order(
    order: list[int],
    failing: frozenset[int],
    hanging: frozenset[int],
    kind: str,
    backend: str,
) -> None:
    """Any completion order, failures and timeouts: the survivors aggregate in
    slot order, exactly as if only they had been sampled."""
    if kind == "inline":
        hanging = frozenset()  # inline clients cannot be stopped mid-client
    handler = FloatSumHandler()
    executor = ThreadExecutor(len(CIDS)) if kind == "threads" else InlineExecutor()
    work = PermutedWork({cid: i for i, cid in enumerate(order)}, failing, hanging)
    sim = Simulation(
        handler,
        work,
        executor=executor,
        on_client_failure="drop",
        client_timeout=1.0 if hanging else None,
    )

    async def main() -> tuple[Any, list[int]]:
        async with sim:
            stream = sim.events()
            try:
                result = await sim.run_round()
            except RoundFailedError:
                result = None
        async with stream:
            finished = [e.cid async for e in stream if isinstance(e, ClientFinished)]
        return result, finished

    result, finished = anyio.run(main, backend=backend)
    survivors = [cid for cid in CIDS if cid not in failing | hanging]
    if not survivors:
        assert result is None
        assert handler.total is None
        return
    assert result is not None
    assert handler.total == _ordered_sum(survivors)
    assert [c.cid for c in result.failures] == [
        c for c in CIDS if c in failing | hanging
    ]
    kinds = {c.cid: c.failure.kind for c in result.failures if c.failure}
    assert all(kinds[c] == "timeout" for c in hanging)
    assert sorted(finished) == sorted(survivors)
    by_slot = [c.metrics for c in result.clients if c.ok]
    assert result.metrics == aggregate_metrics(by_slot)
    by_completion = [result.clients[CIDS.index(cid)].metrics for cid in finished]
    assert aggregate_metrics(by_completion) == result.metrics
    total_weight = sum(WEIGHTS[c] for c in survivors)
    assert math.isclose(result.metrics["num_samples"], total_weight)
