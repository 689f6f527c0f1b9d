"""BlazeFL's FedAvg classes on the built-in data: learning, parity, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.contrib import (
    FedAvgBaseClientTrainer,
    FedAvgBaseServerHandler,
    FedAvgDownlinkPackage,
    FedAvgProcessPoolClientTrainer,
    FedAvgThreadPoolClientTrainer,
    FedAvgUplinkPackage,
)
from blazefl.core import serialize_model
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import (
    Simulation,
    ThreadExecutor,
    load_checkpoint,
    save_checkpoint,
)

CLIENTS = 10
ROUNDS = 4


@pytest.fixture(scope="module")
def dataset() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(CLIENTS, seed=1, samples_per_client=64)


def _handler(dataset: SyntheticPartitionedDataset) -> FedAvgBaseServerHandler:
    return FedAvgBaseServerHandler(
        ModelZoo(), "mlp", dataset, ROUNDS, CLIENTS, 0.5, "cpu", 128, seed=7
    )


def _trainer(kind: str, dataset: SyntheticPartitionedDataset, tmp: Path) -> Any:
    common: dict[str, Any] = {
        "model_selector": ModelZoo(),
        "model_name": "mlp",
        "dataset": dataset,
        "device": "cpu",
        "num_clients": CLIENTS,
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.1,
        "seed": 7,
    }
    if kind == "base":
        return FedAvgBaseClientTrainer(**common)
    if kind == "threads":
        return FedAvgThreadPoolClientTrainer(**common, num_parallels=2)
    return FedAvgProcessPoolClientTrainer(**common, state_dir=tmp, num_parallels=2)


def _blazefl_loop(handler: FedAvgBaseServerHandler, trainer: Any) -> list[float]:
    trainer.progress_fn = lambda it: it
    accuracies = []
    try:
        while not handler.is_stopped():
            sampled = handler.sample_clients()
            trainer.local_process(handler.downlink_package(), sampled)
            for package in trainer.uplink_package():
                handler.load(package)
            accuracies.append(handler.get_summary()["server_acc"])
    finally:
        if hasattr(trainer, "shutdown"):
            trainer.shutdown()
    return accuracies


def test_three_trainers_bitwise_identical_and_learning(
    dataset: SyntheticPartitionedDataset, tmp_path: Path
) -> None:
    """Sequential, thread and process trainers give the same model, which learns."""
    models = {}
    for kind in ("base", "threads", "processes"):
        handler = _handler(dataset)
        accuracies = _blazefl_loop(handler, _trainer(kind, dataset, tmp_path))
        models[kind] = serialize_model(handler.model)
        assert handler.round == ROUNDS
        assert accuracies[-1] > 0.5, accuracies  # chance is 0.1
        assert accuracies[-1] > accuracies[0]
    assert torch.equal(models["base"], models["threads"])
    assert torch.equal(models["base"], models["processes"])


def test_simulation_runs_the_same_engine(
    dataset: SyntheticPartitionedDataset, tmp_path: Path
) -> None:
    """Simulation over a FedAvg trainer equals the BlazeFL loop bit for bit."""
    loop_handler = _handler(dataset)
    _blazefl_loop(loop_handler, _trainer("base", dataset, tmp_path))
    sim_handler = _handler(dataset)
    trainer = _trainer("threads", dataset, tmp_path)
    results = Simulation(
        sim_handler, trainer, executor=ThreadExecutor(2), seed=7
    ).run_sync()
    assert len(results) == ROUNDS
    assert torch.equal(
        serialize_model(loop_handler.model), serialize_model(sim_handler.model)
    )
    assert results[-1].summary["server_acc"] == loop_handler.get_summary()["server_acc"]


def test_handler_samples_without_replacement_sorted(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """Each round samples int(num_clients * ratio) distinct clients, sorted."""
    handler = _handler(dataset)
    for _ in range(5):
        sampled = handler.sample_clients()
        assert sampled == sorted(set(sampled))
        assert len(sampled) == 5
        assert all(0 <= c < CLIENTS for c in sampled)


def test_handler_weighted_average(dataset: SyntheticPartitionedDataset) -> None:
    """global_update weights each upload by its data size."""
    handler = _handler(dataset)
    size = serialize_model(handler.model).numel()
    handler.global_update(
        [
            FedAvgUplinkPackage(0, torch.full((size,), 1.0), 1),
            FedAvgUplinkPackage(1, torch.full((size,), 4.0), 3),
        ]
    )
    assert torch.equal(serialize_model(handler.model), torch.full((size,), 3.25))


def test_handler_load_completes_round(dataset: SyntheticPartitionedDataset) -> None:
    """load returns True exactly when the round's sampled count arrived."""
    handler = _handler(dataset)
    params = serialize_model(handler.model)
    returned = [
        handler.load(FedAvgUplinkPackage(c, params.clone(), 10)) for c in range(5)
    ]
    assert returned == [False, False, False, False, True]
    assert handler.round == 1


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda p: FedAvgUplinkPackage(4, torch.zeros(3), 10),
            r"^client 4 sent model_parameters of shape \(3,\) and dtype "
            r"torch\.float32; the global model has shape \(\d+,\) and dtype "
            r"torch\.float32$",
        ),
        (
            lambda p: FedAvgUplinkPackage(4, p.double(), 10),
            r"^client 4 sent model_parameters of shape \(\d+,\) and dtype "
            r"torch\.float64; the global model has shape",
        ),
        (
            lambda p: FedAvgUplinkPackage(4, p, 0),
            r"^client 4 reported data_size=0; an upload must come from an integer "
            r"number >= 1 of training samples$",
        ),
        (
            lambda p: {"model_parameters": p},
            r"^a client sent a dict without model_parameters; expected a "
            r"FedAvgUplinkPackage$",
        ),
    ],
    ids=["shape", "dtype", "no-data", "not-a-package"],
)
def test_handler_load_refuses_a_malformed_upload(
    dataset: SyntheticPartitionedDataset, make: Any, match: str
) -> None:
    """check_uplink (run by load) names the client and the shape/dtype seen and
    expected; the round in progress is dropped, the model untouched."""
    handler = _handler(dataset)
    params = serialize_model(handler.model)
    handler.load(FedAvgUplinkPackage(0, params.clone(), 10))
    with pytest.raises(ConfigurationError, match=match):
        handler.load(make(params))
    assert (handler.round, handler.client_buffer_cache) == (0, [])
    assert torch.equal(serialize_model(handler.model), params)


