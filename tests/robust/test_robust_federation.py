"""Attacks and aggregators inside a running federation (library API)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.robust import AttackedClient, Krum, SignFlip, draw_attackers
from blazefl.sim import ClientContext, InlineExecutor, Simulation

CLIENTS = 6


def _data() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(
        CLIENTS, seed=0, samples_per_client=8, test_samples=20
    )


def _run(attack: bool, rounds: int = 3) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    data = _data()
    server = FederatedServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=CLIENTS,
        rounds=rounds,
        sample_ratio=0.5,
        seed=3,
    )
    work: Any = FederatedClient(FedAvg(), ModelZoo(), "mlp", data, epochs=1)
    if attack:
        work = AttackedClient(work, SignFlip(), draw_attackers(CLIENTS, 0.34, 3))
    results = Simulation(server, work, executor=InlineExecutor(), seed=3).run_sync()
    return [r.cids for r in results], server.params


def test_an_attacked_run_samples_the_clean_runs_clients() -> None:
    """Drawing the attackers leaves the server's sampling stream alone: each
    round samples the same clients; only the model differs."""
    clean_cids, clean = _run(attack=False)
    attacked_cids, attacked = _run(attack=True)
    assert attacked_cids == clean_cids
    assert not torch.equal(attacked, clean)


def test_a_round_that_loses_clients_below_the_bound_is_refused() -> None:
    """Krum(f=1) needs 5 updates: with one of 5 clients failed under "drop",
    the round stops with the aggregator's message and applies nothing."""
    data = SyntheticPartitionedDataset(5, seed=0, samples_per_client=8, test_samples=20)
    server = FederatedServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=5,
        rounds=1,
        aggregator=Krum(f=1),
    )
    before = server.params.clone()
    client = FederatedClient(FedAvg(), ModelZoo(), "mlp", data, epochs=1)

    def work(ctx: ClientContext, payload: Any) -> Any:
        if ctx.cid == 0:
            raise RuntimeError("client 0 fails")
        return client(ctx, payload)

    sim = Simulation(
        server, work, executor=InlineExecutor(), on_client_failure="drop", seed=0
    )
    with pytest.raises(
        ConfigurationError,
        match=r"^Krum\(f=1\) needs n >= 2f \+ 3 "
        r"= 5 client updates a round .*got n=4",
    ):
        sim.run_sync(rounds=1)
    assert server.round == 0
    assert torch.equal(server.params, before)
