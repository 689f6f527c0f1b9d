"""From a `RunConfig` to the objects of a run: data, model, algorithm, simulation.

Nothing here runs a round; building may still be slow (reading MNIST or
CIFAR-10 from disk, generating data), which is why it happens once, before
the coordinator starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from blazefl.algorithms import ALGORITHMS, FederatedClient, FederatedServer
from blazefl.algorithms._settings import settings_of
from blazefl.cli._checks import LEAF_DATASETS
from blazefl.cli._client_eval import fraction_of
from blazefl.cli._config import RunConfig
from blazefl.cli._privacy import privacy_of
from blazefl.cli._robust import aggregator_of, attack_of
from blazefl.data import (
    FileImageDataset,
    LeafCelebA,
    LeafDataset,
    LeafFEMNIST,
    LeafSent140,
    LeafShakespeare,
    LeafSyntheticDataset,
    SyntheticCIFAR10,
    SyntheticPartitionedDataset,
    TensorPartitionedDataset,
    dirichlet_partition,
    feature_shift,
    iid_partition,
    label_skew_partition,
    load_digits_dataset,
    load_mnist5k,
    shard_partition,
    size_partition,
    split_client_tests,
    unbalanced_partition,
)
from blazefl.data._size_partition import SizeGrowth
from blazefl.models import ModelZoo
from blazefl.robust import AttackedClient, draw_attackers
from blazefl.sim import (
    CohortExecutor,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)
from blazefl.simtime import SimTime, generate_profiles, read_trace

__all__ = [
    "Built",
    "build",
    "build_dataset",
    "build_partitioner",
    "build_time",
    "recorded",
]

Partitioner = Callable[[torch.Tensor], Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Built:
    """The run's objects; `simulation` owns the executor (``async with``).

    ``attackers`` are the ids of the clients running ``--attack`` (drawn once
    per run from the seed); ``client`` is the honest clients' work.
    """

    dataset: TensorPartitionedDataset
    server: FederatedServer
    client: FederatedClient
    simulation: Simulation[Any, Any]
    attackers: tuple[int, ...] = field(default=())


def build_partitioner(config: RunConfig) -> Partitioner | None:
    """The `--partition` split of training labels, or None for the natural one."""
    k, seed = config.clients, config.seed
    kind = config.partition
    if kind == "natural":
        return None
    if kind == "iid":
        return lambda y: iid_partition(int(y.shape[0]), k, seed=seed)
    if kind == "dirichlet":
        return lambda y: dirichlet_partition(y, k, alpha=config.alpha, seed=seed)
    if kind == "shards":
        return lambda y: shard_partition(
            y, k, shards_per_client=config.shards_per_client, seed=seed
        )
    if kind == "label-skew":
        return lambda y: label_skew_partition(
            y, k, classes_per_client=config.classes_per_client, seed=seed
        )
    if kind in _GROWTHS:
        growth = _GROWTHS[kind]
        return lambda y: size_partition(int(y.shape[0]), k, growth=growth, seed=seed)
    if kind == "unbalanced":
        return lambda y: unbalanced_partition(
            int(y.shape[0]), k, seed=seed, sigma=config.unbalance_sigma
        )
    raise AssertionError(f"unhandled partition {kind!r}")  # _config validated it


def _repartition(
    base: TensorPartitionedDataset, partitioner: Partitioner
) -> TensorPartitionedDataset:
    """Pool a generated data set's training rows and split them anew."""
    train = base.get_dataset("train", None)
    test = base.get_dataset("test", None)
    train_x, train_y = train.data[train.indices], train.targets[train.indices]  # type: ignore[attr-defined]
    test_x, test_y = test.data[test.indices], test.targets[test.indices]  # type: ignore[attr-defined]
    parts = [np.asarray(p) for p in partitioner(train_y)]
    return TensorPartitionedDataset(
        train_x, train_y, parts, test_x, test_y, num_classes=base.num_classes
    )


def build_dataset(config: RunConfig) -> TensorPartitionedDataset:
    """The federated data set of `--dataset`, split by `--partition`, its
    clients' images shifted by `--feature-shift`; with `--evaluate-clients`,
    each client's own test data split off its training data where the data
    set has none (`split_client_tests`)."""
    dataset = _split_dataset(config)
    if config.feature_shift is not None:
        dataset = feature_shift(dataset, config.feature_shift, seed=config.seed)
    if config.evaluate_clients and not dataset.has_client_tests:
        return split_client_tests(dataset, fraction_of(config), seed=config.seed)
    return dataset


