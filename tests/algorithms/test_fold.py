"""Folding the weighted mean while clients train: bitwise the collected mean,
in slot order whatever order clients finish in, on real threads and processes;
a dropped client, a cancelled round, robust aggregators and DP keep their
semantics; ``WeightedMean(dtype="float64")`` is the old arithmetic."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import torch
from alg_fakes import NUM_CLIENTS, dataset
from fold_fakes import (
    FAILING_CID,
    BlockingFedAvg,
    CountingMean,
    FailingFedAvg,
    RecordingServer,
    SlowFirstFedAvg,
    old_weighted_mean,
)

from blazefl.algorithms import (
    Algorithm,
    ClientUpdate,
    FedAvg,
    FedAvgM,
    FederatedClient,
    FederatedServer,
    RoundUpdates,
    Scaffold,
    WeightedMean,
    weighted_average,
)
from blazefl.algorithms._fold import RoundFold
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.privacy import Privacy
from blazefl.robust import Median, NormBound
from blazefl.sim import (
    Executor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)

ROUNDS = 3


def _server(
    algorithm: Algorithm,
    data: SyntheticPartitionedDataset,
    *,
    fold: bool = True,
    aggregator: Any = None,
    rounds: int = ROUNDS,
) -> RecordingServer:
    return RecordingServer(
        algorithm,
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=rounds,
        sample_ratio=0.5,
        seed=0,
        aggregator=aggregator,
        fold=fold,
    )


def _run(
    algorithm: Algorithm,
    executor: Executor,
    *,
    fold: bool = True,
    aggregator: Any = None,
    **sim: Any,
) -> RecordingServer:
    data = dataset()
    server = _server(algorithm, data, fold=fold, aggregator=aggregator)
    client = FederatedClient(
        algorithm, ModelZoo(), "mlp", data, epochs=1, batch_size=16, lr=0.1
    )
    Simulation(server, client, executor=executor, seed=0, **sim).run_sync()
    return server


def _round(n: int, size: int = 10_000) -> tuple[torch.Tensor, list[ClientUpdate]]:
    g = torch.Generator().manual_seed(n)
    params = torch.randn(size, generator=g)
    return params, [
        ClientUpdate(k, params + torch.randn(size, generator=g), 7 + 3 * k)
        for k in range(n)
    ]


# -- the fold itself ----------------------------------------------------------


@pytest.mark.parametrize("dtype", ["model", "float64"])
def test_a_fold_is_bitwise_the_collected_mean(dtype: Any) -> None:
    """Folding updates one by one (`RoundFold`, as the coordinator does) gives
    the bits `WeightedMean.next_model` computes from the collected round."""
    params, updates = _round(5)
    mean = WeightedMean(dtype=dtype)
    fold = RoundFold(mean.start(params))
    for update in updates:
        fold.add(update)
    collected = mean.next_model(RoundUpdates.of(params, updates))
    from blazefl.algorithms import aggregate_model, aggregating

    with aggregating(mean), fold.applied(updates):
        folded = aggregate_model(params, updates)
    assert torch.equal(folded, collected)
    assert folded.dtype == torch.float32
    if dtype == "float64":
        assert torch.equal(
            folded,
            weighted_average(
                [u.params for u in updates], [u.num_samples for u in updates]
            ),
        )


def test_the_model_dtype_mean_differs_from_float64_in_the_last_bits() -> None:
    """The two dtypes are different arithmetic (so the fold tests below would
    see a mix-up), both within float32 rounding of the exact mean."""
    params, updates = _round(6)
    rnd = RoundUpdates.of(params, updates)
    model = WeightedMean().next_model(rnd)
    wide = WeightedMean(dtype="float64").next_model(rnd)
    assert not torch.equal(model, wide)
    torch.testing.assert_close(model, wide, rtol=1e-6, atol=1e-6)


def test_a_fold_of_other_updates_is_not_taken() -> None:
    """The folded mean is only used for exactly the folded updates."""
    params, updates = _round(3)
    mean = WeightedMean()
    fold = RoundFold(mean.start(params))
    for update in updates[:2]:
        fold.add(update)
    from blazefl.algorithms import aggregate_model, aggregating

    with aggregating(mean), fold.applied(updates):
        got = aggregate_model(params, updates)
    assert torch.equal(got, mean.next_model(RoundUpdates.of(params, updates)))


# -- in a simulation ------------------------------------------------------------


@pytest.fixture(scope="module")
def collected() -> torch.Tensor:
    """FedAvg's model after ROUNDS rounds, aggregated from collected updates."""
    server = _run(FedAvg(), InlineExecutor(), fold=False)
    assert server.folds == []
    return server.params


