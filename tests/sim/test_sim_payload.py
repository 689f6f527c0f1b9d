"""The round's payload is lent, never shared: a client that writes into it
fails, and the write reaches neither the handler nor another client."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from payload_fakes import PointerWork, RoundHandler
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


# -- reusing the copy's memory ---------------------------------------------------


def _lent_once(lender: PayloadCopy) -> torch.Tensor:
    lent, seal = lender.lend()
    assert lender.written(seal) is None
    return lent["w"]


def test_the_next_rounds_copy_is_written_into_the_last_ones_memory() -> None:
    """Nobody holds last round's copy: the next one reuses its memory, with
    the new values, and still shares nothing with its source."""
    old = PayloadCopy({"w": torch.zeros(8), "n": 1})
    ptr = _lent_once(old).data_ptr()
    source = {"w": torch.arange(8.0), "n": 2}
    new = old.renew(source)
    del old
    lent, _ = new.lend()
    assert lent["w"].data_ptr() == ptr
    assert torch.equal(lent["w"], torch.arange(8.0))
    assert lent["w"].data_ptr() != source["w"].data_ptr()
    assert lent["n"] == 2


@pytest.mark.parametrize(
    "hold",
    [
        lambda p: p,  # the container
        lambda p: p["w"],  # the tensor object
        lambda p: p["w"][2:],  # a view
        lambda p: p["w"].data,  # another tensor on its memory
        lambda p: p["w"].numpy(),  # an array on its memory
        lambda p: p["w"].untyped_storage(),  # the storage itself
    ],
)
def test_memory_anyone_still_holds_is_never_reused(hold: Callable[[Any], Any]) -> None:
    """A copy someone kept (whole, a tensor, a view, an array, the storage)
    keeps its values; the next one is a fresh clone."""
    old = PayloadCopy({"w": torch.zeros(8)})
    lent, _ = old.lend()
    ptr = lent["w"].data_ptr()
    kept = hold(lent)
    del lent
    new = old.renew({"w": torch.ones(8)})
    del old
    fresh, _ = new.lend()
    assert fresh["w"].data_ptr() != ptr
    assert torch.equal(fresh["w"], torch.ones(8))
    assert kept is not None
    assert torch.as_tensor(_values(kept)).eq(0).all()


def _values(kept: Any) -> Any:
    if isinstance(kept, dict):
        return kept["w"]
    if isinstance(kept, torch.UntypedStorage):
        return torch.empty(0).set_(kept)
    return kept


def test_a_copy_with_a_grad_or_another_layout_is_not_reused() -> None:
    """A lent parameter that grew a .grad, a source of another dtype, a copy
    with other strides than a fresh one would have: each gets a fresh copy of
    the source's kind and strides."""
    old = PayloadCopy(
        {
            "p": torch.nn.Parameter(torch.zeros(3)),
            "t": torch.zeros(3),
            "s": torch.zeros(3, 2).t(),
        }
    )
    lent, _ = old.lend()
    lent["p"].sum().backward()
    ptrs = [lent[k].data_ptr() for k in ("p", "t", "s")]
    del lent
    new = old.renew(
        {
            "p": torch.nn.Parameter(torch.ones(3)),
            "t": torch.ones(3, dtype=torch.float64),
            "s": torch.ones(2, 3),
        }
    )
    del old
    fresh, _ = new.lend()
    assert all(fresh[k].data_ptr() != ptr for k, ptr in zip("pts", ptrs, strict=True))
    assert isinstance(fresh["p"], torch.nn.Parameter)
    assert fresh["p"].grad is None
    assert fresh["t"].dtype == torch.float64
    assert fresh["s"].is_contiguous()
    assert torch.equal(fresh["s"], torch.ones(2, 3))


def test_after_a_write_the_next_client_gets_the_source_in_the_same_memory() -> None:
    """A writer's copy is restored from the source for the next client (in
    its memory, once the writer let go of it); the source never changes."""
    source = {"w": torch.arange(4.0)}
    lender = PayloadCopy(source)
    lent, seal = lender.lend()
    ptr = lent["w"].data_ptr()
    lent["w"].mul_(0)
    assert lender.written(seal) is not None
    del lent, seal
    fresh, _ = lender.lend()
    assert fresh["w"].data_ptr() == ptr
    assert torch.equal(fresh["w"], torch.arange(4.0))
    assert torch.equal(source["w"], torch.arange(4.0))


@pytest.mark.parametrize("kind", sorted(ONE_WORKER))
async def test_workers_reuse_their_copys_memory_across_rounds(kind: str) -> None:
    """A worker lends every round's payload in one place, written anew each
    round (its version moves), with the round's values."""
    handler = RoundHandler(rounds=3)
    sim = Simulation(handler, PointerWork(), executor=ONE_WORKER[kind](), seed=SEED)
    async with sim:
        results = [await sim.run_round() for _ in range(3)]
    assert len({c.metrics["ptr"] for r in results for c in r.clients}) == 1
    for index, result in enumerate(results):
        assert {c.metrics["version"] for c in result.clients} == {float(index)}
        assert [c.metrics["first"] for c in result.clients] == [float(index)] * 4


@pytest.mark.parametrize("kind", sorted(ONE_WORKER))
async def test_a_payload_a_client_kept_is_never_overwritten(kind: str) -> None:
    """Clients that keep every payload they are lent find them unchanged in
    later rounds, and each round still gets its own values."""
    handler = RoundHandler(rounds=3)
    work = PointerWork(hoard=True)
    sim = Simulation(handler, work, executor=ONE_WORKER[kind](), seed=SEED)
    async with sim:
        results = [await sim.run_round() for _ in range(3)]
    assert len({c.metrics["ptr"] for r in results for c in r.clients}) == 3
    assert all(c.metrics["kept_intact"] == 1.0 for r in results for c in r.clients)
    for index, result in enumerate(results):
        assert [c.metrics["first"] for c in result.clients] == [float(index)] * 4


def test_a_client_still_running_when_its_copy_is_renewed_is_judged_on_its_own() -> None:
    """Renewing a copy while a client holds it neither blames that client when
    it wrote nothing nor misses its write: it is judged on what it was lent."""
    honest = PayloadCopy({"w": torch.zeros(4)})
    _, seal = honest.lend()
    honest.renew({"w": torch.ones(4)})
    assert honest.written(seal) is None
    writing = PayloadCopy({"w": torch.zeros(4)})
    lent, seal = writing.lend()
    writing.renew({"w": torch.ones(4)})
    lent["w"].add_(1.0)
    what = writing.written(seal)
    assert what is not None
    assert "payload['w'] (shape (4,)) was written in place" in what
