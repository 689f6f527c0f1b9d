"""The round's payload is lent, never shared: a client that writes into it
fails, and the write reaches neither the handler nor another client."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from sim_fakes import EXECUTORS, SEED
from sim_fakes import simulation as _sim

from blazefl import PayloadModifiedError, RoundFailedError
from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import (
    ClientContext,
    ClientFailure,
    Executor,
    InlineExecutor,
    Simulation,
    ThreadExecutor,
)
from blazefl.sim._payload import PayloadCopy
from fakes import FedAvgHandler, Misbehave, ScriptedWork, quick_processes, sampled

pytestmark = pytest.mark.anyio

#: One worker each: a writer's successor runs on the writer's own worker.
ONE_WORKER: dict[str, Callable[[], Executor]] = {
    "inline": InlineExecutor,
    "threads": lambda: ThreadExecutor(1),
    "processes": lambda: quick_processes(1),
}


class LiveHandler(FedAvgHandler):
    """Hands out its own global model, as `FederatedServer` does: no copy."""

    def downlink_package(self) -> torch.Tensor:
        return self.params


@pytest.mark.parametrize("kind", sorted(EXECUTORS))
async def test_honest_run_with_a_live_payload_matches_reference(
    kind: str, reference: dict[str, Any]
) -> None:
    """Lending copies changes no bit: the honest federation equals the reference."""
    handler = LiveHandler()
    async with _sim(handler, ScriptedWork(), kind) as sim:
        await sim.run()
    assert torch.equal(handler.params, reference["params"])


@pytest.mark.parametrize("kind", sorted(EXECUTORS))
async def test_write_into_payload_fails_the_client_and_changes_nothing(
    kind: str, tmp_path: Path, reference: dict[str, Any]
) -> None:
    """The writer fails with PayloadModifiedError; the server is bitwise as it was."""
    cid = sampled(FedAvgHandler(), 1)[2]
    handler = LiveHandler()
    work = Misbehave(ScriptedWork(), str(tmp_path))
    sim = _sim(handler, work, kind)
    async with sim:
        await sim.run_round()
        params = handler.params.clone()
        work.arm("write", cid=cid)
        with pytest.raises(RoundFailedError, match=r"^round 1: 1 of 6 clients") as info:
            await sim.run_round()
        (failure,) = info.value.failures
        assert isinstance(failure, ClientFailure)
        assert (failure.kind, failure.type) == ("rejected", "PayloadModifiedError")
        assert failure.message.startswith(
            f"client {cid} wrote into the round's payload: the tensor at payload "
            f"(shape {tuple(params.shape)}) was written in place."
        )
        assert isinstance(failure.exception(), PayloadModifiedError)
        assert torch.equal(handler.params, params)
        assert (sim.round, handler.round) == (1, 1)
        work.disarm("write", cid=cid)
        await sim.run()
    assert torch.equal(handler.params, reference["params"])


async def _dropped(kind: str, control: Path, fault: str) -> tuple[Any, Any]:
    """A one-round federation of 4 whose first client suffers ``fault``."""
    first = sampled(FedAvgHandler(num_clients=4, per_round=4), 0)[0]
    handler = LiveHandler(num_clients=4, per_round=4, rounds=1)
    work = Misbehave(ScriptedWork(), str(control))
    work.arm(fault, cid=first)
    sim = Simulation(
        handler,
        work,
        executor=ONE_WORKER[kind](),
        seed=SEED,
        on_client_failure="drop",
        min_clients=3,
    )
    async with sim:
        result = await sim.run_round()
    assert [c.ok for c in result.clients] == [False, True, True, True]
    return handler.params, [c.metrics for c in result.clients[1:]]


@pytest.mark.parametrize("kind", sorted(ONE_WORKER))
async def test_a_write_never_reaches_the_next_client_on_the_worker(
    kind: str, tmp_path: Path
) -> None:
    """Under drop, a writer's round is bitwise the round of a client that raised."""
    (tmp_path / "w").mkdir()
    (tmp_path / "r").mkdir()
    wrote = await _dropped(kind, tmp_path / "w", "write")
    raised = await _dropped(kind, tmp_path / "r", "raise")
    assert torch.equal(wrote[0], raised[0])
    assert wrote[1] == raised[1]


