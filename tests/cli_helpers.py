"""Helpers for the command-line tests: in-process runs, paused subprocess runs,
and reading run folders back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from click.testing import CliRunner, Result

from blazefl.cli._app import cli
from blazefl.sim import load_checkpoint
from leaks import children_of, pid_alive, shm_mapped_by

#: A federation small enough to run in about a second.
SMALL = ["--clients", "6", "--rounds", "4", "--sample-ratio", "0.5", "--epochs", "1"]
#: ``python PAUSED_CLI K ARGS...`` is ``blazefl ARGS...`` pausing after round K.
PAUSED_CLI = Path(__file__).with_name("paused_cli.py")


def invoke(*args: str | os.PathLike[str]) -> Result:
    """`blazefl ARGS` in this process, stdout and stderr kept apart."""
    return CliRunner().invoke(
        cli, [str(a) for a in args], prog_name="blazefl", catch_exceptions=False
    )


def metrics(folder: Path) -> list[dict[str, Any]]:
    """metrics.jsonl rows without the wall-clock ``seconds`` field."""
    rows = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        row.pop("seconds")
        rows.append(row)
    return rows


def checkpoint(folder: Path) -> dict[str, Any]:
    return load_checkpoint(folder / "checkpoint.ckpt")


def final_params(folder: Path) -> torch.Tensor:
    params = checkpoint(folder)["sim"]["handler"]["params"]
    assert isinstance(params, torch.Tensor)
    return params


def wait_until(predicate: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def paused_command(pause_after: int, *args: str) -> list[str]:
    """The command line of ``blazefl ARGS`` pausing after round ``pause_after``."""
    return [sys.executable, str(PAUSED_CLI), str(pause_after), *args]


class PausedRun:
    """`blazefl run` in a subprocess, paused after a round (tests/paused_cli.py)."""

    def __init__(self, tmp: Path, out: Path, pause_after: int, *args: str) -> None:
        self.out = out
        self.stdout_path = tmp / f"{out.name}.stdout"
        self.stderr_path = tmp / f"{out.name}.stderr"
        command = paused_command(pause_after, "run", "--out", str(out), *args)
        with self.stdout_path.open("wb") as so, self.stderr_path.open("wb") as se:
            self.process = subprocess.Popen(command, stdout=so, stderr=se)
        marker = f"paused after round {pause_after}"
        if not wait_until(lambda: marker in self.stderr or not self.running, 90):
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the run never paused:\n{self.stderr}")
        assert self.running, f"the run exited early:\n{self.stderr}"
        self.children = children_of(self.process.pid)
        self.shm = shm_mapped_by({self.process.pid, *self.children})

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def send(self, signum: int, within: float = 30) -> float:
        """Send ``signum``; return the seconds until the process exited."""
        start = time.monotonic()
        os.kill(self.process.pid, signum)
        self.process.wait(within)
        return time.monotonic() - start

    def reap_orphans(self) -> None:
        """After a SIGKILL: let the orphaned workers notice and exit (or kill them)."""
        if not wait_until(lambda: not any(map(pid_alive, self.children)), 15):
            for pid in self.children:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class Interrupted:
    """A paused run that was sent a signal, and how it went."""

    run: PausedRun
    returncode: int
    seconds: float
    shm_before: set[str]
