"""Cohort training against the per-client path, client by client and over runs.

Stated result (CPU, float32, torch's 1-thread kernels): cohort training is
*not* bitwise equal to the per-client path (batched matmuls round differently
from one client's matmul), but it draws exactly the same batches (the RNG
suite states match bit for bit) and the final model of a 10-round run stays
within ``ABS_BOUND`` / ``REL_BOUND`` of the per-client one. Between cohort
runs it is bitwise: run to run, across cohort sizes and across worker counts.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms import (
    Algorithm,
    Broadcast,
    ClientUpdate,
    FedAdam,
    FedAvg,
    FedAvgM,
    FederatedClient,
    FederatedServer,
    FedProx,
    LocalTraining,
    Scaffold,
)
from blazefl.algorithms._cohort import _stack
from blazefl.algorithms._cohort_data import (
    Drawn,
    _replay_orders,
    client_batches,
    gather_chunk,
    replay_matches_loader,
)
from blazefl.data import LeafSyntheticDataset, TensorPartitionedDataset
from blazefl.data._loader import TensorView
from blazefl.models import ModelZoo
from blazefl.reproducibility import create_client_rng_suite
from blazefl.sim import (
    ClientContext,
    ClientState,
    CohortExecutor,
    CohortMember,
    InlineExecutor,
    Simulation,
)
from blazefl.sim._jobs import ClientJob

#: Largest |cohort - per-client| of any final-model element after 10 rounds.
ABS_BOUND = 1e-5
#: ... relative to the largest |element| of the per-client model.
REL_BOUND = 1e-5
N = 8


def _tiny(shape: tuple[int, ...] = (60,)) -> TensorPartitionedDataset:
    """N clients of 4..18 samples (uneven steps, short last batches)."""
    gen = torch.Generator().manual_seed(11)
    sizes = [4 + (7 * cid) % 15 for cid in range(N)]
    x = torch.randn(sum(sizes), *shape, generator=gen)
    y = torch.randint(0, 10, (sum(sizes),), generator=gen)
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    parts = [list(range(a, b)) for a, b in itertools.pairwise(bounds)]
    return TensorPartitionedDataset(x, y, parts, x[:20], y[:20], num_classes=10)


def _leaf() -> TensorPartitionedDataset:
    return _tiny()


def _run(executor: Any, algorithm: Algorithm, rounds: int, model: str = "mlp") -> Any:
    dataset = _tiny() if model == "mlp" else _tiny((1, 8, 8))
    zoo = ModelZoo(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    server = FederatedServer(
        algorithm,
        zoo,
        model,
        dataset=dataset,
        num_clients=N,
        rounds=rounds,
        sample_ratio=0.75,
        seed=3,
    )
    client = FederatedClient(algorithm, zoo, model, dataset, batch_size=5, lr=0.05)
    sim = Simulation(server, client, executor=executor, seed=3, evaluate_every=0)
    results = sim.run_sync()
    return server.params, [[dict(c.metrics) for c in r.clients] for r in results]


ALGORITHMS = [
    FedAvg(),
    FedAvgM(),
    FedAdam(server_lr=0.05),
    FedProx(mu=0.1),
    Scaffold(num_clients=N),
]


def test_replayed_draws_are_the_loaders() -> None:
    """The direct replay draws the DataLoader's order and leaves its generator."""
    assert replay_matches_loader()


def test_client_batches_match_the_real_loader() -> None:
    """Fast path and DataLoader path give the same batches and generator state."""
    dataset = LeafSyntheticDataset(4, seed=5)
    fast_gen = create_client_rng_suite(1, 2).torch_cpu
    fast = client_batches(dataset, 2, fast_gen, epochs=2, batch_size=3)
    slow_gen = create_client_rng_suite(1, 2).torch_cpu
    seen = []
    loader = dataset.get_dataloader("train", 2, 3, slow_gen)
    for _ in range(2):
        seen.extend(y for _, y in loader)
    assert fast.counts == [int(y.shape[0]) for y in seen]
    for step, y in enumerate(seen):
        assert torch.equal(fast.tensors()[1][step, : y.shape[0]], y)
    assert torch.equal(fast_gen.get_state(), slow_gen.get_state())
    assert len(_replay_orders(torch.Generator(), 4, 3)) == 3


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_chunk_gathered_at_once_is_the_per_client_padding(epochs: int) -> None:
    """`gather_chunk` (one gather for the chunk) gives bit for bit the inputs,
    targets and counts of padding each client alone (`client_batches`)."""
    dataset = _tiny()
    cids = [5, 0, 3, 7, 1]  # uneven sizes: short last batches, uneven steps
    drawn, alone = [], []
    for cid in cids:
        gen = create_client_rng_suite(9, cid).torch_cpu
        view = dataset.get_dataset("train", cid)
        assert isinstance(view, TensorView)
        drawn.append(Drawn(view, _replay_orders(gen, len(view), epochs)))
        gen = create_client_rng_suite(9, cid).torch_cpu
        alone.append(client_batches(dataset, cid, gen, epochs=epochs, batch_size=5))
    order = sorted(range(len(cids)), key=lambda i: -len(alone[i].counts))
    total = len(alone[order[0]].counts)
    want_x, want_y = _stack([alone[i] for i in order], total, 5)
    xs, ys, counts = gather_chunk([drawn[i] for i in order], 5, epochs)
    assert torch.equal(xs, want_x)
    assert torch.equal(ys, want_y)
    want_counts = [
        alone[i].counts + [0] * (total - len(alone[i].counts)) for i in order
    ]
    assert counts.tolist() == want_counts
    assert counts.dtype == torch.int64


