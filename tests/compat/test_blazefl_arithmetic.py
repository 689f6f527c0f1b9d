"""The BlazeFL FedAvg handler aggregates in BlazeFL 3.0's float32 arithmetic."""

from __future__ import annotations

import torch

from blazefl.algorithms import ClientUpdate, FedAvg
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


def test_fedavg_keeps_float64_accumulation() -> None:
    """FedAvg still accumulates in float64 and rounds once, as before."""
    uploads = _uploads(torch.zeros(1000))
    total = float(sum(n for _, n in uploads))
    old = torch.zeros(1000, dtype=torch.float64)
    for p, n in uploads:
        old.add_(p.to(torch.float64), alpha=n / total)
    got = FedAvg().aggregate(
        torch.zeros(1000),
        [ClientUpdate(i, p, n) for i, (p, n) in enumerate(uploads)],
        {},
    )
    assert torch.equal(got, old.to(torch.float32))
