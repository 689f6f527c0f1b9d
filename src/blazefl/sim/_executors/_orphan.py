"""Worker processes that die with the coordinator, however it dies.

A ``kill -9`` of the coordinator runs none of its clean-up: nobody sends its
workers ``stop`` or kills them, and a worker busy with a client does not read
its pipe until the client ends (minutes, for a real one). So every worker
watches its coordinator on its own, two ways at once:

- **the parent-death signal** (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``):
  the kernel kills the worker when its parent dies, even while the worker's
  main thread holds the GIL in a C call. The signal fires when the parent
  *thread* that started the child exits, not the process, so workers are
  started on one thread that lives as long as the process
  (`on_lifetime_thread`): an anyio worker thread, or the helper thread each
  BlazeFL ``local_process`` call runs its event loop on, would take the
  workers with it when it ends.
- **the lifeline**, on every platform: a pipe whose write end only the
  coordinator holds (never inherited: not by spawned or ``subprocess``
  children, and a forked child closes its copy at once). The kernel closes it
  when the coordinator dies, whatever the cause; a daemon thread in the
  worker blocked on the read end sees end-of-file and ends the process with
  ``os._exit`` (an exception would wait for the busy main thread). This also
  covers a coordinator that died before the worker set its signal up.

Neither fires on a normal shutdown: the coordinator keeps the write end (and
the lifetime thread) until it exits, after it stopped its workers.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any, TypeVar

__all__ = ["ORPHANED_EXIT_CODE", "die_with_parent", "lifeline", "on_lifetime_thread"]

T = TypeVar("T")

#: The exit code of a worker that ended because its coordinator was gone.
ORPHANED_EXIT_CODE = 70

_PR_SET_PDEATHSIG = 1

_lock = threading.Lock()
_read_end: Connection | None = None
_write_fd: int | None = None
_Call = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]
_calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
_thread: threading.Thread | None = None


def lifeline() -> Connection:
    """The read end of this process's lifeline, to hand to a new worker.

    One pipe per process for all its executors: its write end is never
    closed, so its end-of-file means exactly "the coordinator is gone".
    """
    global _read_end, _write_fd
    with _lock:
        if _read_end is None:
            read_fd, _write_fd = os.pipe()  # both non-inheritable (PEP 446)
            _read_end = Connection(read_fd, writable=False)
        return _read_end


def on_lifetime_thread(call: Callable[[], T]) -> T:
    """Run ``call`` on this process's lifetime thread and return its result.

    Children started there get their parent-death signal when the process
    dies, not when the thread that happened to ask for them ends.
    """
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(
                target=_serve, name="blazefl-lifetime", daemon=True
            )
            _thread.start()
        thread = _thread
    if threading.current_thread() is thread:
        return call()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    _calls.put((call, future))
    return future.result()


def die_with_parent(read_end: Connection, parent_pid: int | None) -> None:
    """Arm both watches; the first thing a worker does.

    ``parent_pid`` is the pid ``os.getppid()`` should return (``None`` when
    a forkserver is the parent): if it returns another, the coordinator died
    before the signal was set up.
    """
    if sys.platform.startswith("linux"):
        # A failure (no prctl in this libc) leaves the lifeline, which suffices
        # unless the main thread holds the GIL for long: no reason to refuse.
        with suppress(AttributeError, OSError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(ORPHANED_EXIT_CODE)
    threading.Thread(
        target=_watch, args=(read_end,), name="blazefl-lifeline", daemon=True
    ).start()


def _watch(read_end: Connection) -> None:
    fd = read_end.fileno()
    while True:
        try:
            if os.read(fd, 1):
                continue  # nobody writes; end-of-file is the only message
        except OSError:
            pass
        os._exit(ORPHANED_EXIT_CODE)


def _serve() -> None:
    while True:
        call, future = _calls.get()
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)


def _after_fork_in_child() -> None:
    """A forked child must not keep its parent's workers alive, nor wait on a
    lifetime thread that fork did not copy."""
    global _lock, _read_end, _write_fd, _thread, _calls
    _lock = threading.Lock()  # fork may have copied it held
    if _write_fd is not None:
        os.close(_write_fd)
    if _read_end is not None:
        _read_end.close()
    _read_end = _write_fd = _thread = None
    _calls = queue.SimpleQueue()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
