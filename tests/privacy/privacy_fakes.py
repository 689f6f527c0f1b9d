"""A small private federation for the tests/privacy suite."""

from __future__ import annotations

from typing import Any

from blazefl.algorithms import Algorithm, FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.privacy import Privacy
from blazefl.sim import Executor, InlineExecutor, RoundResult, Simulation

NUM_CLIENTS = 8


def dataset() -> SyntheticPartitionedDataset:
    """8 clients of 32 samples of the built-in synthetic data."""
    return SyntheticPartitionedDataset(
        NUM_CLIENTS, seed=0, samples_per_client=32, test_samples=200
    )


def run(
    privacy: Privacy,
    data: SyntheticPartitionedDataset,
    *,
    executor: Executor | None = None,
    rounds: int = 3,
    seed: int = 0,
    algorithm: Algorithm | None = None,
    client: Any = None,
    sample_ratio: float = 0.5,
    **sim: Any,
) -> tuple[FederatedServer, list[RoundResult]]:
    """``rounds`` rounds of FedAvg (MLP, 1 epoch) under ``privacy``."""
    algorithm = algorithm or FedAvg()
    server = FederatedServer(
        algorithm,
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=rounds,
        sample_ratio=sample_ratio,
        seed=seed,
        privacy=privacy,
    )
    work = client or FederatedClient(
        algorithm,
        ModelZoo(),
        "mlp",
        data,
        epochs=1,
        batch_size=16,
        lr=0.1,
        privacy=privacy,
    )
    simulation: Simulation[Any, Any] = Simulation(
        server, work, executor=executor or InlineExecutor(), seed=seed, **sim
    )
    results = simulation.run_sync()
    return server, results


def make_ctx(cid: int = 0) -> Any:
    """The context the coordinator would pass client ``cid`` (its own suite)."""
    import threading

    import structlog

    from blazefl.reproducibility import create_rng_suite
    from blazefl.sim import ClientContext

    return ClientContext(
        cid=cid,
        round=0,
        slot=0,
        device="cpu",
        rng=create_rng_suite(cid),
        state={},
        stop_event=threading.Event(),
        log=structlog.get_logger("test"),
        cache={},
    )


class DropClient:
    """Client work in which client ``cid`` always fails: it was sampled and
    its partners masked with it, but its upload never arrives."""

    def __init__(self, inner: Any, cid: int) -> None:
        self.inner, self.cid = inner, cid

    def __call__(self, ctx: Any, payload: Any) -> Any:
        if ctx.cid == self.cid:
            raise RuntimeError(f"client {self.cid} dropped out")
        return self.inner(ctx, payload)
