"""Process results reach the server as views into shared buffers (`_result_pool`).

What must hold: a result a consumer keeps never changes when later clients
or rounds run; a buffer is lent to a worker again only once nothing views it;
the pool stays bounded; results are bitwise the same as the thread
executor's; and no shared-memory name is left behind.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sim_fakes import RecordingHandler

from blazefl.sim import ClientContext, Simulation, ThreadExecutor
from blazefl.sim._executors import _processes
from blazefl.sim._executors._result_buffers import pack_result, unpack_result
from blazefl.sim._executors._result_pool import ResultPool
from fakes import FedAvgHandler, ScriptedWork, quick_processes
from leaks import shm_left, shm_mapped_by

pytestmark = [pytest.mark.anyio, pytest.mark.anyio_backends("asyncio")]


@pytest.fixture
def views_for_small_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' results are a few bytes, below `VIEW_MIN_BYTES`: make the
    process executor view them anyway, as it would view a big model."""

    def pool() -> ResultPool:
        return ResultPool(view_min_bytes=0)

    monkeypatch.setattr(_processes, "ResultPool", pool)


def round_and_cid(ctx: ClientContext, payload: torch.Tensor) -> dict[str, Any]:
    """A result that names its round and client, from the payload's values."""
    value = payload + 100.0 * ctx.round + ctx.cid
    return {"w": value, "b": value[:2].clone() * -1.0}


def _expected(rnd: int, cid: int) -> dict[str, torch.Tensor]:
    value = torch.zeros(4) + 100.0 * rnd + cid
    return {"w": value, "b": value[:2] * -1.0}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.usefixtures("views_for_small_results")
async def test_kept_results_never_change_in_later_rounds(workers: int) -> None:
    """The handler keeps every result; four more rounds on the same workers
    leave each kept result as it arrived, and the
    results equal the thread executor's bit for bit."""
    runs = {}
    for kind in ("threads", "processes"):
        handler = RecordingHandler(rounds=5)
        executor = ThreadExecutor(workers) if kind == "threads" else None
        sim = Simulation(
            handler,
            round_and_cid,
            executor=executor or quick_processes(workers),
        )
        async with sim:
            pids = [] if executor else sim.executor.pids  # type: ignore[attr-defined]
            mapped = shm_mapped_by(pids)
            results = await sim.run()
        assert not shm_left(mapped)
        runs[kind] = handler.received
        seen = [(r.round, c.cid) for r in results for c in r.clients if c.ok]
        assert len(seen) == len(handler.received) == 15
        for (rnd, cid), package in zip(seen, handler.received, strict=True):
            for key, want in _expected(rnd, cid).items():
                assert torch.equal(package[key], want), (kind, rnd, cid, key)
    for a, b in zip(runs["threads"], runs["processes"], strict=True):
        for key in ("w", "b"):
            assert a[key].dtype == b[key].dtype
            assert torch.equal(a[key].view(torch.int32), b[key].view(torch.int32))


def _lend(pool: ResultPool, value: float) -> tuple[Any, dict[str, torch.Tensor]]:
    """What a worker and the parent do for one client: pack, then view."""
    slot = pool.take()
    assert slot is not None
    skeleton, _, packed = pack_result({"x": torch.full((8,), value)}, slot.tensor)
    assert packed
    result = unpack_result(skeleton, slot.tensor, copy=pool.copies)
    pool.give_back(slot)
    return slot, result


@pytest.mark.skipif(
    ResultPool(view_min_bytes=0).copies, reason="this torch exposes no use count"
)
def test_a_buffer_is_lent_again_only_once_nothing_views_it() -> None:
    pool = ResultPool(keep=3, view_min_bytes=0)
    pool.grow(64)
    first, kept = _lend(pool, 1.0)
    second, dropped = _lend(pool, 2.0)
    assert second is not first  # the first is still viewed
    del dropped
    third, _ = _lend(pool, 3.0)
    assert third is second  # the second was free again: reused, not reallocated
    assert torch.equal(kept["x"], torch.full((8,), 1.0))


@pytest.mark.skipif(
    ResultPool(view_min_bytes=0).copies, reason="this torch exposes no use count"
)
def test_the_pool_forgets_viewed_buffers_past_keep_but_views_stay_valid() -> None:
    pool = ResultPool(keep=2, view_min_bytes=0)
    pool.grow(64)
    kept = [_lend(pool, float(i))[1] for i in range(6)]
    assert len(pool.ids) == 2
    for i, result in enumerate(kept):
        assert torch.equal(result["x"], torch.full((8,), float(i)))


def test_a_grown_capacity_drops_small_idle_buffers() -> None:
    pool = ResultPool(keep=4, view_min_bytes=0)
    pool.grow(64)
    slot, result = _lend(pool, 1.0)
    del result
    pool.grow(4096)
    bigger = pool.take()
    assert bigger is not None
    assert bigger is not slot
    assert bigger.tensor.numel() >= 4096
    assert slot.id not in pool.ids


@pytest.mark.skipif(
    ResultPool(view_min_bytes=0).copies, reason="this torch exposes no use count"
)
@pytest.mark.usefixtures("views_for_small_results")
async def test_buffers_are_reused_once_the_server_drops_results() -> None:
    """A handler that folds results and drops them: four rounds of three
    clients on one worker allocate no more buffers than one round views."""
    handler = FedAvgHandler(num_clients=3, per_round=3, rounds=4)
    executor = quick_processes(1)
    sim = Simulation(handler, ScriptedWork(), executor=executor)
    async with sim:
        await sim.run()
        allocated = next(executor._results._ids)
    assert allocated <= 3 + 1


async def test_small_results_are_copied_and_their_buffer_reused_at_once() -> None:
    """Below `VIEW_MIN_BYTES` a result is copied out, so a round of many light
    clients keeps one buffer per worker, not one per client (a round of
    10,000 clients would otherwise map 10,000 segments in every worker)."""
    handler = RecordingHandler(rounds=6)  # 18 clients
    executor = quick_processes(2)
    sim = Simulation(handler, round_and_cid, executor=executor)
    async with sim:
        results = await sim.run()
        pool = executor._results
        assert pool.copies
        assert len(pool.ids) <= 2 + 1
        allocated = next(pool._ids)
    # One buffer per worker before the first result outgrew the payload-sized
    # guess, one per worker after it (and at most one more): never per client.
    assert allocated <= 2 * 2 + 1
    seen = [(r.round, c.cid) for r in results for c in r.clients if c.ok]
    for (rnd, cid), package in zip(seen, handler.received, strict=True):
        for key, want in _expected(rnd, cid).items():
            assert torch.equal(package[key], want), (rnd, cid, key)
