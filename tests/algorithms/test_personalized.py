"""The personalized algorithms' defining properties: what each keeps on the
client, what the server averages, and their limiting cases."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from personal_fakes import CLIENTS, context, dataset, federation, outcome, simulation

from blazefl import ConfigurationError
from blazefl.algorithms import (
    APFL,
    Algorithm,
    Broadcast,
    Ditto,
    FedAvg,
    FedBN,
    FederatedClient,
    FederatedServer,
    FedPer,
    FedRep,
    Finetune,
    LocalTraining,
)
from blazefl.algorithms._fedper import frozen_except
from blazefl.algorithms._local_parts import batchnorm_entries, entry_mask, head_entries
from blazefl.core import deserialize_model, serialize_model
from blazefl.models import ModelZoo
from blazefl.training import train


def _local(
    client: FederatedClient, cid: int, broadcast: Broadcast, ctx: Any
) -> LocalTraining:
    """What `FederatedClient` hands the algorithm: the broadcast model over
    client ``cid``'s training data, shuffled by ``ctx``'s RNG."""
    model = ModelZoo().select_model(client.model_name)
    deserialize_model(model, broadcast.params)
    data = client.dataset
    return LocalTraining(
        model=model,
        loader=data.get_dataloader("train", cid, client.batch_size, ctx.rng.torch_cpu),
        epochs=client.epochs,
        lr=client.lr,
        device="cpu",
        stop_event=ctx.stop_event,
        num_samples=len(data.get_dataset("train", cid)),
    )


def _broadcast(server: FederatedServer) -> Broadcast:
    return server.downlink_package()


@pytest.mark.parametrize("algorithm", [FedPer(), FedRep(head_epochs=2)], ids=str)
def test_head_is_never_averaged(algorithm: FedPer) -> None:
    """FedPer/FedRep: after rounds the server's head is its initial one, its
    body moved, and two clients' heads (kept in ctx.state) differ."""
    sim = simulation(algorithm, rounds=4)
    initial = sim.handler.params.clone()  # type: ignore[attr-defined]
    sim.run_sync()
    params, states = outcome(sim)
    head = entry_mask(
        ModelZoo().select_model("mlp"), ["layers.3.weight", "layers.3.bias"]
    )
    assert torch.equal(params[head], initial[head])
    assert not torch.equal(params[~head], initial[~head])
    heads = [s["local"] for s in states.values()]
    assert len(heads) >= 2
    assert all(h.numel() == int(head.sum()) for h in heads)
    assert not torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], initial[head])


def test_fedper_upload_carries_the_broadcast_head() -> None:
    """The head a client trains stays in ctx.state; its upload has the
    broadcast's head in its place."""
    server, client = federation(FedPer())
    broadcast = _broadcast(server)
    ctx = context(1)
    update = client(ctx, broadcast)
    head = FedPer().mask(ModelZoo().select_model("mlp"))
    assert torch.equal(update.params[head], broadcast.params[head])
    assert not torch.equal(ctx.state["local"], broadcast.params[head])
    assert not torch.equal(update.params[~head], broadcast.params[~head])


def test_head_entries_are_the_last_parameter_tensors() -> None:
    """head_tensors counts trailing parameter tensors; all of them is refused."""
    model = ModelZoo().select_model("cnn_bn")
    assert head_entries(model, 2) == ["fc2.weight", "fc2.bias"]
    assert head_entries(model, 4) == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    with pytest.raises(ConfigurationError, match=r"head_tensors=12 .* below 12"):
        head_entries(model, 12)


def test_frozen_except_trains_only_the_named_parameters() -> None:
    """FedRep's phases: frozen parameters do not move, and thaw afterwards."""
    model = ModelZoo().select_model("mlp")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(8, 1, 12, 12), torch.arange(8) % 10
    with frozen_except(model, {"layers.3.bias"}):
        train(model, [(x, y)], epochs=1, lr=0.5)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) == (name != "layers.3.bias"), name
        assert p.requires_grad


