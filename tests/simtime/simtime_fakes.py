"""A tiny federation for the simulated-time tests, and a client that finishes
in a random real order (sleep jitter from an unseeded source)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from blazefl.algorithms import Algorithm, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import ClientContext, Simulation
from blazefl.simtime import ProfileSet, SimTime, generate_profiles

NUM_CLIENTS = 12
SEED = 7
_JITTER = random.SystemRandom()  # deliberately unseeded: real order is random


def data() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(
        NUM_CLIENTS, seed=0, samples_per_client=24, test_samples=60
    )


@dataclass(frozen=True)
class JitterClient:
    """FederatedClient that first sleeps a random real time (0-20 ms)."""

    inner: FederatedClient

    @property
    def epochs(self) -> int:
        return self.inner.epochs

    @property
    def dataset(self) -> Any:
        return self.inner.dataset

    def __call__(self, ctx: ClientContext, broadcast: Any) -> Any:
        time.sleep(_JITTER.uniform(0.0, 0.02))
        return self.inner(ctx, broadcast)


def profiles(online_fraction: float = 1.0) -> ProfileSet:
    return generate_profiles(
        NUM_CLIENTS,
        SEED,
        compute_sigma=1.0,
        online_fraction=online_fraction,
        period=30.0,
    )


def simulation(
    algorithm: Algorithm,
    executor: Any,
    time_model: SimTime | None,
    *,
    rounds: int = 4,
    sample_ratio: float = 0.5,
    wrap: Callable[[JitterClient], Any] | None = None,
    **kwargs: Any,
) -> tuple[FederatedServer, Simulation[Any, Any]]:
    dataset = data()
    server = FederatedServer(
        algorithm,
        ModelZoo(),
        "mlp",
        dataset=dataset,
        num_clients=NUM_CLIENTS,
        rounds=rounds,
        sample_ratio=sample_ratio,
        seed=SEED,
    )
    client = JitterClient(
        FederatedClient(
            algorithm, ModelZoo(), "mlp", dataset, epochs=1, batch_size=8, lr=0.1
        )
    )
    sim = Simulation(
        server,
        client if wrap is None else wrap(client),
        executor=executor,
        seed=SEED,
        time=time_model,
        evaluate_every=0,
        **kwargs,
    )
    return server, sim


def final_params(server: FederatedServer) -> torch.Tensor:
    return server.params.clone()
