"""`on_lifetime_thread`: children started there outlive the thread that asked.

The hazard it removes is the kernel's: a child armed with the parent-death
signal (as Ray arms a local instance's GCS server and raylet) dies when the
*thread* that started it exits. The first test shows the hazard, the second
that a child started on the lifetime thread survives it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from blazefl.sim._executors._lifetime import on_lifetime_thread
from cli_helpers import wait_until
from leaks import pid_alive

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's"
)

# What Ray's services.start_ray_process does for kernel fate-sharing.
_ARMED = (
    "import ctypes, signal, time;"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0);"
    "print('armed', flush=True);"
    "time.sleep(60)"
)


def _start_armed() -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", _ARMED], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"armed\n"
    return child


def _end(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()
    assert child.stdout is not None
    child.stdout.close()


def _from_short_lived_thread(
    start: Callable[[], subprocess.Popen[bytes]],
) -> subprocess.Popen[bytes]:
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: started.append(start()))
    thread.start()
    thread.join()
    return started[0]


def test_child_started_from_an_ending_thread_dies_with_it() -> None:
    """The hazard: an armed child dies when the thread that started it ends."""
    child = _from_short_lived_thread(_start_armed)
    try:
        assert wait_until(lambda: not pid_alive(child.pid), 10)
    finally:
        _end(child)


def test_child_started_on_the_lifetime_thread_survives_the_asking_thread() -> None:
    """Started on the lifetime thread, an armed child outlives the thread that asked."""
    child = _from_short_lived_thread(lambda: on_lifetime_thread(_start_armed))
    try:
        assert not wait_until(lambda: not pid_alive(child.pid), 1.0)
    finally:
        _end(child)


def test_lifetime_thread_returns_and_raises_what_the_call_does() -> None:
    """The call's result comes back, and so does its exception."""
    assert on_lifetime_thread(threading.current_thread).name == "blazefl-lifetime"
    with pytest.raises(ValueError, match=r"^nope$"):
        on_lifetime_thread(lambda: (_ for _ in ()).throw(ValueError("nope")))
