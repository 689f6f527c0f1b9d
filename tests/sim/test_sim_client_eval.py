"""`Simulation.evaluate_clients`: per-client evaluation on the run's executor."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import structlog
import torch
from client_eval_fakes import NUM_CLIENTS, SEED, Personal, dataset, federation

from blazefl import ConfigurationError, EvaluationFailedError
from blazefl.algorithms import FedAvg, FederatedClient
from blazefl.models import ModelZoo
from blazefl.reproducibility import RNGSuite
from blazefl.sim import (
    ClientContext,
    ClientEvaluation,
    ClientsEvaluated,
    Executor,
    InlineExecutor,
    ThreadExecutor,
)
from blazefl.sim._evaluation import evaluation_rng
from fakes import quick_processes


async def _train_then_evaluate(
    executor: Executor, rounds: int = 2, **kwargs: Any
) -> tuple[ClientEvaluation, Any]:
    sim, server = federation(executor)
    async with sim:
        await sim.run(rounds)
        evaluation = await sim.evaluate_clients(**kwargs)
    return evaluation, server


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_every_executor_gives_the_same_per_client_results() -> None:
    """Inline, 1 and 2 threads and 2 processes measure bitwise the same."""
    want, _ = await _train_then_evaluate(InlineExecutor())
    assert want.cids == tuple(range(NUM_CLIENTS))
    assert all("acc_personal" in m for m in want.metrics)
    for executor in (ThreadExecutor(1), ThreadExecutor(2), quick_processes(2)):
        got, _ = await _train_then_evaluate(executor, chunk_size=2)
        assert got.cids == want.cids
        assert got.metrics == want.metrics


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_results_equal_calling_evaluate_client_directly() -> None:
    """Each client's dict is evaluate_client(ctx, payload) with its committed
    state and its evaluation suite of (seed, cid, round)."""
    sim, server = federation(ThreadExecutor(2))
    async with sim:
        await sim.run(2)
        evaluation = await sim.evaluate_clients()
        states = {c: sim.client_state(c) for c in range(NUM_CLIENTS)}
    work = FederatedClient(Personal(), ModelZoo(), "cnn", dataset(), batch_size=4)
    for cid, metrics in zip(evaluation.cids, evaluation.metrics, strict=True):
        state = states[cid]
        ctx = ClientContext(
            cid=cid,
            round=2,
            slot=0,
            device="cpu",
            rng=RNGSuite.from_state(evaluation_rng(SEED, cid, 2)),
            state={} if state is None else dict(state.data),
            stop_event=threading.Event(),
            log=structlog.get_logger(),
            cache={},
        )
        assert work.evaluate_client(ctx, server.downlink_package()) == metrics


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_evaluation_changes_no_training_result_nor_state() -> None:
    """Training's final model and client states are bitwise the same with
    per-client evaluation after every round as without it."""

    async def run(evaluate: bool) -> tuple[torch.Tensor, dict[int, Any]]:
        sim, server = federation(ThreadExecutor(2))
        async with sim:
            for _ in range(3):
                await sim.run_round()
                if evaluate:
                    await sim.evaluate_clients()
            states = {c: sim.client_state(c) for c in range(NUM_CLIENTS)}
        return server.params.clone(), states

    plain, plain_states = await run(False)
    evaluated, evaluated_states = await run(True)
    assert torch.equal(plain, evaluated)
    for cid in range(NUM_CLIENTS):
        a, b = plain_states[cid], evaluated_states[cid]
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a.rng == b.rng
            assert a.data["trained"] == b.data["trained"] >= 1
            assert "scribble" not in b.data
            assert torch.equal(a.data["noise"], b.data["noise"])


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_evaluation_stores_no_state_for_untrained_clients() -> None:
    """Clients never sampled get no state (and the checkpoint stays the same)."""
    sim, _ = federation(InlineExecutor())
    async with sim:
        evaluation = await sim.evaluate_clients()
        assert all(sim.client_state(c) is None for c in range(NUM_CLIENTS))
        assert sim.state_dict()["clients"]["clients"] == {}
    assert evaluation.round == 0
    assert len(evaluation.metrics) == NUM_CLIENTS


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_a_failed_client_is_counted_and_left_out() -> None:
    """A client whose evaluation raises is reported, not fatal."""
    sim, _ = federation(ThreadExecutor(2), bad=(1, 4))
    async with sim:
        evaluation = await sim.evaluate_clients()
    assert evaluation.cids == (0, 2, 3, 5)
    assert [c for c, _ in evaluation.failures] == [1, 4]
    assert "evaluation of 1 broke" in str(evaluation.failures[0][1])
    assert evaluation.stats()["client_eval_failed"] == 2
    assert evaluation.stats()["client_acc_count"] == 4


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_evaluation_fails_when_every_client_fails() -> None:
    sim, _ = federation(InlineExecutor(), bad=tuple(range(NUM_CLIENTS)))
    async with sim:
        with pytest.raises(EvaluationFailedError, match=r"all 6 clients failed"):
            await sim.evaluate_clients()


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_evaluation_publishes_its_stats() -> None:
    """A ClientsEvaluated event carries the spread at the given threshold."""
    sim, _ = federation(InlineExecutor())
    async with sim, sim.events() as events:
        await sim.run_round()
        evaluation = await sim.evaluate_clients(cids=[0, 2], threshold=0.0)
        seen = []
        while (event := events.receive_nowait()) is not None:
            seen.append(event)
    found = [e for e in seen if isinstance(e, ClientsEvaluated)]
    assert len(found) == 1
    assert found[0].round == 0  # the round evaluated, 0-based
    assert found[0].clients == 2
    assert found[0].stats == evaluation.stats(0.0)
    assert found[0].stats["client_acc_above"] == 1.0


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_plain_fedavg_reports_only_the_global_model() -> None:
    sim, _ = federation(InlineExecutor(), algorithm=FedAvg())
    async with sim:
        await sim.run_round()
        evaluation = await sim.evaluate_clients()
    assert all("acc_personal" not in m for m in evaluation.metrics)
    stats = evaluation.stats()
    assert stats["client_acc_mean"] == stats["client_global_acc_mean"]


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_bad_arguments_are_refused() -> None:
    sim, _ = federation(InlineExecutor())
    with pytest.raises(ConfigurationError, match=r"not started"):
        await sim.evaluate_clients()
    async with sim:
        with pytest.raises(ConfigurationError, match=r"chunk_size must be >= 1"):
            await sim.evaluate_clients(chunk_size=0)
        with pytest.raises(ConfigurationError, match=r"holds a client id twice"):
            await sim.evaluate_clients(cids=[1, 1])
        with pytest.raises(ConfigurationError, match=r"holds -1"):
            await sim.evaluate_clients(cids=[-1])


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_the_on_disk_state_store_gives_the_same_results(tmp_path: Any) -> None:
    """Client states read from SQLite (client_state_path) measure the same."""
    want, _ = await _train_then_evaluate(InlineExecutor())
    sim, _ = federation(InlineExecutor(), client_state_path=tmp_path / "s.sqlite")
    async with sim:
        await sim.run(2)
        got = await sim.evaluate_clients()
    assert got.metrics == want.metrics
