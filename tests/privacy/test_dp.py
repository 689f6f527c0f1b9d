"""Central and local DP: clipping, uniform weights, noise from the right RNG,
adaptive clipping, the budget, and the combinations refused."""

from __future__ import annotations

import math

import pytest
import torch
from privacy_fakes import NUM_CLIENTS, dataset, make_ctx, run

from blazefl import ConfigurationError, RoundFailedError
from blazefl.algorithms import (
    Broadcast,
    ClientUpdate,
    FedAvg,
    FedAvgM,
    FederatedClient,
    FederatedServer,
    Scaffold,
)
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.privacy import Privacy, PrivateAggregation
from blazefl.privacy._clipping import clip
from blazefl.privacy._settings import CLIP_KEY, UPDATE_KEY
from blazefl.reproducibility import create_rng_suite


@pytest.fixture(scope="module")
def data() -> SyntheticPartitionedDataset:
    return dataset()


def test_clip_bounds_the_norm_and_keeps_small_updates() -> None:
    """A long update is scaled to norm C; a short one is left as it is."""
    long = torch.full((100,), 1.0)
    clipped, norm = clip(long, 2.0)
    assert norm == pytest.approx(10.0)
    assert float(torch.linalg.vector_norm(clipped)) == pytest.approx(2.0)
    short, _ = clip(torch.full((4,), 0.1), 2.0)
    assert torch.equal(short, torch.full((4,), 0.1).double())
    l1, _ = clip(long, 2.0, order=1)
    assert float(l1.abs().sum()) == pytest.approx(2.0)


def _update(cid: int, delta: float, n: int, base: torch.Tensor) -> ClientUpdate:
    return ClientUpdate(cid, base + delta, n)


def _transform(
    privacy: Privacy, update: ClientUpdate, base: torch.Tensor
) -> ClientUpdate:
    broadcast = Broadcast(0, base, {CLIP_KEY: torch.tensor(1.0, dtype=torch.float64)})
    return privacy.client_transform(make_ctx(update.cid), broadcast, update)


def test_central_dp_weights_clients_uniformly_and_noises_from_the_server_rng() -> None:
    """With DP on, a client of 1000 samples counts like one of 1: the mean of
    the clipped deltas, plus N(0, (σC)²)/m drawn from the server's suite."""
    base = torch.zeros(20_000)
    privacy = Privacy(dp="central", noise_multiplier=0.5, clip_norm=1.0)
    agg = PrivateAggregation(privacy, num_clients=10, clients_per_round=2)
    ups = [
        _transform(privacy, _update(0, 0.001, 1000, base), base),
        _transform(privacy, _update(1, -0.001, 1, base), base),
    ]
    rng = create_rng_suite(5)
    out = agg.aggregate(base, ups, [0, 1], 0, rng)
    noise = (out.params.double() - base.double()) * 2  # the sum's noise
    assert float(noise.std()) == pytest.approx(0.5, rel=0.03)
    again = agg.aggregate(base, ups, [0, 1], 0, create_rng_suite(5))
    assert torch.equal(out.params, again.params)
    # Same draw without the updates' signal: the deltas cancel exactly.
    expected = (
        torch.randn(
            20_000, generator=create_rng_suite(5).torch_cpu, dtype=torch.float64
        )
        * 0.5
    )
    assert torch.allclose(noise, expected, atol=1e-5)


def test_local_dp_noise_comes_from_the_client_suite() -> None:
    """Local noise of σC per element, the same for the same client suite."""
    base = torch.zeros(10_000)
    privacy = Privacy(dp="local", noise_multiplier=2.0, clip_norm=1.0)
    one = _transform(privacy, _update(3, 0.0, 5, base), base)
    two = _transform(privacy, _update(3, 0.0, 5, base), base)
    vector = one.extra[UPDATE_KEY]
    assert torch.equal(vector, two.extra[UPDATE_KEY])
    assert float(vector[:-1].std()) == pytest.approx(2.0, rel=0.03)
    assert float(vector[-1]) == 1.0  # the uniform weight
    assert torch.equal(one.params, base)  # the model vector carries nothing


def test_adaptive_clipping_tracks_the_median_norm(
    data: SyntheticPartitionedDataset,
) -> None:
    """From far above every update norm C falls; from far below it rises."""
    ends = []
    for start in (100.0, 0.01):
        privacy = Privacy(
            dp="central",
            noise_multiplier=0.01,
            clip_norm=start,
            adaptive_clip=True,
            clip_learning_rate=0.5,
            clip_count_stddev=0.1,
        )
        server, _ = run(privacy, data, rounds=6)
        ends.append(server.privacy.clip_norm)
    # Six steps of exp(∓0.5·(b̄ − ½)) with b̄ near 1 (or 0): about e^∓1.5.
    assert ends[0] < 100.0 * math.exp(-1.0)
    assert ends[1] > 0.01 * math.exp(1.0)


