"""The robust aggregators: their arithmetic on hand-made rounds, their f-of-n
checks, and their place in every algorithm's aggregation."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.algorithms import (
    ALGORITHMS,
    Aggregator,
    ClientUpdate,
    FedAvg,
    FederatedServer,
    RoundUpdates,
    WeightedMean,
    aggregating,
    weighted_average,
)
from blazefl.algorithms._fedavg import BlazeFLFedAvg
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.robust import (
    Bulyan,
    Krum,
    Median,
    MultiKrum,
    NormBound,
    TrimmedMean,
    make_aggregator,
)


def _round(*rows: list[float], params: list[float] | None = None) -> RoundUpdates:
    models = tuple(torch.tensor(r, dtype=torch.float32) for r in rows)
    base = torch.zeros_like(models[0]) if params is None else torch.tensor(params)
    return RoundUpdates(base, models, tuple(1.0 for _ in rows))


def _cluster(n_honest: int, byzantine: list[list[float]]) -> RoundUpdates:
    """Honest updates near (1, 1), then the Byzantine rows."""
    honest = [[1.0 + 0.01 * i, 1.0 - 0.01 * i] for i in range(n_honest)]
    return _round(*honest, *byzantine)


def test_median_is_coordinatewise_and_averages_the_middle_pair() -> None:
    """Odd n: the middle value; even n: the mean of the two middle ones."""
    odd = Median().aggregate(_round([1, 10], [2, -5], [100, 0]))
    even = Median().aggregate(_round([1, 10], [2, -5], [100, 0], [3, 1]))
    assert odd.tolist() == [2.0, 0.0]
    assert even.tolist() == [2.5, 0.5]


def test_median_ignores_a_far_outlier() -> None:
    """One client at 1e6 does not move the median off the honest values."""
    out = Median(f=1).aggregate(_cluster(4, [[1e6, -1e6]]))
    assert torch.allclose(out, torch.tensor([1.02, 0.98]), atol=0.011)


def test_trimmed_mean_drops_k_from_each_side() -> None:
    """k = f = 1 trims the largest and smallest value of each coordinate."""
    out = TrimmedMean(f=1).aggregate(_round([0], [1], [2], [3], [100]))
    assert out.tolist() == [2.0]


def test_trimmed_mean_beta_sets_k_from_n() -> None:
    """beta = 0.25 of n = 8 trims 2 each side."""
    out = TrimmedMean(beta=0.25).aggregate(_round(*[[float(v)] for v in range(8)]))
    assert out.tolist() == [3.5]
    assert TrimmedMean(beta=0.25).trimmed(8) == 2


def test_krum_keeps_exactly_one_honest_client_model() -> None:
    """Krum's next model is bit for bit one honest client's model."""
    updates = _cluster(5, [[50.0, 50.0], [-40.0, 3.0]])
    assert Krum(f=2).select(updates)[0] < 5
    chosen = Krum(f=2).next_model(updates)
    assert any(torch.equal(chosen, m) for m in updates.models[:5])


def test_krum_breaks_ties_by_slot() -> None:
    """Identical updates: the first slot wins, every time."""
    assert Krum(f=0).select(_round([1.0], [1.0], [1.0])) == [0]


def test_multi_krum_averages_the_m_best() -> None:
    """m = n − f averages the honest updates and leaves the outlier out."""
    updates = _round([1.0], [2.0], [3.0], [4.0], [1000.0])
    assert sorted(MultiKrum(f=1).select(updates)) == [0, 1, 2, 3]
    assert MultiKrum(f=1).aggregate(updates).tolist() == [2.5]
    assert MultiKrum(f=1, m=1).aggregate(updates).tolist() in ([2.0], [3.0])


def test_bulyan_stays_with_the_honest_cluster() -> None:
    """n = 4f + 3 with f = 1 Byzantine client far away: the honest range."""
    updates = _cluster(6, [[-1e3, 1e3]])
    out = Bulyan(f=1).aggregate(updates)
    assert 1.0 <= float(out[0]) <= 1.05
    assert 0.95 <= float(out[1]) <= 1.0
    assert 6 not in Bulyan(f=1).select(updates)


def test_norm_bound_clips_each_update_then_averages() -> None:
    """(3, 4) has norm 5: clipped to norm 1 it is (0.6, 0.8); (0.3, 0) stays."""
    updates = RoundUpdates(
        torch.zeros(2, dtype=torch.float64),
        (torch.tensor([3.0, 4.0], dtype=torch.float64), torch.tensor([0.3, 0.0])),
        (1.0, 3.0),
    )
    out = NormBound(1.0).aggregate(updates)
    expected = (torch.tensor([0.6, 0.8]) + 3 * torch.tensor([0.3, 0.0])) / 4
    assert torch.allclose(out, expected.double())


def test_aggregators_keep_the_model_dtype() -> None:
    """A float32 round aggregates to a float32 delta of the same shape."""
    updates = _cluster(7, [])
    for aggregator in (
        Median(),
        TrimmedMean(f=1),
        Krum(f=1),
        MultiKrum(f=1),
        Bulyan(f=1),
        NormBound(1.0),
    ):
        out = aggregator.aggregate(updates)
        assert out.dtype == torch.float32, aggregator
        assert out.shape == (2,), aggregator


def _model_dtype_mean(models: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Σ wₖ·xₖ in the models' dtype, in order, then / Σ wₖ: written out here
    (``torch.add(..., alpha=w)``: the one rounding of torch's scaled add)."""
    acc = models[0] * weights[0]
    for model, weight in zip(models[1:], weights[1:], strict=True):
        acc = torch.add(acc, model, alpha=weight)
    return acc / sum(weights)


