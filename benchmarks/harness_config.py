"""The workload's settings and one timed run: what every harness module passes.

`Config` is one FedAvg workload and how often to time it; `Run` is what one
variant's run leaves behind (startup, per-round and close times, and the other
load per round). `matrix.py` ships a `Config` to each of its cells as JSON,
which `config_from_json` reads back. The targets the timing scripts check sit
here too, beside the settings they judge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

#: The issue's targets, checked on the paired median of rounds >= 2.
THREAD_TARGET = 1.05  # ThreadExecutor(p) / bare(p)
PROCESS_TARGET = 1.30  # ProcessExecutor(p) / ThreadExecutor(p)


@dataclass(frozen=True)
class Config:
    """One FedAvg workload and how often to time it.

    ``dataset`` picks the data and input shape: "synthetic" is
    `SyntheticPartitionedDataset` (1x12x12), "cifar" is `SyntheticCIFAR10`
    (3x32x32, for "resnet18"). ``eval_batch_size`` is the server's evaluation
    batch (None: ``batch_size``); it changes no client's arithmetic.
    """

    rounds: int
    clients: int
    sampled: int
    repeats: int
    workers: tuple[int, ...]
    model: str
    epochs: int
    batch_size: int
    lr: float
    samples_per_client: int
    seed: int
    quick: bool
    dataset: str = "synthetic"
    test_samples: int = 1000
    eval_batch_size: int | None = None


@dataclass
class Run:
    """One variant's run: a fresh server, a fresh executor, `rounds` rounds."""

    variant: str
    repeat: int
    startup_s: float
    rounds_s: list[float]
    close_s: float
    #: Per round: the share of the machine's CPU time that other processes
    #: used while that round-robin cycle ran (None where /proc is missing).
    foreign: list[float | None] = field(default_factory=list)


def config_from_json(text: str) -> Config:
    """A `Config` from ``json.dumps(asdict(cfg))``: how cells receive theirs."""
    data = json.loads(text)
    data["workers"] = tuple(data["workers"])
    return Config(**data)
