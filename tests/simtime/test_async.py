"""Asynchronous FL on the virtual clock: FedBuff and FedAsync end bitwise equal
across executors and worker counts, and after an interrupted-then-resumed run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import torch
from simtime_fakes import final_params, profiles, simulation

from blazefl import ConfigurationError, RoundFailedError
from blazefl.algorithms import FedAsync, FedAvg, FedBuff
from blazefl.sim import (
    InlineExecutor,
    ThreadExecutor,
    load_checkpoint,
    save_checkpoint,
)
from blazefl.simtime import SimTime, Staleness
from fakes import quick_processes

EXECUTORS = [
    lambda: ThreadExecutor(1),
    lambda: ThreadExecutor(2),
    lambda: ThreadExecutor(4),
    lambda: quick_processes(2),
]
IDS = ["threads-1", "threads-2", "threads-4", "processes-2"]


def _fedbuff() -> SimTime:
    return SimTime(
        profiles(online_fraction=0.8), mode="async", buffer_size=2, concurrency=5
    )


def _fedasync() -> SimTime:
    return SimTime(profiles(), mode="async", concurrency=4)


CASES = {
    "fedbuff": (lambda: FedBuff(server_lr=1.0), _fedbuff),
    "fedasync": (lambda: FedAsync(mixing=0.5, staleness="hinge"), _fedasync),
}


def _run(case: str, executor: Any, rounds: int = 6) -> tuple[torch.Tensor, list[Any]]:
    algorithm, time_model = CASES[case]
    server, sim = simulation(algorithm(), executor, time_model(), rounds=rounds)
    results = sim.run_sync()
    return final_params(server), results


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[torch.Tensor, list[Any]]]:
    return {case: _run(case, InlineExecutor()) for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("make", EXECUTORS, ids=IDS)
def test_async_runs_are_bitwise_equal_across_executors(
    case: str, make: Any, references: dict[str, Any]
) -> None:
    """Same final model, applied clients and clock on every executor."""
    reference, ref_results = references[case]
    params, results = _run(case, make())
    assert torch.equal(reference, params)
    assert [r.cids for r in results] == [r.cids for r in ref_results]
    assert [r.virtual_time for r in results] == [r.virtual_time for r in ref_results]


def test_updates_are_stale_and_the_model_moves(references: dict[str, Any]) -> None:
    """Async runs really apply stale updates, and the clock only moves forward."""
    _, results = references["fedbuff"]
    times = [r.virtual_time for r in results]
    assert times == sorted(times)
    assert all(len(r.cids) == 2 for r in results)
    algorithm, time_model = CASES["fedbuff"]
    server, _ = simulation(algorithm(), InlineExecutor(), time_model())
    assert not torch.equal(final_params(server), references["fedbuff"][0])


@pytest.mark.parametrize("case", list(CASES))
def test_interrupted_then_resumed_run_is_bitwise_equal(
    case: str, references: dict[str, Any], tmp_path: Any
) -> None:
    """Checkpoint mid-run (clients in flight), resume in a new simulation."""
    reference, ref_results = references[case]
    algorithm, time_model = CASES[case]
    path = tmp_path / "ckpt"

    async def first() -> None:
        _, sim = simulation(algorithm(), ThreadExecutor(2), time_model(), rounds=6)
        async with sim:
            await sim.run(3)
            assert sim.in_flight  # the checkpoint holds clients in flight
            save_checkpoint(path, sim.state_dict())
            await sim.run(1)  # work past the checkpoint is lost ("kill -9")

    anyio.run(first)
    server, sim = simulation(algorithm(), quick_processes(2), time_model(), rounds=6)
    sim.load_state_dict(load_checkpoint(path))
    results = sim.run_sync()
    assert torch.equal(final_params(server), reference)
    assert [r.cids for r in results] == [r.cids for r in ref_results[3:]]


def test_async_with_a_synchronous_algorithm_names_it() -> None:
    """FedAvg cannot apply stale updates: the error says so and what to use."""
    with pytest.raises(
        ConfigurationError,
        match=r"'fedavg' cannot apply stale updates.*fedbuff or fedasync",
    ):
        simulation(FedAvg(), InlineExecutor(), _fedbuff())


def test_buffer_size_above_concurrency_is_refused() -> None:
    """The server cannot wait for more arrivals than clients in flight."""
    with pytest.raises(
        ConfigurationError, match=r"buffer_size=6 is above concurrency=5"
    ):
        SimTime(profiles(), mode="async", buffer_size=6, concurrency=5)


def test_default_buffer_above_concurrency_is_refused() -> None:
    """FedBuff's default K=10 with concurrency 4 is named."""
    time_model = SimTime(profiles(), mode="async", concurrency=4)
    with pytest.raises(
        ConfigurationError, match=r"buffer_size=10 \(the algorithm's default\)"
    ):
        simulation(FedBuff(), InlineExecutor(), time_model)