def _split_dataset(config: RunConfig) -> TensorPartitionedDataset:
    k, seed = config.clients, config.seed
    partitioner = build_partitioner(config)
    name = config.dataset
    if name in LEAF_DATASETS:
        assert config.data_dir is not None  # _config requires it
        return _LEAF_CLASSES[name](config.data_dir, max_users=k)
    if name in ("digits", "mnist5k", "mnist", "cifar10"):
        if name == "digits":
            return load_digits_dataset(k, seed=seed, partition=partitioner)
        if name == "mnist5k":
            return load_mnist5k(k, seed=seed, partition=partitioner)
        assert config.data_dir is not None  # _config requires it
        load = FileImageDataset.mnist if name == "mnist" else FileImageDataset.cifar10
        return load(config.data_dir, k, partition=partitioner, seed=seed)
    base: TensorPartitionedDataset
    if name == "synthetic":
        base = SyntheticPartitionedDataset(k, seed=seed, alpha=config.alpha)
    elif name == "synthetic-cifar10":
        base = SyntheticCIFAR10(k, seed=seed, alpha=config.alpha)
    else:
        base = LeafSyntheticDataset(k, seed=seed)
    return base if partitioner is None else _repartition(base, partitioner)


_GROWTHS: dict[str, SizeGrowth] = {
    "linear": "linear",
    "square": "square",
    "exponential": "exponential",
}

_LEAF_CLASSES: dict[str, type[LeafDataset]] = {
    "femnist": LeafFEMNIST,
    "shakespeare": LeafShakespeare,
    "sent140": LeafSent140,
    "celeba": LeafCelebA,
}


def _executor(config: RunConfig) -> Executor:
    devices = config.device
    if config.executor == "cohort":
        return CohortExecutor(
            config.workers, max_cohort=config.max_cohort or None, devices=devices
        )
    if config.executor == "inline":
        return InlineExecutor(devices=devices)
    if config.executor == "threads":
        return ThreadExecutor(config.workers, devices=devices)
    if config.executor == "ray":
        from blazefl.sim import RayExecutor

        return RayExecutor(config.workers, address=config.ray_address)
    return ProcessExecutor(config.workers, devices=devices)


def build_time(config: RunConfig, dataset: Any) -> SimTime | None:
    """The `--profiles` / `--mode` simulated time, or None (plain rounds).

    The epochs and sample counts are the run's own (the client work may be
    wrapped, by ``--attack``, in objects that do not expose them)."""
    if config.profiles is None:
        return None
    if config.profiles == "lognormal":
        sigma = 1.0 if config.speed_sigma is None else config.speed_sigma
        profiles = generate_profiles(
            config.clients,
            config.seed,
            compute_sigma=sigma,
            online_fraction=config.online_fraction or 1.0,
        )
    else:
        profiles = read_trace(config.profiles, num_clients=config.clients)
    if config.mode == "async":
        return SimTime(
            profiles,
            epochs=config.epochs,
            samples=lambda cid: len(dataset.get_dataset("train", cid)),
            mode="async",
            buffer_size=config.buffer_size,
            concurrency=config.concurrency or min(10, config.clients),
        )
    return SimTime(
        profiles,
        epochs=config.epochs,
        samples=lambda cid: len(dataset.get_dataset("train", cid)),
        deadline=config.deadline,
        over_selection=config.over_selection or 0.0,
    )


def build(config: RunConfig) -> Built:
    """Every object of the run; raises `ConfigurationError` for a bad combination."""
    dataset = build_dataset(config)
    zoo = ModelZoo(
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        vocab_size=getattr(dataset, "vocab_size", None),
    )
    cls: Any = ALGORITHMS[config.algorithm]
    size = {s.name: config.clients for s in settings_of(cls) if s.federation_size}
    algorithm = cls(**config.knobs(), **size)
    privacy = privacy_of(config)
    attack = attack_of(config)
    server = FederatedServer(
        algorithm,
        zoo,
        config.model,
        dataset=dataset,
        num_clients=config.clients,
        rounds=config.rounds,
        sample_ratio=config.sample_ratio,
        seed=config.seed,
        privacy=privacy,
        aggregator=aggregator_of(config),
        attack=attack,
    )
    client = FederatedClient(
        algorithm,
        zoo,
        config.model,
        dataset,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        privacy=privacy,
    )
    work: Any = client
    attackers: tuple[int, ...] = ()
    if attack is not None:
        assert config.attack_fraction is not None  # _robust filled it in
        attackers = draw_attackers(config.clients, config.attack_fraction, config.seed)
        work = AttackedClient(client, attack, attackers)
    simulation: Simulation[Any, Any] = Simulation(
        server,
        work,
        executor=_executor(config),
        seed=config.seed,
        evaluate_every=config.evaluate_every,
        time=build_time(config, dataset),
    )
    return Built(dataset, server, client, simulation, attackers)


def recorded(config: RunConfig, built: Built) -> RunConfig:
    """``config`` with the cohort size the executor chose (``--max-cohort 0``),
    so config.toml records it and ``--resume`` reuses it."""
    executor = built.simulation.executor
    if isinstance(executor, CohortExecutor) and not config.max_cohort:
        size = executor.max_cohort
        assert size is not None  # chosen when the simulation was built
        return dataclasses.replace(config, max_cohort=size)
    return config
