"""A tiny federation for the per-client evaluation tests (importable by
process workers, so its classes live at module level)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.algorithms._base import Broadcast, ClientUpdate, LocalTraining
from blazefl.data import TensorPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import ClientContext, Executor, Simulation

NUM_CLIENTS = 6
SEED = 11


def dataset(num_clients: int = NUM_CLIENTS) -> TensorPartitionedDataset:
    """``num_clients`` clients of 8 training and 4 test samples (12x12 grey)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8 * num_clients, 1, 12, 12, generator=g)
    y = torch.randint(0, 10, (8 * num_clients,), generator=g)
    tx = torch.randn(4 * num_clients, 1, 12, 12, generator=g)
    ty = torch.randint(0, 10, (4 * num_clients,), generator=g)
    return TensorPartitionedDataset(
        x,
        y,
        [list(range(8 * c, 8 * c + 8)) for c in range(num_clients)],
        tx,
        ty,
        num_classes=10,
        client_test_indices=[list(range(4 * c, 4 * c + 4)) for c in range(num_clients)],
    )


@dataclass(frozen=True)
class Personal(FedAvg):
    """A personalizing FedAvg: each client keeps a running count in its state
    and, at evaluation, fine-tunes the global model for one epoch (shuffled by
    ``ctx.rng``) and scribbles over ``ctx.state`` (which must be discarded)."""

    personalized: ClassVar[bool] = True

    def client_update(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> ClientUpdate:
        ctx.state["trained"] = int(ctx.state.get("trained", 0)) + 1
        ctx.state["noise"] = torch.rand(3, generator=ctx.rng.torch_cpu)
        return super().client_update(ctx, local, broadcast)

    def personalize(
        self, ctx: ClientContext, local: LocalTraining, broadcast: Broadcast
    ) -> torch.Tensor:
        ctx.state["trained"] = -100  # never committed
        ctx.state["scribble"] = torch.ones(2)
        ctx.rng.python.random()
        local.run()
        return local.params()


@dataclass(frozen=True)
class FailingFor(FederatedClient):
    """FederatedClient whose evaluation raises for the clients in ``bad``."""

    bad: tuple[int, ...] = ()

    def evaluate_client(self, ctx: ClientContext, broadcast: Any) -> dict[str, float]:
        if ctx.cid in self.bad:
            raise RuntimeError(f"evaluation of {ctx.cid} broke")
        return super().evaluate_client(ctx, broadcast)


def federation(
    executor: Executor,
    *,
    algorithm: Any = None,
    rounds: int = 3,
    num_clients: int = NUM_CLIENTS,
    bad: tuple[int, ...] = (),
    **kwargs: Any,
) -> tuple[Simulation[Any, Any], FederatedServer]:
    """A personalizing federation of ``num_clients`` (half sampled per round)."""
    data = dataset(num_clients)
    algo = Personal() if algorithm is None else algorithm
    server = FederatedServer(
        algo,
        ModelZoo(),
        "cnn",
        dataset=data,
        num_clients=num_clients,
        rounds=rounds,
        sample_ratio=0.5,
        seed=SEED,
    )
    client = FailingFor(algo, ModelZoo(), "cnn", data, batch_size=4, bad=bad)
    sim = Simulation(server, client, executor=executor, seed=SEED, **kwargs)
    return sim, server