def test_weighted_mean_is_the_model_dtype_mean_by_default() -> None:
    """WeightedMean() sums nₖ·xₖ in float32 and divides by Σ nₖ at the end;
    WeightedMean(dtype="float64") is `weighted_average`, the old arithmetic."""
    params = torch.randn(5, generator=torch.Generator().manual_seed(0))
    models = tuple(params + 0.1 * k for k in range(3))
    updates = RoundUpdates(params, models, (1.0, 2.0, 5.0))
    expected = _model_dtype_mean(list(models), [1.0, 2.0, 5.0])
    assert WeightedMean().dtype == "model"
    assert torch.equal(WeightedMean().next_model(updates), expected)
    assert torch.equal(WeightedMean().aggregate(updates), expected - params)
    old = weighted_average(list(models), [1, 2, 5])
    assert torch.equal(WeightedMean(dtype="float64").next_model(updates), old)
    assert torch.equal(WeightedMean(dtype="float64").aggregate(updates), old - params)


def test_weighted_mean_refuses_an_unknown_dtype() -> None:
    with pytest.raises(ConfigurationError, match=r"dtype='float32'.*'model'"):
        WeightedMean(dtype="float32")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("aggregator", "n", "match"),
    [
        (
            Krum(f=4),
            10,
            r"^Krum\(f=4\) needs n >= 2f \+ 3 = 11 client updates a "
            r"round \(Blanchard et al\., 2017: n > 2f \+ 2\), got n=10",
        ),
        (
            MultiKrum(f=1, m=10),
            10,
            r"averages m=10 updates, but with n=10 and f=1 "
            r"at most n − f = 9",
        ),
        (Bulyan(f=3), 14, r"^Bulyan\(f=3\) needs n >= 4f \+ 3 = 15 client updates"),
        (Median(f=5), 10, r"^Median\(f=5\) needs n >= 2f \+ 1 = 11"),
        (
            TrimmedMean(f=3, beta=0.1),
            15,
            r"trims k = floor\(beta \* n\) = 1 of n=15 "
            r"updates from each side, so it tolerates at most 1 Byzantine clients, "
            r"not f=3",
        ),
    ],
)
def test_assumption_is_checked(aggregator: Any, n: int, match: str) -> None:
    """Each aggregator names its bound, its paper and the n it was given."""
    with pytest.raises(ConfigurationError, match=match):
        aggregator.check(n)


