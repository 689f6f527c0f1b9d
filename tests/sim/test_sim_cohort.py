"""CohortExecutor on the coordinator: refusals, failed slots, reports."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import TensorPartitionedDataset
from blazefl.data._loader import TensorView
from blazefl.models import ModelZoo
from blazefl.sim import ClientContext, CohortExecutor, Simulation

N = 6


def _data(
    empty: int | None = None, poisoned: int | None = None
) -> TensorPartitionedDataset:
    """N clients of 5..10 samples; optionally one empty, one with an inf input."""
    gen = torch.Generator().manual_seed(3)
    sizes = [0 if cid == empty else 5 + cid for cid in range(N)]
    x = torch.randn(sum(sizes), 12, generator=gen)
    y = torch.randint(0, 10, (sum(sizes),), generator=gen)
    bounds = list(itertools.accumulate([0, *sizes]))
    if poisoned is not None:
        x[bounds[poisoned]] = float("inf")
    parts = [list(range(a, b)) for a, b in itertools.pairwise(bounds)]
    return TensorPartitionedDataset(
        x, y, parts, x[:6], y[:6], num_classes=10, allow_empty_clients=True
    )


def _sim(data: TensorPartitionedDataset, executor: Any, **kw: Any) -> Any:
    zoo = ModelZoo(input_shape=(12,), num_classes=10)
    server = FederatedServer(
        FedAvg(), zoo, "mlp", dataset=data, num_clients=N, rounds=2, seed=1
    )
    client = FederatedClient(FedAvg(), zoo, "mlp", data, batch_size=4, lr=0.1)
    sim = Simulation(server, client, executor=executor, seed=1, evaluate_every=0, **kw)
    return sim, server


def _plain_work(ctx: ClientContext, payload: Any) -> Any:
    return payload


def test_plain_client_work_is_refused_at_construction() -> None:
    """Work without as_cohort() cannot be batched: the message names the others."""
    zoo = ModelZoo(input_shape=(12,), num_classes=10)
    server = FederatedServer(
        FedAvg(), zoo, "mlp", dataset=_data(), num_clients=N, rounds=1, seed=1
    )
    with pytest.raises(
        ConfigurationError,
        match=r"_plain_work cannot run on CohortExecutor.*ThreadExecutor, "
        r"ProcessExecutor or RayExecutor",
    ):
        Simulation(server, _plain_work, executor=CohortExecutor())


def test_automatic_size_is_chosen_at_construction() -> None:
    """max_cohort=None picks a size when the Simulation is built; describe says it."""
    executor = CohortExecutor(2)
    assert executor.max_cohort is None
    _sim(_data(), executor)
    assert isinstance(executor.max_cohort, int)
    assert executor.max_cohort >= 1
    assert executor.describe() == {
        "executor": "cohort",
        "workers": 2,
        "max_cohort": executor.max_cohort,
    }
    assert executor.max_workers == 2 * executor.max_cohort


def test_every_client_gets_its_own_report() -> None:
    """Per-client reports as on any executor: metrics, a cohort worker, slot order."""
    sim, _ = _sim(_data(), CohortExecutor(2, max_cohort=4))
    results = sim.run_sync()
    for result in results:
        assert [c.cid for c in result.clients] == list(result.cids)
        for report in result.clients:
            assert report.ok
            assert set(report.metrics) == {"loss", "num_samples"}
            assert report.worker.startswith("cohort-")
    assert results[0].metrics["num_samples"] == sum(5 + c for c in range(N))


def test_an_empty_client_fails_its_slot_only() -> None:
    """A client the work refuses fails alone; the chunk's others train."""
    sim, _ = _sim(
        _data(empty=2), CohortExecutor(1, max_cohort=4), on_client_failure="drop"
    )
    result = sim.run_sync(1)[0]
    failed = [c.cid for c in result.clients if not c.ok]
    assert failed == [2]
    assert "has no training samples" in str(result.clients[2].failure)
    assert sum(c.ok for c in result.clients) == N - 1


def test_a_non_finite_update_fails_its_slot_only() -> None:
    """An inf input makes one client's update NaN: its slot is rejected, no other."""
    sim, server = _sim(
        _data(poisoned=4), CohortExecutor(1, max_cohort=N), on_client_failure="drop"
    )
    result = sim.run_sync(1)[0]
    assert [c.cid for c in result.clients if not c.ok] == [4]
    error = result.clients[4].failure
    assert error is not None
    assert error.kind == "rejected"
    assert bool(torch.isfinite(server.params).all())


def test_failed_round_default_policy_fails_the_round() -> None:
    """With the default policy the failed slot aborts the round, as elsewhere."""
    sim, server = _sim(_data(empty=0), CohortExecutor(1, max_cohort=4))
    before = server.params.clone()
    with pytest.raises(Exception, match=r"client 0"):
        sim.run_sync(1)
    assert torch.equal(server.params, before)


@pytest.mark.anyio
async def test_a_cancelled_round_stops_its_chunk_and_changes_nothing() -> None:
    """Cancelled while a chunk trains: the round leaves no trace and the next
    round trains on the same executor."""
    data = _data()
    big = torch.randn(20000, 12)
    data.set_dataset("train", 0, TensorView(big, torch.zeros(20000, dtype=torch.int64)))
    executor = CohortExecutor(1, max_cohort=N)
    sim, server = _sim(data, executor)
    before = server.params.clone()
    async with sim:
        with anyio.move_on_after(1.0) as scope:
            await sim.run_round()
        assert scope.cancelled_caught
        assert sim.round == 0
        assert torch.equal(server.params, before)
        data.set_dataset(
            "train", 0, TensorView(big[:7], torch.zeros(7, dtype=torch.int64))
        )
        result = await sim.run_round()
    assert all(c.ok for c in result.clients)


class _ItemOnBigBatches(torch.nn.Module):
    """Reads a value with .item() for batches of 2+: fine per client, not under
    vmap; the construction probe (one sample) does not see it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            float(x[0, 0])
        return self.fc(x)  # type: ignore[no-any-return]


class _Selector:
    def select_model(self, name: str) -> torch.nn.Module:
        return _ItemOnBigBatches()


def test_a_chunk_that_cannot_batch_falls_back_to_one_client_at_a_time() -> None:
    """The batched step fails at run time: each client runs the per-client
    path, so the result is bitwise the inline executor's."""
    from structlog.testing import capture_logs

    from blazefl.sim import InlineExecutor

    def run(executor: Any) -> torch.Tensor:
        data = _data()
        server = FederatedServer(
            FedAvg(), _Selector(), "m", dataset=data, num_clients=N, rounds=1, seed=1
        )
        client = FederatedClient(FedAvg(), _Selector(), "m", data, batch_size=4)
        Simulation(
            server, client, executor=executor, seed=1, evaluate_every=0
        ).run_sync()
        return server.params

    with capture_logs() as logs:
        got = run(CohortExecutor(1, max_cohort=3))
    assert torch.equal(got, run(InlineExecutor()))
    assert [e["event"] for e in logs].count("cohort_chunk_failed") == 2
