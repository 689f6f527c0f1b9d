"""check_uplink runs once per update, whichever door the update comes through."""

from __future__ import annotations

from typing import Any

import pytest
from alg_fakes import NUM_CLIENTS, dataset, federation, make_ctx

from blazefl.algorithms import FedAvg, FederatedServer
from blazefl.contrib import FedAvgBaseClientTrainer, FedAvgBaseServerHandler
from blazefl.models import ModelZoo
from blazefl.sim import InlineExecutor, Simulation


class CountingServer(FederatedServer):
    """A FederatedServer that counts its check_uplink calls."""

    checks = 0

    def check_uplink(self, update: Any) -> None:
        self.checks += 1
        super().check_uplink(update)


class CountingFedAvgHandler(FedAvgBaseServerHandler):
    """The BlazeFL FedAvg handler, counting its check_uplink calls."""

    checks = 0

    def check_uplink(self, package: Any) -> None:
        self.checks += 1
        super().check_uplink(package)


def _server() -> tuple[CountingServer, Any]:
    data = dataset()
    _, client = federation(FedAvg(), data, rounds=2)
    counting = CountingServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=2,
        sample_ratio=0.5,
        seed=0,
    )
    return counting, client


def test_federated_server_checks_once_under_the_coordinator() -> None:
    """Simulation checks each update; load, load_round, global_update do not again."""
    server, client = _server()
    Simulation(server, client, executor=InlineExecutor()).run_sync()
    assert (server.round, server.checks) == (2, 2 * server.clients_per_round)


def test_federated_server_checks_once_in_a_direct_loop() -> None:
    """A BlazeFL loop calling load itself gets exactly one check per update."""
    server, client = _server()
    updates = _updates(server, client)
    for update in updates:
        server.load(update)
    assert (server.round, server.checks) == (1, len(updates))


def test_federated_server_checks_once_in_a_direct_load_round() -> None:
    """load_round called directly checks each update once."""
    server, client = _server()
    updates = _updates(server, client)
    server.load_round(updates)
    assert (server.round, server.checks) == (1, len(updates))


def _updates(server: FederatedServer, client: Any) -> list[Any]:
    payload = server.downlink_package()
    return [client(make_ctx(cid), payload) for cid in server.sample_clients()]


@pytest.mark.parametrize("direct", [False, True])
def test_blazefl_fedavg_handler_checks_once(direct: bool) -> None:
    """The BlazeFL FedAvg handler checks each upload once, looped or simulated."""
    data = dataset()
    handler = CountingFedAvgHandler(
        ModelZoo(), "mlp", data, 1, NUM_CLIENTS, 0.5, "cpu", 64, 0
    )
    trainer = FedAvgBaseClientTrainer(
        ModelZoo(), "mlp", data, "cpu", NUM_CLIENTS, 1, 16, 0.1, 0
    )
    if direct:
        trainer.local_process(handler.downlink_package(), handler.sample_clients())
        for package in trainer.uplink_package():
            handler.load(package)
    else:
        Simulation(handler, trainer, executor=InlineExecutor()).run_sync()
    assert (handler.round, handler.checks) == (1, handler.num_clients_per_round)