def test_multi_krum_m_at_most_n_minus_f_passes() -> None:
    """m = n − f exactly is allowed."""
    MultiKrum(f=1, m=10).check(11)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Krum(f=-1), r"^Krum\(f=-1\): f, the number of Byzantine clients"),
        (
            lambda: TrimmedMean(beta=0.5),
            r"beta, the fraction trimmed from each "
            r"side, must be in \[0, 0\.5\)",
        ),
        (
            lambda: NormBound(float("nan")),
            r"NormBound\(bound=nan\): the norm bound "
            r"must be a finite number > 0",
        ),
        (lambda: MultiKrum(f=1, m=0), r"MultiKrum\(m=0\): m, the number of updates"),
        (
            lambda: make_aggregator("krun"),
            r"unknown aggregator 'krun'; expected one "
            r"of 'mean', 'median'",
        ),
        (lambda: make_aggregator("norm-bound"), r"'norm-bound' needs its bound M"),
    ],
)
def test_bad_aggregator_settings_are_refused(build: Any, match: str) -> None:
    """Bad settings fail at construction, naming the value."""
    with pytest.raises(ConfigurationError, match=match):
        build()


def _server(aggregator: Any, algorithm: Any = None, **kwargs: Any) -> FederatedServer:
    data = SyntheticPartitionedDataset(
        10, seed=0, samples_per_client=8, test_samples=20
    )
    return FederatedServer(
        algorithm or FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=10,
        rounds=1,
        sample_ratio=1.0,
        aggregator=aggregator,
        **kwargs,
    )


def test_server_checks_the_aggregator_against_its_clients_per_round() -> None:
    """Krum(f=4) on 10 clients a round is refused when the server is built."""
    with pytest.raises(ConfigurationError, match=r"Krum\(f=4\) needs n >= 2f \+ 3"):
        _server(Krum(f=4))


def test_server_refuses_an_algorithm_with_its_own_arithmetic() -> None:
    """BlazeFL's FedAvg computes its own sum: no other aggregator for it."""
    with pytest.raises(
        ConfigurationError,
        match=r"BlazeFLFedAvg computes its own "
        r"aggregate, so it cannot use the aggregator Median",
    ):
        _server(Median(), BlazeFLFedAvg())


def test_server_refuses_a_non_aggregator() -> None:
    """A string is not an aggregator."""
    with pytest.raises(
        ConfigurationError,
        match=r"aggregator must be a "
        r"blazefl\.algorithms\.Aggregator",
    ):
        _server("median")


class _Fixed(Aggregator):
    """An aggregator that always answers Δ = 0.5 and counts its calls."""

    name = "fixed"

    def __init__(self) -> None:
        self.calls = 0

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        self.calls += 1
        return torch.full_like(updates.params, 0.5)


# FedBuff and FedAsync weigh each update by its staleness as it arrives: they
# keep their own aggregation, and a server refuses another aggregator for them.
PLUGGABLE = sorted(n for n, c in ALGORITHMS.items() if c.pluggable_aggregation)


def test_only_the_asynchronous_algorithms_keep_their_own_aggregation() -> None:
    assert sorted(set(ALGORITHMS) - set(PLUGGABLE)) == ["fedasync", "fedbuff"]


@pytest.mark.parametrize("name", PLUGGABLE)
def test_every_algorithm_aggregates_through_the_aggregator(name: str) -> None:
    """Each built-in algorithm asks the current aggregator once per round, and
    its step follows the aggregator's delta, not the mean."""
    cls: Any = ALGORITHMS[name]
    algorithm = cls(num_clients=5) if name == "scaffold" else cls()
    assert cls.pluggable_aggregation
    params = torch.zeros(3)
    updates = [
        ClientUpdate(
            k, torch.full((3,), 0.01 * (k + 1)), 4, extra={"delta_c": torch.zeros(3)}
        )
        for k in range(5)
    ]

    def step(aggregator: Any) -> torch.Tensor:
        state = algorithm.init_state(params)
        if name in ("fedbn", "fedper", "fedrep"):
            # Their server state marks the entries clients keep (from the
            # model's layout): here none, so every entry is aggregated.
            state["local_mask"] = torch.zeros(3)
        with aggregating(aggregator):
            return algorithm.aggregate(params, updates, state)  # type: ignore[no-any-return]

    fixed = _Fixed()
    moved = step(fixed)
    assert fixed.calls == 1
    assert not torch.equal(moved, step(WeightedMean()))
    assert bool((moved > 0).all())