def test_fedasync_takes_one_update_at_a_time() -> None:
    """FedAsync with a buffer of several updates is refused."""
    time_model = SimTime(profiles(), mode="async", buffer_size=2, concurrency=4)
    with pytest.raises(
        ConfigurationError, match=r"fedasync applies each update as it arrives"
    ):
        simulation(FedAsync(), InlineExecutor(), time_model)


def test_deadline_is_for_synchronous_rounds() -> None:
    """A deadline in async mode is refused."""
    with pytest.raises(ConfigurationError, match=r"apply to synchronous rounds"):
        SimTime(profiles(), mode="async", deadline=1.0)


def test_unknown_staleness_is_refused() -> None:
    """The staleness function must be one of the documented kinds."""
    with pytest.raises(
        ConfigurationError,
        match=r"staleness must be one of constant, polynomial, hinge",
    ):
        FedBuff(staleness="linear")


@pytest.mark.parametrize(
    ("kind", "tau", "expected"),
    [
        ("constant", 7, 1.0),
        ("polynomial", 3, 0.5),  # (3 + 1) ** -0.5
        ("hinge", 4, 1.0),  # within b = 4
        ("hinge", 6, 1.0 / 21.0),  # 1 / (10 * (6 - 4) + 1)
    ],
)
def test_staleness_functions(kind: Any, tau: int, expected: float) -> None:
    """The documented formulas of Xie et al. (2019)."""
    a = 10.0 if kind == "hinge" else 0.5
    assert Staleness(kind, a, 4.0)(tau) == pytest.approx(expected)


def test_fedbuff_formula() -> None:
    """x + η/K Σ s(τ)(xᵢ − baseᵢ) on hand-written vectors."""
    from blazefl.algorithms import ClientUpdate, StaleUpdate

    x = torch.tensor([1.0, 1.0], dtype=torch.float64)
    base = torch.tensor([0.0, 0.0], dtype=torch.float64)
    ups = [
        StaleUpdate(
            ClientUpdate(0, torch.tensor([2.0, 0.0], dtype=torch.float64), 1), 0, base
        ),
        StaleUpdate(
            ClientUpdate(1, torch.tensor([0.0, 4.0], dtype=torch.float64), 1), 3, base
        ),
    ]
    out = FedBuff(server_lr=1.0).aggregate_stale(x, ups, {})
    assert torch.allclose(
        out, torch.tensor([1.0 + 1.0, 1.0 + 0.5 * 4.0 * 0.5], dtype=torch.float64)
    )


@dataclass(frozen=True)
class FailingClient:
    """The test client, raising for one client id."""

    inner: Any
    bad: int

    @property
    def epochs(self) -> int:
        return int(self.inner.epochs)

    @property
    def dataset(self) -> Any:
        return self.inner.dataset

    def __call__(self, ctx: Any, broadcast: Any) -> Any:
        if ctx.cid == self.bad:
            raise RuntimeError(f"client {ctx.cid} is broken")
        return self.inner(ctx, broadcast)


def _first_cid() -> int:
    _, results = _run("fedbuff", InlineExecutor(), rounds=1)
    return int(results[0].cids[0])


def test_a_failed_client_fails_the_update_and_changes_nothing() -> None:
    """fail_round: RoundFailedError, no update applied, the clock unmoved."""
    bad = _first_cid()
    server, sim = simulation(
        FedBuff(), InlineExecutor(), _fedbuff(), wrap=lambda c: FailingClient(c, bad)
    )
    before = final_params(server)

    async def main() -> None:
        async with sim:
            with pytest.raises(RoundFailedError, match=f"client {bad} failed"):
                await sim.run_round()

    anyio.run(main)
    assert sim.round == 0
    assert sim.now == 0.0
    assert torch.equal(final_params(server), before)


def test_a_failed_client_is_dropped_under_drop() -> None:
    """drop: the failed client is skipped like a leaver; the run completes."""
    bad = _first_cid()
    _, sim = simulation(
        FedBuff(),
        InlineExecutor(),
        _fedbuff(),
        rounds=6,
        wrap=lambda c: FailingClient(c, bad),
        on_client_failure="drop",
    )
    results = sim.run_sync()
    assert len(results) == 6
    assert all(bad not in r.cids for r in results)
    assert any(bad in r.stragglers for r in results)


def test_async_run_is_the_same_on_trio(references: dict[str, Any]) -> None:
    """The coordinator's async step runs on trio too, with the same result."""
    algorithm, time_model = CASES["fedbuff"]
    server, sim = simulation(algorithm(), ThreadExecutor(2), time_model(), rounds=6)
    sim.run_sync(backend="trio")
    assert torch.equal(final_params(server), references["fedbuff"][0])
