"""Ctrl-C (SIGINT to the process group) and SIGTERM end a BlazeFL 3.0 loop
promptly, with no worker left: a subprocess running interrupt_script.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("interrupt_script.py")
# Far below the clients' training time (many minutes): "promptly".
BOUND = 30


@pytest.mark.parametrize("kind", ["threads", "processes"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_the_loop(kind: str, sig: signal.Signals) -> None:
    """The signal stops the clients; the script exits with no child or thread left."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), kind],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        time.sleep(1)  # let the clients get into their batches
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does
        else:
            os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=BOUND)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "left children=[] threads=[]" in out, out + err
    if sig == signal.SIGINT:
        assert err.rstrip().endswith("KeyboardInterrupt"), err
    else:
        assert proc.returncode == 1, err