def test_handler_check_uplink_reads_no_data(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """Only metadata is read: a meta tensor (no storage) of the right shape passes."""
    handler = _handler(dataset)
    params = serialize_model(handler.model)
    meta = torch.empty(params.shape, dtype=params.dtype, device="meta")
    handler.check_uplink(FedAvgUplinkPackage(1, meta, 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"global_round": 0}, r"^global_round must be positive, got 0$"),
        ({"num_clients": -3}, r"^num_clients must be positive, got -3$"),
        (
            {"sample_ratio": 0.0},
            r"^sample_ratio must be in the interval \(0, 1\], got 0.0$",
        ),
        (
            {"sample_ratio": 1.5},
            r"^sample_ratio must be in the interval \(0, 1\], got 1.5: it would "
            r"sample 15 clients a round but there are only num_clients=10$",
        ),
        (
            {"num_clients": 12},
            r"^num_clients=12 but the data set has only 10 client partitions",
        ),
        (
            {"sample_ratio": 0.05},
            r"^sample_ratio selects zero clients per round; increase "
            r"sample_ratio or num_clients \(got num_clients=10",
        ),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
    ],
)
def test_handler_rejects_bad_arguments(
    dataset: SyntheticPartitionedDataset, kwargs: dict[str, Any], match: str
) -> None:
    """The server handler validates its arguments at construction."""
    args: dict[str, Any] = {
        "model_selector": ModelZoo(),
        "model_name": "mlp",
        "dataset": dataset,
        "global_round": 2,
        "num_clients": CLIENTS,
        "sample_ratio": 0.5,
        "device": "cpu",
        "batch_size": 32,
        "seed": 0,
    }
    args.update(kwargs)
    with pytest.raises(ConfigurationError, match=match):
        FedAvgBaseServerHandler(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"lr": -0.1}, r"lr must be a finite number > 0, got -0.1"),
        ({"lr": float("nan")}, r"lr must be a finite number > 0, got nan"),
        ({"num_parallels": 0}, r"num_parallels must be an integer >= 1, got 0"),
        (
            {"num_clients": 11},
            r"^num_clients=11 but the data set has only 10 client partitions",
        ),
    ],
)
def test_trainer_rejects_bad_arguments(
    dataset: SyntheticPartitionedDataset, kwargs: dict[str, Any], match: str
) -> None:
    """The client trainers validate their arguments at construction."""
    args: dict[str, Any] = {
        "model_selector": ModelZoo(),
        "model_name": "mlp",
        "dataset": dataset,
        "device": "cpu",
        "num_clients": CLIENTS,
        "epochs": 1,
        "batch_size": 16,
        "lr": 0.1,
        "seed": 0,
        "num_parallels": 2,
    }
    args.update(kwargs)
    with pytest.raises(ConfigurationError, match=match):
        FedAvgThreadPoolClientTrainer(**args)


