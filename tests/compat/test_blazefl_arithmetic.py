"""The BlazeFL FedAvg handler aggregates in BlazeFL 3.0's float32 arithmetic."""

from __future__ import annotations

import torch

from blazefl.algorithms import ClientUpdate, FedAvg, WeightedMean, aggregating
from blazefl.contrib import FedAvgBaseServerHandler, FedAvgUplinkPackage
from blazefl.core import serialize_model
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo


def _uploads(like: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.randn(like.shape, generator=gen), n) for n in (7, 13, 29)]


def test_handler_matches_hand_written_float32_loop() -> None:
    """global_update equals Σ p·(n/N) accumulated in float32, bit for bit."""
    data = SyntheticPartitionedDataset(num_clients=4, seed=0)
    handler = FedAvgBaseServerHandler(ModelZoo(), "mlp", data, 1, 4, 0.75, "cpu", 8, 0)
    uploads = _uploads(serialize_model(handler.model))
    total = sum(n for _, n in uploads)
    expected = torch.zeros_like(uploads[0][0])
    for p, n in uploads:
        expected.add_(p, alpha=n / total)
    handler.global_update(
        [FedAvgUplinkPackage(i, p, n) for i, (p, n) in enumerate(uploads)]
    )
    assert torch.equal(serialize_model(handler.model), expected)


def test_fedavg_float64_keeps_the_old_accumulation() -> None:
    """FedAvg with ``WeightedMean(dtype="float64")`` accumulates in float64 and
    rounds once, as FedAvg always did before the model-dtype default; the
    default sums n·p in float32 and divides once (other bits)."""
    uploads = _uploads(torch.zeros(1000))
    total = float(sum(n for _, n in uploads))
    old = torch.zeros(1000, dtype=torch.float64)
    for p, n in uploads:
        old.add_(p.to(torch.float64), alpha=n / total)
    updates = [ClientUpdate(i, p, n) for i, (p, n) in enumerate(uploads)]
    with aggregating(WeightedMean(dtype="float64")):
        got = FedAvg().aggregate(torch.zeros(1000), updates, {})
    assert torch.equal(got, old.to(torch.float32))
    model = uploads[0][0] * uploads[0][1]
    for p, n in uploads[1:]:
        model = torch.add(model, p, alpha=n)
    default = FedAvg().aggregate(torch.zeros(1000), updates, {})
    assert torch.equal(default, model / total)
    assert not torch.equal(default, got)


def test_blazefl_loop_aggregates_real_uploads_in_float32() -> None:
    """In the 3.0 loop, the round's real uploads average exactly as BlazeFL's
    float32 sum, and that differs from the float64 mean: the choice matters."""
    from blazefl.contrib import FedAvgBaseClientTrainer

    data = SyntheticPartitionedDataset(num_clients=4, seed=0)
    handler = FedAvgBaseServerHandler(ModelZoo(), "mlp", data, 1, 4, 1.0, "cpu", 8, 0)
    trainer = FedAvgBaseClientTrainer(ModelZoo(), "mlp", data, "cpu", 4, 1, 8, 0.1, 0)
    trainer.local_process(handler.downlink_package(), handler.sample_clients())
    uploads = trainer.uplink_package()
    total = sum(u.data_size for u in uploads)
    float32 = torch.zeros_like(uploads[0].model_parameters)
    float64 = torch.zeros(float32.shape, dtype=torch.float64)
    for u in uploads:
        float32.add_(u.model_parameters, alpha=u.data_size / total)
        float64.add_(u.model_parameters.double(), alpha=u.data_size / total)
    for upload in uploads:
        handler.load(upload)
    assert handler.round == 1
    assert torch.equal(serialize_model(handler.model), float32)
    assert not torch.equal(float32, float64.to(torch.float32))
