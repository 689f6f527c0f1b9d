"""SIGKILL of the coordinator mid-client: no worker process outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blazefl.sim._executors._orphan import POLL_SECONDS
from leaks import children_of, pid_alive

SCRIPT = Path(__file__).with_name("orphan_script.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _poll(predicate: object, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(predicate())  # type: ignore[operator]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy_workers(pid: int) -> set[int]:
    """The script's worker processes (spawn children, not its resource tracker)."""
    workers = set()
    for child in children_of(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.add(child)
    return workers


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["native", "blazefl"])
def test_workers_exit_when_the_coordinator_is_killed_mid_client(
    mode: str, tmp_path: Path
) -> None:
    """After kill -9 of a run whose clients are training, its workers are gone
    within seconds (they look at their parent every POLL_SECONDS)."""
    assert POLL_SECONDS <= 0.5
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    script = subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    workers: set[int] = set()
    try:
        assert script.stdout is not None
        assert script.stdout.readline().strip() == "training"
        assert _poll(lambda: len(_busy_workers(script.pid)) == 2, within=90)
        workers = _busy_workers(script.pid)
        # Past start-up (which a dead parent ends anyway): training, i.e. more
        # CPU time than importing torch and loading the work ever takes.
        assert _poll(lambda: min(map(_cpu_seconds, workers)) > 6.0, within=120)
        assert all(pid_alive(w) for w in workers)
        script.send_signal(signal.SIGKILL)
        script.wait(timeout=10)
        # Reparented workers notice within POLL_SECONDS; allow generous slack.
        gone = _poll(lambda: not any(pid_alive(w) for w in workers), within=5.0)
        assert gone, f"workers still alive 5 s after SIGKILL: {workers}"
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
        if script.stdout is not None:
            script.stdout.close()
        for worker in workers:
            if pid_alive(worker):
                os.kill(worker, signal.SIGKILL)