def test_process_worker_standalone_keeps_rng_state(
    dataset: SyntheticPartitionedDataset, tmp_path: Path
) -> None:
    """The static worker, called directly, continues a client's RNG via state_dir."""
    trainer = _trainer("processes", dataset, tmp_path)
    payload = _handler(dataset).downlink_package()
    config = trainer.get_client_config(3)
    first = FedAvgProcessPoolClientTrainer.worker(config, payload, "cpu", None)
    second = FedAvgProcessPoolClientTrainer.worker(config, payload, "cpu", None)
    assert (tmp_path / "3.json").exists()
    # Same start, different shuffles: the client's stream moved on.
    assert not torch.equal(first.model_parameters, second.model_parameters)


def test_handler_resumes_from_a_checkpoint_bitwise(
    dataset: SyntheticPartitionedDataset, tmp_path: Path
) -> None:
    """Two rounds, a checkpoint, two more equal four straight rounds, bit for bit."""
    straight = _handler(dataset)
    Simulation(
        straight, _trainer("threads", dataset, tmp_path), executor=ThreadExecutor(2)
    ).run_sync()

    first = _handler(dataset)
    sim = Simulation(
        first, _trainer("threads", dataset, tmp_path), executor=ThreadExecutor(2)
    )
    sim.run_sync(rounds=2)
    save_checkpoint(tmp_path / "ckpt", sim.state_dict())

    resumed = _handler(dataset)
    sim = Simulation(
        resumed, _trainer("threads", dataset, tmp_path), executor=ThreadExecutor(2)
    )
    sim.load_state_dict(load_checkpoint(tmp_path / "ckpt"))
    assert resumed.round == 2
    sim.run_sync()
    assert resumed.round == ROUNDS
    assert torch.equal(serialize_model(resumed.model), serialize_model(straight.model))


def test_handler_subclass_global_update_is_called_by_load(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """load dispatches to an overriding global_update, as BlazeFL's handler does."""

    class Recording(FedAvgBaseServerHandler):
        def global_update(self, buffer: list[FedAvgUplinkPackage]) -> None:
            self.seen = [p.cid for p in buffer]
            super().global_update(buffer)

    handler = Recording(
        ModelZoo(), "mlp", dataset, ROUNDS, CLIENTS, 0.5, "cpu", 128, seed=7
    )
    params = serialize_model(handler.model)
    for cid in range(5):
        handler.load(FedAvgUplinkPackage(cid, params.clone(), 10))
    assert (handler.seen, handler.round) == ([0, 1, 2, 3, 4], 1)


def test_handler_attributes_are_the_servers(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """The BlazeFL attributes read and write the FederatedServer's state."""
    handler = _handler(dataset)
    assert handler.model is handler.server.model
    assert handler.rng_suite is handler.server.rng
    assert (handler.global_round, handler.num_clients_per_round) == (ROUNDS, 5)
    handler.global_round = ROUNDS + 1
    handler.round = ROUNDS
    assert not handler.is_stopped()
    assert handler.server.round == ROUNDS


def test_standalone_worker_raises_the_works_own_error(
    dataset: SyntheticPartitionedDataset, tmp_path: Path
) -> None:
    """A worker called directly raises what the client work raised, not a copy."""
    trainer = _trainer("threads", dataset, tmp_path)
    bad = FedAvgDownlinkPackage(torch.zeros(3))
    with pytest.raises(ConfigurationError, match=r"cannot load a tensor of shape"):
        trainer.worker(0, "cpu", bad, trainer.stop_event)
