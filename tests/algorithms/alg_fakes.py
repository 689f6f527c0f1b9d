"""Small fakes shared by the tests/algorithms suite.

`ConstantGradModel` is a one-weight model whose cross-entropy gradient is known
in closed form whatever its weight, so a client's K local steps can be followed
by hand; `make_ctx` builds the `ClientContext` the coordinator would pass.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import structlog
import torch
from torch import nn

from blazefl.algorithms import (
    Algorithm,
    ClientUpdate,
    FederatedClient,
    FederatedServer,
    LocalTraining,
)
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.reproducibility import create_rng_suite
from blazefl.sim import ClientContext, Simulation, ThreadExecutor

NUM_CLIENTS = 10
SAMPLES_PER_CLIENT = 64


class ConstantGradModel(nn.Module):
    """One weight w (``nn.Linear(1, 1, bias=False)``); serializes to 1 element.

    The logits are ``[w·x − (w·x).detach(), 0]``, i.e. always ``[0, 0]`` in
    value, so softmax is ``[1/2, 1/2]`` and the batch-mean cross-entropy
    gradient is dL/dw = −mean(x)/2 for label 0 and +mean(x)/2 for label 1,
    whatever w is.
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.fill_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.cat([z - z.detach(), torch.zeros_like(z)], dim=1)

    @property
    def weight(self) -> float:
        return float(self.linear.weight.item())


def batch(xs: Sequence[float], label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of 1-feature inputs, all with the same label."""
    return (
        torch.tensor([[x] for x in xs], dtype=torch.float32),
        torch.full((len(xs),), label, dtype=torch.int64),
    )


# Gradients with ConstantGradModel: mean([1, 3])/2 = 1 and 0.5/2 = 0.25.
FIXED_BATCHES = [batch([1.0, 3.0], 0), batch([0.5], 0)]
"""Two batches whose gradients are −1 and −0.25 (3 samples)."""


def make_ctx(cid: int = 0, state: dict[str, Any] | None = None) -> ClientContext:
    """The context the coordinator would pass client ``cid``."""
    return ClientContext(
        cid=cid,
        round=0,
        slot=0,
        device="cpu",
        rng=create_rng_suite(cid),
        state={} if state is None else state,
        stop_event=threading.Event(),
        log=structlog.get_logger("test"),
        cache={},
    )


def local_training(
    model: nn.Module, *, epochs: int, lr: float, loader: Any = None
) -> LocalTraining:
    """A `LocalTraining` over ``FIXED_BATCHES`` (or ``loader``)."""
    return LocalTraining(
        model=model,
        loader=FIXED_BATCHES if loader is None else loader,
        epochs=epochs,
        lr=lr,
        device="cpu",
        stop_event=threading.Event(),
        num_samples=3,
    )


def update(
    cid: int,
    params: Sequence[float],
    num_samples: int = 1,
    dtype: torch.dtype = torch.float64,
    **extra: Sequence[float],
) -> ClientUpdate:
    """A hand-written client update."""
    return ClientUpdate(
        cid,
        torch.tensor(params, dtype=dtype),
        num_samples,
        extra={k: torch.tensor(v, dtype=dtype) for k, v in extra.items()},
    )


def vec(*values: float) -> torch.Tensor:
    """A float64 vector."""
    return torch.tensor(values, dtype=torch.float64)


def dataset() -> SyntheticPartitionedDataset:
    """The built-in synthetic data: 10 clients of 64 samples."""
    return SyntheticPartitionedDataset(
        NUM_CLIENTS, seed=0, samples_per_client=SAMPLES_PER_CLIENT, test_samples=500
    )


def federation(
    algorithm: Algorithm,
    data: SyntheticPartitionedDataset,
    *,
    rounds: int = 5,
    seed: int = 0,
    model: str = "mlp",
) -> tuple[FederatedServer, FederatedClient]:
    """A server and client pair: 10 clients, half a round, 2 epochs at lr 0.1."""
    server = FederatedServer(
        algorithm,
        ModelZoo(),
        model,
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=rounds,
        sample_ratio=0.5,
        seed=seed,
    )
    client = FederatedClient(
        algorithm, ModelZoo(), model, data, epochs=2, batch_size=16, lr=0.1
    )
    return server, client


def run(
    algorithm: Algorithm,
    data: SyntheticPartitionedDataset,
    *,
    executor: Any = None,
    rounds: int = 5,
    seed: int = 0,
) -> tuple[FederatedServer, list[Any]]:
    """Run a whole federation; return the server and the round results."""
    server, client = federation(algorithm, data, rounds=rounds, seed=seed)
    sim = Simulation(
        server,
        client,
        executor=ThreadExecutor(2) if executor is None else executor,
        seed=seed,
    )
    return server, sim.run_sync()
