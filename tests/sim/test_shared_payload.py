"""The process executor's shared-memory copy of the payload: written into the
same segments round after round, never into memory anyone still reads, never
the handler's own tensors, and gone with the run."""

from __future__ import annotations

import os

import pytest
import torch
from payload_fakes import PointerWork, RoundHandler
from sim_fakes import SEED, quick_processes

from blazefl.sim import Simulation
from blazefl.sim._executors._shared_payload import SharedPayload
from leaks import shm_left, shm_mapped_by

pytestmark = pytest.mark.anyio


def test_each_round_is_written_into_the_last_rounds_segment() -> None:
    """Once last round's copy is let go, the next round's values go into its
    shared memory; the handler's tensors stay where they were."""
    shared = SharedPayload()
    handler = {"w": torch.zeros(8), "p": torch.nn.Parameter(torch.ones(2)), "n": 1}
    first = shared.share(handler)
    assert first["w"].is_shared()
    assert not handler["w"].is_shared()
    ptrs = (first["w"].data_ptr(), first["p"].data_ptr())
    del first
    handler = {"w": torch.arange(8.0), "p": torch.nn.Parameter(torch.zeros(2)), "n": 2}
    second = shared.share(handler)
    assert (second["w"].data_ptr(), second["p"].data_ptr()) == ptrs
    assert torch.equal(second["w"], torch.arange(8.0))
    assert isinstance(second["p"], torch.nn.Parameter)
    assert second["p"].requires_grad
    assert second["n"] == 2


def test_a_copy_still_held_keeps_its_segment_and_values() -> None:
    """While a round's copy is held (its session is open), the next round gets
    new segments and the held copy keeps its values."""
    shared = SharedPayload()
    first = shared.share(torch.zeros(8))
    second = shared.share(torch.ones(8))
    assert second.data_ptr() != first.data_ptr()
    assert torch.equal(first, torch.zeros(8))
    assert torch.equal(second, torch.ones(8))


def test_a_tensor_it_cannot_copy_as_is_is_shared_in_place() -> None:
    """A non-contiguous tensor keeps its strides: moved to shared memory in
    place, as before, not copied."""
    handler = torch.arange(6.0).reshape(2, 3).t()
    out = SharedPayload().share({"w": handler})
    assert out["w"] is handler
    assert handler.is_shared()


async def test_processes_never_map_the_handlers_tensors_and_leave_no_shm() -> None:
    """Across rounds the workers get each round's values, the handler's own
    tensors never move to shared memory, and no segment outlives the run."""
    handler = RoundHandler(rounds=3)
    sent: list[torch.Tensor] = []
    downlink = handler.downlink_package

    def keep() -> torch.Tensor:
        sent.append(downlink())
        return sent[-1]

    handler.downlink_package = keep  # type: ignore[method-assign]
    executor = quick_processes(2)
    sim = Simulation(handler, PointerWork(), executor=executor, seed=SEED)
    async with sim:
        results = [await sim.run_round() for _ in range(3)]
        mapped = shm_mapped_by([*executor.pids, os.getpid()])
    for index, result in enumerate(results):
        assert [c.metrics["first"] for c in result.clients] == [float(index)] * 4
    assert not any(t.is_shared() for t in sent)
    assert shm_left(mapped) == set()
