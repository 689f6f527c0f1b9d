"""`FederatedClient.evaluate_client` and the `Algorithm.personalize` seam."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar

import structlog
import torch

from blazefl.algorithms import FedAvg, FederatedClient
from blazefl.algorithms._base import Broadcast, LocalTraining
from blazefl.core import serialize_model
from blazefl.data import TensorPartitionedDataset
from blazefl.models import ModelZoo, build_model
from blazefl.reproducibility import create_client_rng_suite
from blazefl.sim import ClientContext


def _dataset() -> TensorPartitionedDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 12, 12, generator=g)
    y = torch.randint(0, 10, (40,), generator=g)
    tx = torch.randn(12, 1, 12, 12, generator=g)
    ty = torch.randint(0, 10, (12,), generator=g)
    return TensorPartitionedDataset(
        x,
        y,
        [list(range(0, 20)), list(range(20, 40))],
        tx,
        ty,
        client_test_indices=[list(range(0, 8)), []],
    )


def _ctx(cid: int) -> ClientContext:
    return ClientContext(
        cid=cid,
        round=0,
        slot=0,
        device="cpu",
        rng=create_client_rng_suite(1, cid),
        state={},
        stop_event=threading.Event(),
        log=structlog.get_logger(),
        cache={},
    )


@dataclass(frozen=True)
class _Zeroed(FedAvg):
    """Personalized model: the global one with every weight zeroed."""

    personalized: ClassVar[bool] = True

    def personalize(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> torch.Tensor:
        return torch.zeros_like(broadcast.params)


def test_global_model_measured_on_the_clients_own_test_data() -> None:
    dataset = _dataset()
    work = FederatedClient(FedAvg(), ModelZoo(), "cnn", dataset, batch_size=5)
    params = serialize_model(build_model(ModelZoo(), "cnn"))
    metrics = work.evaluate_client(_ctx(0), Broadcast(0, params))
    assert metrics["num_test_samples"] == 8.0
    assert set(metrics) == {"num_test_samples", "acc_global", "loss_global"}
    model = build_model(ModelZoo(), "cnn")
    test = dataset.get_dataset("test", 0)
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.tensor([int(test[i][1]) for i in range(len(test))])
    with torch.no_grad():
        right = (model(xs).argmax(1) == ys).sum().item()
    assert metrics["acc_global"] == right / 8


def test_a_client_without_test_data_reports_no_accuracy() -> None:
    work = FederatedClient(FedAvg(), ModelZoo(), "cnn", _dataset())
    params = serialize_model(build_model(ModelZoo(), "cnn"))
    assert work.evaluate_client(_ctx(1), Broadcast(0, params)) == {
        "num_test_samples": 0.0
    }


def test_personalized_model_is_measured_beside_the_global_one() -> None:
    work = FederatedClient(_Zeroed(), ModelZoo(), "cnn", _dataset(), batch_size=5)
    params = serialize_model(build_model(ModelZoo(), "cnn"))
    metrics = work.evaluate_client(_ctx(0), Broadcast(0, params))
    # A zero model predicts class 0 everywhere with loss log(10).
    assert abs(metrics["loss_personal"] - torch.log(torch.tensor(10.0)).item()) < 1e-6
    assert metrics["loss_global"] != metrics["loss_personal"]
