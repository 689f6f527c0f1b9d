"""The memory check of `blazefl run`: a run's sizes from its `RunConfig` alone.

`check_run_memory` runs before anything is built: no data is generated or
read (LEAF's file sets are sized by their files' bytes) and the model is made
on the ``meta`` device, which allocates nothing. It estimates the run with
`blazefl._memory.estimate_memory` and refuses it, with the estimate and the
limit, when it cannot fit; ``--no-memory-check`` skips it.
The sizes of the built-in data sets are stated here, and
tests/cli/test_cli_memory.py checks them against the data sets themselves.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch

from blazefl._memory import (
    MemoryEstimate,
    MemoryLimit,
    check_fits,
    estimate_memory,
    memory_limit,
)
from blazefl.algorithms import ALGORITHMS
from blazefl.algorithms._settings import settings_of
from blazefl.cli._config import RunConfig
from blazefl.models import ModelZoo

__all__ = ["DATASET_SIZES", "DatasetSize", "check_run_memory", "estimate_run"]

#: LeafSyntheticDataset's clients hold floor(lognormal(4, 2)) + 50 samples:
#: about e**(4 + 2**2 / 2) + 50 = 453 on average.
_LEAF_MEAN_SAMPLES = round(math.exp(4 + 2**2 / 2)) + 50


@dataclass(frozen=True, slots=True)
class DatasetSize:
    """A built-in data set's samples (a count, or a count per client) and
    the shape of one sample."""

    shape: tuple[int, ...]
    num_classes: int
    train: int = 0
    test: int = 0
    train_per_client: int = 0
    #: copies of the training samples alive at the peak of building it
    #: (generated sets are pooled and split again by --partition)
    generated: bool = False
    #: the sizes are the files' (LEAF's JSON under --data-dir): counted as
    #: the bytes read, a floor, since decoding only adds to them
    from_files: bool = False
    vocab_size: int | None = None

    def samples(self, clients: int) -> tuple[int, int]:
        """(training, test) samples for ``clients`` clients."""
        return self.train + self.train_per_client * clients, self.test


DATASET_SIZES: dict[str, DatasetSize] = {
    "synthetic": DatasetSize(
        (1, 12, 12), 10, test=1000, train_per_client=128, generated=True
    ),
    "synthetic-cifar10": DatasetSize(
        (3, 32, 32), 10, test=1000, train_per_client=250, generated=True
    ),
    # train and test both come from each client's samples
    "leaf-synthetic": DatasetSize(
        (60,), 10, train_per_client=_LEAF_MEAN_SAMPLES, generated=True
    ),
    "digits": DatasetSize((1, 8, 8), 10, train=1438, test=359),
    "mnist": DatasetSize((1, 28, 28), 10, train=60_000, test=10_000),
    "mnist5k": DatasetSize((1, 28, 28), 10, train=4000, test=1000),
    "cifar10": DatasetSize((3, 32, 32), 10, train=50_000, test=10_000),
    "femnist": DatasetSize((1, 28, 28), 62, from_files=True),
    "shakespeare": DatasetSize((80,), 80, from_files=True),
    "sent140": DatasetSize((25,), 2, from_files=True, vocab_size=10_000),
    "celeba": DatasetSize((3, 84, 84), 2, from_files=True),
}


def _files_bytes(folder: str | None) -> int:
    """The size of LEAF's ``train/*.json`` and ``test/*.json`` under
    ``folder``, what its reader loads (0 for what cannot be read: building
    the data set then reports it)."""
    if folder is None:
        return 0
    total = 0
    for split in ("train", "test"):
        with contextlib.suppress(OSError):
            for entry in os.scandir(os.path.join(folder, split)):
                with contextlib.suppress(OSError):
                    if entry.name.endswith(".json") and entry.is_file():
                        total += entry.stat().st_size
    return total


def _model_params(config: RunConfig, size: DatasetSize) -> int:
    with torch.device("meta"):  # shapes only, no memory
        zoo = ModelZoo(size.shape, size.num_classes, vocab_size=size.vocab_size)
        model = zoo.select_model(config.model)
    return sum(p.numel() for p in model.parameters())


def _server_vectors(config: RunConfig) -> int:
    """How many model-sized tensors the algorithm's server state holds."""
    cls = ALGORITHMS[config.algorithm]
    sized = {s.name: config.clients for s in settings_of(cls) if s.federation_size}
    probe = torch.zeros(3)
    state = cls(**config.knobs(), **sized).init_state(probe)
    return sum(1 for t in state.values() if t.numel() == probe.numel())


def estimate_run(config: RunConfig) -> MemoryEstimate:
    """The memory estimate of the run ``config`` describes."""
    size = DATASET_SIZES[config.dataset]
    train, test = size.samples(config.clients)
    repartitioned = size.generated and (
        config.partition != "natural" or config.dataset == "leaf-synthetic"
    )
    cls = ALGORITHMS[config.algorithm]
    # Ray workers on a cluster (--ray-address) use the cluster's memory.
    processes = config.executor == "processes" or (
        config.executor == "ray" and config.ray_address is None
    )
    workers = 1 if config.executor == "inline" else config.workers
    return estimate_memory(
        clients=config.clients,
        clients_per_round=config.clients_per_round,
        rounds=config.rounds,
        train_samples=train,
        test_samples=test,
        sample_bytes=4 * math.prod(size.shape),
        model_params=_model_params(config, size),
        workers=workers,
        worker_processes=workers if processes else 0,
        data_copies=2 if repartitioned else 1,
        data_bytes=_files_bytes(config.data_dir) if size.from_files else 0,
        server_vectors=_server_vectors(config),
        client_vectors=cls.client_state_vectors,
        uplink_extras=len(cls.uplink_extras),
    )


def check_run_memory(config: RunConfig, limit: MemoryLimit | None = None) -> None:
    """Refuse (`ConfigurationError`) a run whose estimate exceeds ``limit``
    (default: this machine's `memory_limit` now)."""
    check_fits(
        estimate_run(config),
        memory_limit() if limit is None else limit,
        "pass --no-memory-check to run anyway",
    )