@pytest.mark.parametrize("dtype", ["model", "float64"])
def test_with_the_mean_the_algorithms_keep_their_formulas(dtype: str) -> None:
    """FedAvg, FedAvgM, FedAdam and SCAFFOLD with the weighted mean give bit
    for bit their formulas over that mean (float64: `weighted_average`, what
    they gave before the seam)."""

    g = torch.Generator().manual_seed(1)
    params = torch.randn(7, generator=g)
    updates = [
        ClientUpdate(
            k,
            params + 0.1 * torch.randn(7, generator=g),
            3 + k,
            extra={"delta_c": torch.randn(7, generator=g)},
        )
        for k in range(4)
    ]
    models, weights = [u.params for u in updates], [u.num_samples for u in updates]
    if dtype == "float64":
        mean = weighted_average(models, weights)
    else:
        mean = _model_dtype_mean(models, [float(w) for w in weights])
    delta = mean - params
    with aggregating(WeightedMean(dtype=dtype)):  # type: ignore[arg-type]
        _check_formulas(params, updates, mean, delta)


def _check_formulas(
    params: torch.Tensor,
    updates: list[ClientUpdate],
    mean: torch.Tensor,
    delta: torch.Tensor,
) -> None:
    from blazefl.algorithms import FedAdam, FedAvgM, Scaffold

    assert torch.equal(FedAvg().aggregate(params, updates, {}), mean)
    fedavgm = FedAvgM(server_lr=0.7, momentum=0.5)
    state = fedavgm.init_state(params)
    velocity = torch.zeros_like(params).mul(0.5).add_(delta)
    assert torch.equal(
        fedavgm.aggregate(params, updates, state), params + 0.7 * velocity
    )
    adam = FedAdam()
    state = adam.init_state(params)
    m = adam.beta1 * torch.zeros_like(params) + (1 - adam.beta1) * delta
    v = adam.beta2 * torch.full_like(params, adam.tau**2) + (1 - adam.beta2) * (
        delta * delta
    )
    expected = params + adam.server_lr * m / (v.sqrt() + adam.tau)
    assert torch.equal(adam.aggregate(params, updates, state), expected)
    scaffold = Scaffold(num_clients=8, server_lr=0.9)
    delta_y = torch.zeros_like(params)
    for u in updates:
        delta_y.add_(u.params - params)
    got = scaffold.aggregate(params, updates, scaffold.init_state(params))
    assert torch.equal(got, params + 0.9 * (delta_y / 4))


class _Counting(Aggregator):
    """A stateful aggregator that draws from the server's RNG (as central DP
    noise would) and counts its rounds in its state."""

    name = "counting"

    def __init__(self) -> None:
        self.rounds = 0
        self.draws: list[float] = []

    def aggregate(self, updates: RoundUpdates) -> torch.Tensor:
        assert updates.rng is not None
        self.draws.append(float(torch.rand(1, generator=updates.rng.torch_cpu)))
        self.rounds += 1
        return WeightedMean().aggregate(updates)

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounds = state["rounds"]


def test_aggregator_state_and_server_rng_travel_with_the_checkpoint() -> None:
    """The server hands its RNG suite to the aggregator and checkpoints the
    aggregator's state: a restored server continues both exactly."""
    first = _server(_Counting())
    update = ClientUpdate(0, first.params + 1, 3)
    first.load_round([update] * 10)
    saved = first.state_dict()
    assert saved["aggregator_state"] == {"rounds": 1}
    first.load_round([update] * 10)

    second = _server(_Counting())
    second.load_state_dict(saved)
    assert second.aggregator.rounds == 1  # type: ignore[attr-defined]
    second.load_round([update] * 10)
    assert second.aggregator.draws == first.aggregator.draws[1:]  # type: ignore[attr-defined]
    assert torch.equal(second.params, first.params)


def test_a_stateless_aggregator_refuses_checkpointed_state() -> None:
    """State in the checkpoint that the aggregator cannot hold is refused."""
    server = _server(Median())
    state = server.state_dict()
    state["aggregator_state"] = {"rounds": 3}
    with pytest.raises(
        ConfigurationError,
        match=r"Median keeps no state, but the "
        r"checkpoint holds aggregator state with keys \['rounds'\]",
    ):
        server.load_state_dict(state)


def test_only_the_mean_works_on_a_sum() -> None:
    """A secure sum is enough for the mean; the robust rules need each update."""
    assert not WeightedMean.needs_individual_updates
    for cls in (Median, TrimmedMean, Krum, MultiKrum, Bulyan, NormBound):
        assert cls.needs_individual_updates, cls
