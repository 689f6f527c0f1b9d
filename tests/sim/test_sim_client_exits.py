"""``sys.exit()`` and ``KeyboardInterrupt`` raised by client code: a failed
client on every worker no Ctrl-C reaches; on the inline executor (the main
thread, where a Ctrl-C lands) they still stop the caller."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sim_fakes import SEED
from sim_fakes import simulation as _sim

from blazefl import RoundFailedError
from blazefl.sim import InlineExecutor, Simulation
from fakes import FedAvgHandler, Misbehave, ScriptedWork, sampled

EXITS = {"sys_exit": ("SystemExit", "4"), "interrupt": ("KeyboardInterrupt", "")}


@pytest.mark.anyio
@pytest.mark.parametrize("fault", sorted(EXITS))
@pytest.mark.parametrize("kind", ["threads", "processes"])
async def test_exit_in_client_code_is_a_failed_client(
    kind: str, fault: str, tmp_path: Path
) -> None:
    """The round fails with that client's error; the worker lives on."""
    cid = sampled(FedAvgHandler(), 0)[1]
    handler = FedAvgHandler(rounds=2)
    start = handler.params.clone()
    work = Misbehave(ScriptedWork(record=True), str(tmp_path))
    sim = _sim(handler, work, kind)
    async with sim:
        pids = list(getattr(sim.executor, "pids", []))
        work.arm(fault, cid=cid, once=True)
        with pytest.raises(RoundFailedError, match=r"^round 0: 1 of 6 clients") as info:
            await sim.run_round()
        (failure,) = info.value.failures
        assert (failure.kind, failure.type, failure.message) == ("error", *EXITS[fault])
        assert torch.equal(handler.params, start)
        result = await sim.run_round()  # the same round again, now clean
        assert result.failures == ()
        assert list(getattr(sim.executor, "pids", [])) == pids  # none replaced


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("fault", sorted(EXITS))
def test_exit_on_the_inline_executor_stops_the_caller(
    fault: str, backend: str, tmp_path: Path
) -> None:
    """Inline, on the main thread, it propagates: it may be the user's Ctrl-C."""
    work = Misbehave(ScriptedWork(), str(tmp_path))
    work.arm(fault)
    handler = FedAvgHandler()
    sim = Simulation(handler, work, executor=InlineExecutor(), seed=SEED)
    raised = SystemExit if fault == "sys_exit" else KeyboardInterrupt
    # Trio's nurseries wrap it in a group (strict exception groups).
    with pytest.raises((raised, BaseExceptionGroup)) as info:
        sim.run_sync(backend=backend)
    if isinstance(info.value, BaseExceptionGroup):
        assert info.value.split(raised)[1] is None, info.value
    assert handler.round == 0
    assert not sim.running
