"""`blazefl run` for the fault matrix: what tests/cli_helpers.py has, plus
what the matrix needs on top: the run's executor, the run folder's outcome,
and whether a paused run's worker processes and shared memory are gone.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import torch

import cli_helpers
from cli_helpers import final_params, metrics, wait_until
from leaks import pid_alive, shm_entries, shm_held_by

#: One worker process: each costs a torch import, and the count changes no number.
WORKERS = {"inline": [], "threads": ["--workers", "2"], "processes": ["--workers", "1"]}


def executor_args(kind: str) -> list[str]:
    return ["--executor", kind, *WORKERS[kind]]


def stray_files(folder: Path) -> list[str]:
    """Temporary files a write left behind (``.checkpoint.ckpt.*.tmp`` and kin)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def outcome(folder: Path) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The final global model and the metrics.jsonl rows without ``seconds``."""
    return final_params(folder), metrics(folder)


class PausedRun(cli_helpers.PausedRun):
    """`blazefl run` in a subprocess into ``tmp/run``, paused after a round, and
    what the matrix checks once it is signalled: its exit code, and whether
    its worker processes and shared memory are gone."""

    def __init__(self, tmp: Path, pause_after: int, *args: str) -> None:
        super().__init__(tmp, tmp / "run", pause_after, *args)
        # By inode as well as by name: a semaphore's creator maps it under
        # sem_open's temporary name.
        self.shm = shm_held_by({self.process.pid, *self.children})

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop_with(self, signum: int, within: float = 60) -> int:
        """Send ``signum``, wait for the exit, return the exit code."""
        self.send(signum, within)
        return self.process.wait()

    def leftovers(self, within: float = 20) -> list[str]:
        """The run's worker processes and shared memory still there after
        ``within`` seconds (orphans of a SIGKILL must notice and exit)."""
        wait_until(
            lambda: (
                not any(map(pid_alive, self.children))
                and not (self.shm & shm_entries())
            ),
            within,
        )
        left = [f"process {pid}" for pid in sorted(self.children) if pid_alive(pid)]
        left += [f"/dev/shm/{name}" for name in sorted(self.shm & shm_entries())]
        return left

    def kill_all(self) -> None:
        """Whatever happened, take the run and its workers down."""
        for pid in [self.process.pid, *self.children]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.running:
            self.process.wait(10)
