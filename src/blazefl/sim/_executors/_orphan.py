"""A worker process exits at once when its coordinator dies.

A process worker serves its pipe between clients, and notices EOF there; but
while a client trains nothing reads the pipe, so after a ``kill -9`` of the
coordinator the worker would train on to the end of its client (minutes, for a
long one). A daemon thread in the worker watches its parent instead: when the
process that started it is gone, the kernel reparents the worker, its parent
pid changes, and the thread ends the process with `os._exit` (the main thread
may be deep in a torch kernel, where an exception would wait), and with it the
worker's process group: what its clients started (see `_group`).

Why not only Linux's parent-death signal (``PR_SET_PDEATHSIG``): it fires when
the *thread* that spawned the child exits, not the process, and workers are
started (and replaced) from whichever thread the event loop or a worker thread
runs on. The parent-pid watch works on every POSIX system and for
``forkserver`` too (the fork server exits with its parent, which reparents the
worker). It costs one wake-up per `POLL_SECONDS`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import suppress

from blazefl.sim._executors._group import leads_group

__all__ = ["ORPHANED_EXIT_CODE", "POLL_SECONDS", "exit_when_orphaned"]

#: How often the watch looks at the parent pid: a worker outlives its
#: coordinator by at most about this long.
POLL_SECONDS = 0.1

#: The exit code of a worker that ended because its coordinator died.
ORPHANED_EXIT_CODE = 75


def exit_when_orphaned(poll: float = POLL_SECONDS) -> threading.Thread:
    """Start the watch in this (worker) process; returns its daemon thread."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent and parent != 1:
            time.sleep(poll)
        if leads_group():  # the worker and what its clients started, at once
            with suppress(OSError):
                os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(ORPHANED_EXIT_CODE)

    thread = threading.Thread(target=watch, name="blazefl-orphan-watch", daemon=True)
    thread.start()
    return thread
