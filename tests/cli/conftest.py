"""Runs shared by several command-line tests (each costs seconds)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cli_helpers import SMALL, Interrupted, PausedRun, invoke
from leaks import shm_entries


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small federation run undisturbed, in-process: the ground truth."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = invoke("run", *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def sigint_processes(tmp_path_factory: pytest.TempPathFactory) -> Interrupted:
    """The small federation on worker processes, SIGINT after round 2.

    --checkpoint-every 5 means no checkpoint is due at round 2: the one there
    must come from the interrupt.
    """
    tmp = tmp_path_factory.mktemp("sigint")
    before = shm_entries()
    run = PausedRun(
        tmp,
        tmp / "run",
        2,
        *SMALL,
        "--executor",
        "processes",
        "--checkpoint-every",
        "5",
    )
    seconds = run.send(signal.SIGINT)
    return Interrupted(run, run.process.returncode, seconds, before)