def test_a_chunk_mixing_loader_and_replayed_clients_draws_like_each_alone() -> None:
    """A client whose partition is not a TensorView goes through its real
    loader inside a chunk of replayed clients: every client's suite and model
    as on the per-client path."""
    dataset = _tiny()
    view = dataset.get_dataset("train", 2)
    assert isinstance(view, TensorView)
    rows = view.indices
    dataset.set_dataset(
        "train", 2, torch.utils.data.TensorDataset(view.data[rows], view.targets[rows])
    )
    zoo = ModelZoo(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    client = FederatedClient(FedAvg(), zoo, "mlp", dataset, batch_size=3, lr=0.1)
    params = FederatedServer(
        FedAvg(), zoo, "mlp", dataset=dataset, num_clients=N, rounds=1, seed=0
    ).params
    broadcast = Broadcast(0, params, {})
    states = [ClientState(create_client_rng_suite(4, c).get_state()) for c in range(N)]
    members = [
        CohortMember(ClientJob(0, cid, cid, "cpu", s), s.copy())
        for cid, s in enumerate(states)
    ]
    results = client.as_cohort().train(
        members, broadcast, stop_event=_Never(), cache={}
    )
    for cid, (state, res) in enumerate(zip(states, results, strict=True)):
        ctx = _context(cid, state.copy())
        want = client(ctx, broadcast)
        assert res.state is not None
        assert res.state.rng == ctx.rng.get_state()
        assert res.result.num_samples == want.num_samples
        assert (res.result.params - want.params).abs().max() <= ABS_BOUND


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
def test_cohort_matches_per_client_client_by_client(algorithm: Algorithm) -> None:
    """One round: each client's update within the bound, its RNG state bitwise."""
    dataset = _leaf()
    zoo = ModelZoo(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    client = FederatedClient(algorithm, zoo, "mlp", dataset, batch_size=3, lr=0.1)
    params = FederatedServer(
        algorithm, zoo, "mlp", dataset=dataset, num_clients=N, rounds=1, seed=0
    ).params
    extra = {"c": torch.full_like(params, 0.01)} if algorithm.name == "scaffold" else {}
    broadcast = Broadcast(0, params, extra)
    states = [
        ClientState(
            create_client_rng_suite(7, cid).get_state(),
            {"c": torch.full_like(params, 0.002 * cid)} if extra else {},
        )
        for cid in range(N)
    ]
    members = [
        CohortMember(ClientJob(0, cid, cid, "cpu", s), s.copy())
        for cid, s in enumerate(states)
    ]
    results = client.as_cohort().train(
        members, broadcast, stop_event=_Never(), cache={}
    )
    for cid, (state, res) in enumerate(zip(states, results, strict=True)):
        ctx = _context(cid, state.copy())
        want = client(ctx, broadcast)
        got = res.result
        assert isinstance(got, ClientUpdate)
        assert res.state is not None
        assert got.num_samples == want.num_samples
        assert res.state.rng == ctx.rng.get_state()  # the same draws, bit for bit
        assert (got.params - want.params).abs().max() <= ABS_BOUND
        assert got.metrics.keys() == want.metrics.keys()
        assert got.metrics["loss"] == pytest.approx(want.metrics["loss"], rel=1e-5)
        assert got.extra.keys() == want.extra.keys()
        for key in want.extra:
            assert torch.allclose(got.extra[key], want.extra[key], atol=1e-4)
        if extra:
            assert torch.allclose(res.state.data["c"], ctx.state["c"], atol=1e-4)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
def test_ten_rounds_stay_within_the_bound(algorithm: Algorithm, model: str) -> None:
    """After 10 rounds the cohort model is within ABS/REL_BOUND of per-client."""
    want, _ = _run(InlineExecutor(), algorithm, 10, model)
    got, _ = _run(CohortExecutor(1, max_cohort=4), algorithm, 10, model)
    diff = (got - want).abs().max().item()
    assert diff <= ABS_BOUND
    assert diff / want.abs().max().item() <= REL_BOUND
    assert not torch.equal(got, want) or diff == 0.0  # the statement above


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cohort_runs_are_bitwise_run_to_run_and_across_workers(model: str) -> None:
    """The same max_cohort on 1 or 2 workers, twice: the same model, bitwise."""
    algorithm = Scaffold(num_clients=N)
    first, metrics = _run(CohortExecutor(1, max_cohort=3), algorithm, 3, model)
    for executor in (CohortExecutor(1, max_cohort=3), CohortExecutor(2, max_cohort=3)):
        params, other = _run(executor, algorithm, 3, model)
        assert torch.equal(params, first)
        assert other == metrics


def test_linear_models_are_bitwise_across_cohort_sizes() -> None:
    """Linear layers batch as independent matmuls: any chunking, the same bits."""
    algorithm = Scaffold(num_clients=N)
    first, metrics = _run(CohortExecutor(1, max_cohort=3), algorithm, 3)
    for executor in (CohortExecutor(2, max_cohort=2), CohortExecutor(1)):
        params, other = _run(executor, algorithm, 3)
        assert torch.equal(params, first)
        assert other == metrics


def test_conv_models_are_bitwise_across_cohort_sizes() -> None:
    """A CNN chunked by 1, 2, 3 or 6 clients, on 1 or 2 workers: the same bits
    (grouped convolutions compute each client alone; a stack of one is padded
    to two, never run as torch's ungrouped convolution)."""
    first, metrics = _run(CohortExecutor(1, max_cohort=3), FedAvg(), 3, "cnn")
    for executor in (
        CohortExecutor(1, max_cohort=1),
        CohortExecutor(2, max_cohort=2),
        CohortExecutor(1, max_cohort=6),
    ):
        params, other = _run(executor, FedAvg(), 3, "cnn")
        assert torch.equal(params, first)
        assert other == metrics


def _run_workers(executor: CohortExecutor, model: str) -> tuple[Any, set[str]]:
    dataset = _tiny() if model == "mlp" else _tiny((1, 8, 8))
    zoo = ModelZoo(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    server = FederatedServer(
        FedAvg(), zoo, model, dataset=dataset, num_clients=N, rounds=2, seed=3
    )
    client = FederatedClient(FedAvg(), zoo, model, dataset, batch_size=5, lr=0.05)
    sim = Simulation(server, client, executor=executor, seed=3, evaluate_every=0)
    results = sim.run_sync()
    return server.params, {c.worker for r in results for c in r.clients}


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_automatic_size_keeps_every_worker_busy_with_the_same_bits(model: str) -> None:
    """Automatic max_cohort on 2 workers: a round of 8 clients (cap 256) is cut
    into two chunks, trained by both workers, ending on the 1-worker bits."""
    one, one_workers = _run_workers(CohortExecutor(1), model)
    two, two_workers = _run_workers(CohortExecutor(2), model)
    assert len(one_workers) == 1
    assert len(two_workers) == 2
    assert torch.equal(one, two)


def test_chunk_sizes_balance_an_automatic_size_only() -> None:
    """Automatic: balanced, at least one chunk per worker; given: exact."""
    from blazefl.sim._jobs import ClientJob as Job

    state = ClientState(create_client_rng_suite(0, 0).get_state())
    jobs = [Job(0, i, i, "cpu", state) for i in range(7)]
    auto = CohortExecutor(2)
    auto._size = 3
    auto._trainer = type("T", (), {"chunk_invariant": True})()  # type: ignore[assignment]
    assert auto.chunk_sizes(jobs) == [3, 2, 2]
    auto._trainer = type("T", (), {"chunk_invariant": False})()  # type: ignore[assignment]
    assert auto.chunk_sizes(jobs) == [3, 3, 1]
    given = CohortExecutor(2, max_cohort=5)
    assert given.chunk_sizes(jobs) == [5, 2]
    assert CohortExecutor(4, max_cohort=5).chunk_sizes(jobs[:0]) == []


class _Never:
    def is_set(self) -> bool:
        return False


def _context(cid: int, state: ClientState) -> ClientContext:
    from blazefl.reproducibility import RNGSuite

    return ClientContext(
        cid=cid,
        round=0,
        slot=cid,
        device="cpu",
        rng=RNGSuite.from_state(state.rng),
        state=state.data,
        stop_event=_Never(),
        log=None,
        cache={},
    )


class _Custom(FedAvg):
    name = "custom"

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        return super().client_update(ctx, local, broadcast)


def test_custom_client_update_is_refused() -> None:
    """A client_update of its own cannot be batched: refused, naming executors."""
    dataset = _leaf()
    zoo = ModelZoo(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    client = FederatedClient(_Custom(), zoo, "mlp", dataset)
    with pytest.raises(ConfigurationError, match=r"custom Python.*ThreadExecutor"):
        client.as_cohort()


class _Branchy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(60, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return self.fc(x)
        return -self.fc(x)


class _Selector:
    def __init__(self, make: Any) -> None:
        self.make = make

    def select_model(self, name: str) -> torch.nn.Module:
        return self.make()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_Branchy, r"cannot be batched with torch.func.vmap"),
        (
            lambda: torch.nn.Sequential(
                torch.nn.Linear(60, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 10)
            ),
            r"BatchNorm1d\) keeps running statistics",
        ),
        (
            lambda: torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(60, 10)),
            r"Dropout\) draws random masks",
        ),
    ],
)
def test_unbatchable_models_are_refused(make: Any, match: str) -> None:
    """Control flow on data, BatchNorm statistics, dropout: refused at construction."""
    client = FederatedClient(FedAvg(), _Selector(make), "m", _leaf())
    with pytest.raises(ConfigurationError, match=match + r".*ProcessExecutor"):
        client.as_cohort()
