"""A coordinator on a private local Ray that the parent-death test SIGKILLs
while its client trains.

``python ray_orphan_script.py MARKER``: runs one client that trains for
minutes on a `RayExecutor` of its own (no ``address``: blazefl starts a
private one-machine Ray), after touching ``MARKER`` from inside the actor.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from blazefl.sim import ClientContext, RayExecutor, Simulation


class Handler:
    """One client a round; the round never ends in this test."""

    round = 0

    def sample_clients(self) -> list[int]:
        return [0]

    def downlink_package(self) -> torch.Tensor:
        return torch.zeros(4)

    def load(self, package: Any) -> bool:
        return False

    def is_stopped(self) -> bool:
        return False


def main(marker: str) -> None:
    def slow_work(ctx: ClientContext, payload: torch.Tensor) -> torch.Tensor:
        """Busy for ten minutes, in torch kernels, unless asked to stop."""
        Path(marker).write_text(str(os.getpid()))
        deadline = time.monotonic() + 600
        a = torch.ones(128, 128)
        while time.monotonic() < deadline and not ctx.should_stop():
            a = torch.tanh(a @ a / 128)
        return payload

    executor = RayExecutor(1, init_kwargs={"num_cpus": 1, "log_to_driver": False})
    Simulation(Handler(), slow_work, executor=executor).run_sync(rounds=1)


if __name__ == "__main__":
    main(sys.argv[1])
