"""A coordinator the parent-death tests SIGKILL while its clients train.

``python orphan_script.py native|blazefl STATE_DIR``: runs clients that train
for minutes (checking their stop flag, which a SIGKILL never sets) on two
process workers, natively on `Simulation` or through BlazeFL 3.0's
process-pool trainer, and prints ``training`` once the round is under way.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from blazefl.contrib import FedAvgBaseServerHandler, FedAvgProcessPoolClientTrainer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import ClientContext, ProcessExecutor, Simulation


class Handler:
    """Two clients a round; the round never ends in this test."""

    round = 0

    def sample_clients(self) -> list[int]:
        return [0, 1]

    def downlink_package(self) -> torch.Tensor:
        return torch.zeros(4)

    def load(self, package: Any) -> bool:
        return False

    def is_stopped(self) -> bool:
        return False


def slow_work(ctx: ClientContext, payload: torch.Tensor) -> torch.Tensor:
    """Busy for ten minutes, in torch kernels, unless asked to stop."""
    deadline = time.monotonic() + 600
    a = torch.ones(128, 128)
    while time.monotonic() < deadline and not ctx.should_stop():
        a = torch.tanh(a @ a / 128)
    return payload


def main(mode: str, state_dir: str) -> None:
    if mode == "native":
        sim = Simulation(Handler(), slow_work, executor=ProcessExecutor(2))
        print("training", flush=True)
        sim.run_sync(rounds=1)
        return
    data = SyntheticPartitionedDataset(num_clients=2, seed=0)
    handler = FedAvgBaseServerHandler(ModelZoo(), "cnn", data, 5, 2, 1.0, "cpu", 8, 0)
    trainer = FedAvgProcessPoolClientTrainer(
        ModelZoo(), "cnn", state_dir, data, "cpu", 2, 100_000, 8, 0.1, 0, 2
    )
    print("training", flush=True)
    while not handler.is_stopped():
        trainer.local_process(handler.downlink_package(), handler.sample_clients())
        for package in trainer.uplink_package():
            handler.load(package)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
