"""Federations of the personalized algorithms, shared by their tests and by
``personal_script.py`` (a plain module, so process workers import it)."""

from __future__ import annotations

import threading
from typing import Any

import structlog
import torch

from blazefl.algorithms import (
    APFL,
    Algorithm,
    Ditto,
    FedBN,
    FederatedClient,
    FederatedServer,
    FedPer,
    FedRep,
    Finetune,
)
from blazefl.data import SyntheticPartitionedDataset, TensorPartitionedDataset
from blazefl.data import feature_shift as shift
from blazefl.models import ModelZoo
from blazefl.reproducibility import create_client_rng_suite
from blazefl.sim import ClientContext, Executor, Simulation, ThreadExecutor

CLIENTS = 4

#: Every new algorithm with settings small enough for tests, by name.
PERSONALIZED: dict[str, Algorithm] = {
    "ditto": Ditto(lam=0.1, personal_epochs=1),
    "fedper": FedPer(),
    "fedrep": FedRep(head_epochs=1),
    "fedbn": FedBN(),
    "apfl": APFL(mix=0.25, mix_lr=0.1),
    "finetune": Finetune(finetune_epochs=1),
}


def model_of(algorithm: Algorithm) -> str:
    """FedBN needs BatchNorm; the others train the small MLP."""
    return "cnn_bn" if isinstance(algorithm, FedBN) else "mlp"


def dataset(feature_shift: bool = False) -> TensorPartitionedDataset:
    data = SyntheticPartitionedDataset(
        CLIENTS, seed=0, samples_per_client=24, alpha=0.3, test_samples=40
    )
    return shift(data, "contrast", seed=0) if feature_shift else data


def federation(
    algorithm: Algorithm, data: Any = None, rounds: int = 3, seed: int = 0
) -> tuple[FederatedServer, FederatedClient]:
    if data is None:
        data = dataset(isinstance(algorithm, FedBN))
    model = model_of(algorithm)
    server = FederatedServer(
        algorithm,
        ModelZoo(),
        model,
        dataset=data,
        num_clients=CLIENTS,
        rounds=rounds,
        sample_ratio=0.5,
        seed=seed,
    )
    client = FederatedClient(
        algorithm, ModelZoo(), model, data, epochs=1, batch_size=8, lr=0.1
    )
    return server, client


def simulation(
    algorithm: Algorithm,
    executor: Executor | None = None,
    rounds: int = 3,
    **kwargs: Any,
) -> Simulation[Any, Any]:
    server, client = federation(algorithm, rounds=rounds)
    return Simulation(
        server,
        client,
        executor=ThreadExecutor(2) if executor is None else executor,
        seed=0,
        **kwargs,
    )


def outcome(sim: Simulation[Any, Any]) -> tuple[torch.Tensor, dict[int, Any]]:
    """The global model and every client's stored state."""
    states = {}
    for cid in range(CLIENTS):
        state = sim.client_state(cid)
        if state is not None:
            states[cid] = dict(state.data)
    return sim.handler.params.clone(), states  # type: ignore[attr-defined]


def context(cid: int, state: dict[str, Any] | None = None) -> ClientContext:
    return ClientContext(
        cid=cid,
        round=0,
        slot=0,
        device="cpu",
        rng=create_client_rng_suite(0, cid),
        state={} if state is None else state,
        stop_event=threading.Event(),
        log=structlog.get_logger("test"),
        cache={},
    )