def test_fedbn_keeps_batchnorm_on_the_clients() -> None:
    """FedBN: the global model's BatchNorm entries are untouched by
    aggregation; each client's (trained statistics included) are its own."""
    sim = simulation(FedBN(), rounds=3)
    initial = sim.handler.params.clone()  # type: ignore[attr-defined]
    sim.run_sync()
    params, states = outcome(sim)
    model = ModelZoo().select_model("cnn_bn")
    bn = entry_mask(model, batchnorm_entries(model))
    assert int(bn.sum()) == (4 * 16 + 1) + (4 * 32 + 1)
    assert torch.equal(params[bn], initial[bn])
    assert not torch.equal(params[~bn], initial[~bn])
    kept = [s["local"] for s in states.values()]
    assert len(kept) >= 2
    assert all(k.numel() == int(bn.sum()) for k in kept)
    assert not torch.equal(kept[0], kept[1])
    # bn1.running_mean (after the 16 weights and 16 biases) left its zeros.
    assert torch.count_nonzero(kept[0][32:48]) == 16


def test_fedbn_refuses_a_model_without_batchnorm() -> None:
    """FedBN on the plain CNN fails when the server is built, naming cnn_bn."""
    with pytest.raises(ConfigurationError, match=r"no(ne)?.*'cnn_bn'"):
        FederatedServer(
            FedBN(), ModelZoo(), "cnn", dataset=dataset(), num_clients=CLIENTS, rounds=1
        )


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b))


def test_ditto_lambda_zero_is_pure_local_training() -> None:
    """λ = 0: the personal model is plain SGD from its stored vᵢ; the upload
    is FedAvg's update."""
    server, client = federation(Ditto(lam=0.0, personal_epochs=2))
    broadcast = _broadcast(server)
    v0 = broadcast.params + 0.05
    ctx = context(2, {"v": v0.clone()})
    update = client(ctx, broadcast)
    # The reference consumes the same RNG stream: FedAvg's epoch, then vᵢ's.
    ref_ctx = context(2)
    fedavg = FederatedClient(
        FedAvg(), ModelZoo(), "mlp", client.dataset, epochs=1, batch_size=8, lr=0.1
    )
    assert torch.equal(update.params, fedavg(ref_ctx, broadcast).params)
    local = _local(client, 2, Broadcast(0, v0), ref_ctx)
    train(local.model, local.loader, epochs=2, lr=0.1)
    assert torch.equal(ctx.state["v"], serialize_model(local.model))


def test_ditto_large_lambda_stays_near_the_global_model() -> None:
    """The larger λ, the closer vᵢ stays to the broadcast (λ·lr < 1)."""
    distances = []
    for lam in (0.0, 1.0, 9.0):
        server, client = federation(Ditto(lam=lam, personal_epochs=5))
        broadcast = _broadcast(server)
        ctx = context(0)
        client(ctx, broadcast)
        distances.append(_distance(ctx.state["v"], broadcast.params))
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 0.5 * distances[0], distances


def test_apfl_with_alpha_zero_is_the_global_model() -> None:
    """α = 0 (fixed): the personalized model is the broadcast, exactly, and
    the upload is FedAvg's update."""
    server, client = federation(APFL(mix=0.0, mix_lr=0.0))
    broadcast = _broadcast(server)
    ctx = context(1)
    update = client(ctx, broadcast)
    fedavg = FederatedClient(
        FedAvg(), ModelZoo(), "mlp", client.dataset, epochs=1, batch_size=8, lr=0.1
    )
    assert torch.equal(update.params, fedavg(context(1), broadcast).params)
    personal = APFL(mix=0.0, mix_lr=0.0).personalize(
        ctx, _local(client, 1, broadcast, ctx), broadcast
    )
    assert personal is not None
    assert torch.equal(personal, broadcast.params)


def test_apfl_adapts_alpha_within_the_unit_interval() -> None:
    """With mix_lr > 0, αᵢ moves from its start and stays in [0, 1]; the
    personalized model mixes vᵢ and w by it."""
    algorithm = APFL(mix=0.5, mix_lr=0.5)
    server, client = federation(algorithm)
    broadcast = _broadcast(server)
    ctx = context(3)
    client(ctx, broadcast)
    alpha = float(ctx.state["alpha"])
    assert alpha != 0.5
    assert 0.0 <= alpha <= 1.0
    personal = algorithm.personalize(ctx, _local(client, 3, broadcast, ctx), broadcast)
    expected = alpha * ctx.state["v"] + (1 - alpha) * broadcast.params
    assert personal is not None
    assert torch.equal(personal, expected)