async def test_threads_copy_once_per_worker_and_round() -> None:
    """Each worker thread lends one copy to all its clients of a round."""
    handler = LiveHandler(num_clients=6, per_round=6, rounds=2)
    work = ScriptedWork(record=True, max_sleep=0.01)
    sim = Simulation(handler, work, executor=ThreadExecutor(2), seed=SEED)
    async with sim:
        for _ in range(2):
            own = id(handler.params)
            result = await sim.run_round()
            by_worker: dict[str, set[float]] = {}
            for c in result.clients:
                by_worker.setdefault(c.worker, set()).add(c.metrics["payload_id"])
            assert all(len(ids) == 1 for ids in by_worker.values()), by_worker
            seen = set().union(*by_worker.values())
            assert len(seen) == len(by_worker)
            assert own not in seen


class WritingClient:
    """FederatedClient work that first writes into the broadcast's parameters."""

    def __init__(self, client: FederatedClient) -> None:
        self.client = client

    def __call__(self, ctx: ClientContext, payload: Any) -> Any:
        if ctx.cid == 0:
            payload.params.add_(1.0)  # the example
        return self.client(ctx, payload)


@pytest.mark.parametrize("kind", sorted(EXECUTORS))
async def test_federated_server_model_survives_a_writing_client(kind: str) -> None:
    """FederatedServer hands out its own params; a writer leaves them bitwise."""
    data = SyntheticPartitionedDataset(
        2, seed=0, samples_per_client=16, test_samples=16
    )
    server = FederatedServer(
        FedAvg(), ModelZoo(), "mlp", dataset=data, num_clients=2, rounds=1, seed=0
    )
    client = FederatedClient(FedAvg(), ModelZoo(), "mlp", data, epochs=1, lr=0.1)
    before = server.params.clone()
    weights = [p.detach().clone() for p in server.model.parameters()]
    sim = _sim(server, WritingClient(client), kind)
    async with sim:
        with pytest.raises(RoundFailedError) as info:
            await sim.run_round()
    (failure,) = info.value.failures
    assert isinstance(failure.exception(), PayloadModifiedError)
    assert "the tensor at payload.params" in failure.message
    assert torch.equal(server.params, before)
    for param, weight in zip(server.model.parameters(), weights, strict=True):
        assert torch.equal(param, weight)
    assert server.round == 0


# -- the copy itself ------------------------------------------------------------


def test_copy_is_made_once_and_shares_nothing() -> None:
    """Two borrowers get one copy; it aliases where the source did, nothing else."""
    weight = torch.arange(4.0)
    source = {"a": weight, "b": weight, "n": 3, "p": torch.nn.Parameter(torch.ones(2))}
    lender = PayloadCopy(source)
    first, seal = lender.lend()
    assert lender.written(seal) is None
    second, _ = lender.lend()
    assert first is second
    assert first["a"] is first["b"]
    assert first["a"].data_ptr() != weight.data_ptr()
    assert isinstance(first["p"], torch.nn.Parameter)
    assert first["p"].requires_grad
    assert first["n"] == 3


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: p["a"][1:].mul_(2), r"payload\['a'\] \(shape \(4,\)\) was written"),
        (lambda p: p.__setitem__("a", torch.zeros(4)), r"payload\['a'\] was replaced"),
        (lambda p: p.pop("b"), r"held 2 tensors and now holds 1"),
        (lambda p: p["a"].resize_(2), r"payload\['a'\] \(shape \(2,\)\) was written"),
    ],
)
def test_each_kind_of_write_is_seen_and_the_next_copy_is_fresh(
    write: Callable[[Any], Any], expected: str
) -> None:
    """A write through a view, a swap, a removal, a resize: named; copied afresh."""
    source = {"a": torch.arange(4.0), "b": torch.ones(3)}
    pristine = {k: v.clone() for k, v in source.items()}
    lender = PayloadCopy(source)
    lent, seal = lender.lend()
    write(lent)
    what = lender.written(seal)
    assert what is not None
    assert re.search(expected, what), what
    fresh, _ = lender.lend()
    assert fresh is not lent
    assert all(torch.equal(fresh[k], pristine[k]) for k in pristine)
    assert all(torch.equal(source[k], pristine[k]) for k in pristine)