@pytest.mark.parametrize(
    "executor",
    [
        lambda: InlineExecutor(),
        lambda: ThreadExecutor(1),
        lambda: ThreadExecutor(2),
        lambda: ProcessExecutor(1),
        lambda: ProcessExecutor(2),
    ],
    ids=["inline", "threads1", "threads2", "processes1", "processes2"],
)
def test_folded_rounds_are_bitwise_the_collected_ones(
    executor: Any, collected: torch.Tensor
) -> None:
    """With folding on, every executor and worker count ends on the collected
    run's model, bit for bit; the folds ran on the fold thread, in slot order,
    and the mean was never computed from the collected updates."""
    CountingMean.collected.clear()
    server = _run(FedAvg(), executor(), aggregator=CountingMean())
    assert torch.equal(server.params, collected)
    assert CountingMean.collected == []
    assert len(server.folds) == ROUNDS
    for steps in server.folds:
        cids = [cid for cid, _ in steps]
        assert len(cids) == server.clients_per_round
        assert cids == sorted(cids)  # slot order: the sampled clients are sorted
        assert {thread for _, thread in steps} == {"blazefl-fold"}


def test_clients_finishing_out_of_order_fold_in_slot_order() -> None:
    """Slot 0 finishes last on two threads; its update is still folded first."""
    slow = _run(SlowFirstFedAvg(), ThreadExecutor(2), aggregator=CountingMean())
    reference = _run(SlowFirstFedAvg(), InlineExecutor(), fold=False)
    assert torch.equal(slow.params, reference.params)
    for steps in slow.folds:
        cids = [cid for cid, _ in steps]
        assert cids == sorted(cids)


def test_a_dropped_client_is_left_out_of_the_fold() -> None:
    """Under on_client_failure="drop" the survivors are folded (the failed slot
    skipped), bitwise what the collected survivors give."""
    CountingMean.collected.clear()
    folded = _run(
        FailingFedAvg(),
        ThreadExecutor(2),
        aggregator=CountingMean(),
        on_client_failure="drop",
    )
    assert CountingMean.collected == []
    reference = _run(
        FailingFedAvg(), InlineExecutor(), fold=False, on_client_failure="drop"
    )
    assert torch.equal(folded.params, reference.params)
    dropped = [steps for steps in folded.folds if len(steps) < 5]
    assert dropped, f"client {FAILING_CID} was never sampled: pick another"
    assert all(FAILING_CID not in [c for c, _ in steps] for steps in folded.folds)


@pytest.mark.anyio
@pytest.mark.anyio_backends("asyncio")
async def test_a_cancelled_round_leaves_the_server_unchanged() -> None:
    """A round timed out mid-way (its fold partly done) applies nothing; the
    same round then runs again and folds afresh."""
    data = dataset()
    server = _server(BlockingFedAvg(), data)
    client = FederatedClient(
        BlockingFedAvg(), ModelZoo(), "mlp", data, epochs=1, batch_size=16, lr=0.1
    )
    before = server.params.clone()
    async with Simulation(
        server, client, executor=ThreadExecutor(2), seed=0, round_timeout=2.0
    ) as sim:
        with pytest.raises(TimeoutError):
            await sim.run_round()
    await anyio.sleep(0.1)  # let the fold thread see the discard
    assert server.round == 0
    assert torch.equal(server.params, before)
    assert len(server.folds) == 1
    assert 0 < len(server.folds[0]) < server.clients_per_round  # it had begun


# -- who does not fold ------------------------------------------------------------


@pytest.mark.parametrize(
    "aggregator",
    [Median(f=1), NormBound(1.0), WeightedMean(dtype="float64")],
    ids=["median", "norm-bound", "mean-float64"],
)
def test_aggregators_that_collect_first_do_not_fold(aggregator: Any) -> None:
    server = _server(FedAvg(), dataset(), aggregator=aggregator)
    assert not aggregator.folds
    assert server.round_fold() is None