def test_finetune_zero_epochs_is_the_global_model() -> None:
    """finetune_epochs = 0 returns the broadcast; 1 returns one epoch of SGD
    from it on the client's data."""
    server, client = federation(Finetune(finetune_epochs=0))
    broadcast = _broadcast(server)
    ctx = context(0)
    zero = Finetune(finetune_epochs=0).personalize(
        ctx, _local(client, 0, broadcast, ctx), broadcast
    )
    assert zero is not None
    assert torch.equal(zero, broadcast.params)
    ctx, ref = context(0), context(0)
    one = Finetune(finetune_epochs=1).personalize(
        ctx, _local(client, 0, broadcast, ctx), broadcast
    )
    local = _local(client, 0, broadcast, ref)
    train(local.model, local.loader, epochs=1, lr=0.1)
    assert one is not None
    assert torch.equal(one, serialize_model(local.model))
    assert not torch.equal(one, broadcast.params)


@pytest.mark.parametrize(
    "algorithm",
    [Ditto(), FedPer(), FedRep(), APFL()],
    ids=lambda a: a.name,
)
def test_a_client_that_never_trained_has_the_global_model(algorithm: Algorithm) -> None:
    """personalize without any client state is the broadcast."""
    server, client = federation(algorithm)
    broadcast = _broadcast(server)
    ctx = context(0)
    personal = algorithm.personalize(ctx, _local(client, 0, broadcast, ctx), broadcast)
    assert personal is not None
    assert torch.equal(personal, broadcast.params)


def test_evaluate_client_reports_the_personal_model() -> None:
    """After training, a Ditto client's personal accuracy is measured on its
    own test share beside the global model's (feature-shifted data)."""
    data = dataset(feature_shift=True)
    server, client = federation(Ditto(), data)
    broadcast = _broadcast(server)
    ctx = context(0)
    client(ctx, broadcast)
    metrics = client.evaluate_client(ctx, broadcast)
    assert metrics["num_test_samples"] == 10
    assert {"acc_global", "acc_personal"} <= set(metrics)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Ditto(lam=-1.0), r"lam"),
        (lambda: Ditto(personal_epochs=0), r"personal_epochs"),
        (lambda: FedPer(head_tensors=0), r"head_tensors"),
        (lambda: FedRep(head_epochs=0), r"head_epochs"),
        (lambda: APFL(mix=1.5), r"mix"),
        (lambda: APFL(mix_lr=-0.1), r"mix_lr"),
        (lambda: Finetune(finetune_epochs=-1), r"finetune_epochs"),
    ],
)
def test_bad_settings_are_refused(make: Any, match: str) -> None:
    """Each setting is checked at construction, naming it."""
    with pytest.raises(ConfigurationError, match=match):
        make()


@pytest.mark.parametrize(
    ("algorithm", "model", "match"),
    [
        (Ditto(), "mlp", r"ditto trains what each client keeps"),
        (FedBN(), "cnn_bn", r"fedbn trains what each client keeps"),
        (FedAvg(), "cnn_bn", r"bn1 \(BatchNorm2d\) keeps running statistics"),
    ],
)
def test_cohort_refuses_personalized_and_batchnorm(
    algorithm: Algorithm, model: str, match: str
) -> None:
    """The cohort executor names what it cannot batch and the executors that can."""
    client = FederatedClient(algorithm, ModelZoo(), model, dataset())
    with pytest.raises(ConfigurationError, match=match + r".*ThreadExecutor"):
        client.as_cohort()


def test_finetune_trains_as_a_cohort_like_fedavg() -> None:
    """Finetune's training is FedAvg's, so the cohort executor takes it."""
    client = FederatedClient(Finetune(), ModelZoo(), "mlp", dataset())
    client.as_cohort()


def test_apfl_keeps_batchnorm_statistics_of_its_local_model() -> None:
    """On a BatchNorm model, vᵢ's running statistics follow the mixed model's
    batches (they start at zero mean and leave it)."""
    data = dataset(feature_shift=True)
    algorithm = APFL()
    server = FederatedServer(
        algorithm, ModelZoo(), "cnn_bn", dataset=data, num_clients=CLIENTS, rounds=1
    )
    client = FederatedClient(algorithm, ModelZoo(), "cnn_bn", data, batch_size=8)
    ctx = context(0)
    client(ctx, _broadcast(server))
    model = ModelZoo().select_model("cnn_bn")
    running_mean = entry_mask(model, ["bn1.running_mean"])
    assert torch.count_nonzero(ctx.state["v"][running_mean]) == 16
