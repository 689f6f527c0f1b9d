"""`blazefl run` for the fault matrix: in-process runs, paused subprocess runs,
and what a run folder holds afterwards.

The moves of tests/cli_helpers.py (invoke, checkpoint, metrics, wait_until),
plus what the matrix needs on top: the run's executor, and whether its worker
processes and shared memory are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import torch

from cli_helpers import final_params, metrics, paused_command, wait_until
from leaks import children_of, pid_alive, shm_entries, shm_held_by

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


class PausedRun:
    """`blazefl run` in a subprocess, paused after a round (tests/paused_cli.py)."""

    def __init__(self, tmp: Path, pause_after: int, *args: str) -> None:
        self.out = tmp / "run"
        self.stderr_path = tmp / "run.stderr"
        command = paused_command(pause_after, "run", "--out", str(self.out), *args)
        with (
            (tmp / "run.stdout").open("wb") as so,
            self.stderr_path.open("wb") as se,
        ):
            self.process = subprocess.Popen(command, stdout=so, stderr=se)
        marker = f"paused after round {pause_after}"
        if not wait_until(lambda: marker in self.stderr or not self.running, 90):
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the run never paused:\n{self.stderr}")
        assert self.running, f"the run exited early:\n{self.stderr}"
        self.children = children_of(self.process.pid)
        self.shm = shm_held_by({self.process.pid, *self.children})

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def send(self, signum: int, within: float = 60) -> int:
        """Send ``signum``, wait for the exit, return the exit code."""
        os.kill(self.process.pid, signum)
        return self.process.wait(within)

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
