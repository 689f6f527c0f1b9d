"""What a client starts in a process worker ends with the worker.

Each process worker leads a process group of its own (`lead_group`), and
whatever its clients start (a subprocess, a data loader's worker processes)
is in that group unless it leaves it itself (``setsid``,
``start_new_session=True``). When the worker ends, the rest of its group is
ended too: on a clean stop the worker sends it SIGTERM, what job control sends
(`end_group`); the coordinator SIGKILLs worker and group together when it
kills a stuck worker (`kill_worker`); a worker whose coordinator died SIGKILLs
its group on its way out (`_orphan`). Only a group the worker leads is ever
signalled, never the coordinator's own.

Not covered: processes that leave the group, processes that ignore SIGTERM on
a clean stop, and what is left by a worker that died on its own (a segfault):
its group id may already be free, and signalling it could hit a stranger.
A worker in a group of its own no longer gets a terminal's Ctrl-C; it ignores
SIGINT anyway (the coordinator decides how its workers end). No-ops where the
platform has no process groups.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import suppress
from multiprocessing.process import BaseProcess

__all__ = ["end_group", "kill_worker", "lead_group", "leads_group"]


def lead_group() -> None:
    """Make this worker process the leader of a new process group."""
    setpgid = getattr(os, "setpgid", None)
    if setpgid is not None:
        with suppress(OSError):
            setpgid(0, 0)


def leads_group() -> bool:
    """Whether this process leads its process group (set up by `lead_group`)."""
    getpgrp = getattr(os, "getpgrp", None)
    return getpgrp is not None and getpgrp() == os.getpid()


def end_group() -> None:
    """On a clean stop: SIGTERM the rest of this worker's group, not itself."""
    if not leads_group():
        return
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    # Called on the worker's main thread, just before it returns: ignoring
    # SIGTERM from here on spares the worker, the rest of the group gets it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with suppress(OSError):
        os.killpg(os.getpid(), signal.SIGTERM)


def kill_worker(process: BaseProcess) -> None:
    """SIGKILL a live worker together with its process group.

    The group is looked up while the worker is alive, so its id is the
    worker's own; otherwise (already gone, no group of its own) only the
    worker is killed, as `BaseProcess.kill` does.
    """
    pid = process.pid
    if pid is not None and process.is_alive():
        with suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
                return
    process.kill()