def test_algorithms_and_privacy_that_do_not_fold() -> None:
    """SCAFFOLD (its own plain mean) and central DP (clip, noise) collect."""
    data = dataset()
    scaffold = _server(Scaffold(num_clients=NUM_CLIENTS), data)
    assert scaffold.round_fold() is None
    private = FederatedServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=1,
        sample_ratio=0.5,
        privacy=Privacy(dp="central", noise_multiplier=0.5, clip_norm=1.0),
    )
    assert private.round_fold() is None
    assert _server(FedAvgM(), data).round_fold() is not None


def test_the_mean_of_one_update_is_that_update() -> None:
    """One update (a central-DP or secure-sum round hands the server one) is
    its own mean, exactly, in either dtype: a fresh tensor."""
    params, updates = _round(1)
    rnd = RoundUpdates.of(params, updates)
    for dtype in ("model", "float64"):
        got = WeightedMean(dtype=dtype).next_model(rnd)  # type: ignore[arg-type]
        assert torch.equal(got, updates[0].params)
        assert got.data_ptr() != updates[0].params.data_ptr()


@pytest.mark.parametrize("dp", ["central", "local"])
def test_dp_results_are_those_of_the_float64_mean(dp: str) -> None:
    """With DP (the privacy step hands the algorithm one clipped, noised
    update a round) nothing folds, and the run ends where the float64 mean
    (the old arithmetic) ends, bit for bit."""
    data = dataset()

    def run(aggregator: Any) -> FederatedServer:
        privacy = Privacy(dp=dp, noise_multiplier=0.5, clip_norm=1.0)  # type: ignore[arg-type]
        server = FederatedServer(
            FedAvg(), ModelZoo(), "mlp", dataset=data, num_clients=NUM_CLIENTS,
            rounds=2, sample_ratio=0.5, seed=0, aggregator=aggregator,
            privacy=privacy,
        )  # fmt: skip
        client = FederatedClient(
            FedAvg(), ModelZoo(), "mlp", data, epochs=1, lr=0.1, privacy=privacy
        )
        Simulation(server, client, executor=ThreadExecutor(2), seed=0).run_sync()
        return server

    model = run(None)
    assert model.round_fold() is None
    assert torch.equal(model.params, run(WeightedMean(dtype="float64")).params)


def test_a_robust_aggregator_gives_its_results_unchanged() -> None:
    """Median runs as before: the round is collected and its median applied."""
    threads = _run(FedAvg(), ThreadExecutor(2), aggregator=Median(f=1))
    inline = _run(FedAvg(), InlineExecutor(), aggregator=Median(f=1), fold=False)
    assert threads.folds == []
    assert torch.equal(threads.params, inline.params)


# -- the old arithmetic ------------------------------------------------------------


class _Keeping(RecordingServer):
    """Keeps each round's updates and the model they were applied to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rounds_seen: list[tuple[list[ClientUpdate], torch.Tensor]] = []

    def apply_updates(self, updates: list[ClientUpdate]) -> None:
        super().apply_updates(updates)
        self.rounds_seen.append((list(updates), self.params.clone()))


def test_float64_is_the_previous_arithmetic_bit_for_bit() -> None:
    """``WeightedMean(dtype="float64")``: each round's model is the old
    formula (written out in fold_fakes) over that round's updates."""
    data = dataset()
    server = _Keeping(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=ROUNDS,
        sample_ratio=0.5,
        seed=0,
        aggregator=WeightedMean(dtype="float64"),
    )
    client = FederatedClient(
        FedAvg(), ModelZoo(), "mlp", data, epochs=1, batch_size=16, lr=0.1
    )
    Simulation(server, client, executor=ThreadExecutor(2), seed=0).run_sync()
    assert server.folds == []
    assert len(server.rounds_seen) == ROUNDS
    for updates, model in server.rounds_seen:
        old = old_weighted_mean(
            [u.params for u in updates], [u.num_samples for u in updates]
        )
        assert torch.equal(model, old)