def test_budget_stops_before_the_round_that_would_exceed_it(
    data: SyntheticPartitionedDataset,
) -> None:
    """Simulation.run() ends when the next round would overspend the target."""
    probe = PrivateAggregation(
        Privacy(dp="central", noise_multiplier=1.0), NUM_CLIENTS, 4
    )
    eps = [probe.epsilon(r) for r in (1, 2, 3)]
    target = (eps[1] + eps[2]) / 2
    privacy = Privacy(dp="central", noise_multiplier=1.0, target_epsilon=target)
    server, results = run(privacy, data, rounds=10)
    assert len(results) == 2
    assert server.is_stopped()
    assert results[-1].summary["epsilon"] == pytest.approx(eps[1])
    assert "round 3 would spend epsilon" in server.privacy.budget_stop(2)


def test_dp_composes_with_server_optimizers(data: SyntheticPartitionedDataset) -> None:
    """FedAvgM takes the private mean update as its pseudo-gradient."""
    privacy = Privacy(dp="central", noise_multiplier=0.1, clip_norm=5.0)
    server, results = run(privacy, data, rounds=2, algorithm=FedAvgM())
    assert torch.isfinite(server.params).all()
    assert results[-1].summary["epsilon"] > 0


@pytest.mark.parametrize(
    ("privacy", "match"),
    [
        (
            Privacy(dp="central", noise_multiplier=1.0),
            r"central DP cannot be combined with scaffold: it uploads delta_c",
        ),
        (Privacy(secagg=True), r"secure aggregation cannot be combined with scaffold"),
    ],
)
def test_scaffold_is_refused(
    privacy: Privacy, match: str, data: SyntheticPartitionedDataset
) -> None:
    """SCAFFOLD's control variates would be an unclipped, unmasked channel."""
    with pytest.raises(ConfigurationError, match=match):
        FederatedServer(
            Scaffold(num_clients=NUM_CLIENTS),
            ModelZoo(),
            "mlp",
            dataset=data,
            num_clients=NUM_CLIENTS,
            rounds=1,
            privacy=privacy,
        )


@pytest.mark.parametrize("aggregator", ["median", "trimmed-mean", "krum", "bulyan"])
def test_secagg_and_dp_refuse_aggregators_needing_individual_updates(
    aggregator: str,
) -> None:
    """Both name the aggregator and why."""
    with pytest.raises(
        ConfigurationError,
        match=rf"--secagg cannot be combined with --aggregator {aggregator}: it "
        r"needs the individual updates",
    ):
        Privacy(secagg=True).check_with(FedAvg(), aggregator)
    with pytest.raises(
        ConfigurationError,
        match=rf"--dp central cannot be combined with --aggregator {aggregator}: "
        r"it selects or ranks",
    ):
        Privacy(dp="central", noise_multiplier=1.0).check_with(FedAvg(), aggregator)
    Privacy(dp="central", noise_multiplier=1.0).check_with(FedAvg(), "norm-bound")


def test_a_client_without_the_privacy_is_a_failed_slot(
    data: SyntheticPartitionedDataset,
) -> None:
    """An update that skipped the client transform is refused before
    aggregation, naming the client and the fix; nothing is applied."""
    privacy = Privacy(dp="central", noise_multiplier=1.0)
    plain_client = FederatedClient(
        FedAvg(), ModelZoo(), "mlp", data, epochs=1, batch_size=16
    )
    with pytest.raises(
        RoundFailedError,
        match=r"client \d+ sent no extra\['privacy\.update'\]: its work does not "
        r"apply the federation's Privacy",
    ):
        run(privacy, data, rounds=1, client=plain_client)


def test_a_private_client_under_a_plain_server_is_a_failed_slot(
    data: SyntheticPartitionedDataset,
) -> None:
    """The client notices the broadcast has no clip norm and says why."""
    privacy = Privacy(dp="central", noise_multiplier=1.0)
    client = FederatedClient(
        FedAvg(), ModelZoo(), "mlp", data, epochs=1, batch_size=16, privacy=privacy
    )
    with pytest.raises(RoundFailedError, match=r"the server runs without this Privacy"):
        run(Privacy(), data, rounds=1, client=client)
