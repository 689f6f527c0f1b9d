"""One thread that lives as long as the process, to start children on.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) fires when the
*thread* that started a child exits, not the process. Ray sets it on the GCS
server and raylet of a local instance that ``ray.init`` starts: started from
an anyio worker thread, they die with that thread, which anyio ends after 10 s
idle or when its event loop ends (a BlazeFL ``local_process`` call runs one
loop per round), and the private Ray with them, mid-run. Started here, they
die with the process, as Ray means them to.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["on_lifetime_thread"]

T = TypeVar("T")

_Call = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]

_lock = threading.Lock()
_calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
_thread: threading.Thread | None = None


def on_lifetime_thread(call: Callable[[], T]) -> T:
    """Run ``call`` on this process's lifetime thread; return or raise its result.

    Blocks the calling thread until ``call`` is done (run it from a worker
    thread when on an event loop).
    """
    global _thread
    with _lock:
        if _thread is None:
            # A daemon: it never exits before the process does.
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


def _serve() -> None:
    while True:
        call, future = _calls.get()
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)


def _after_fork_in_child() -> None:
    # fork copies neither the thread nor, safely, a lock another thread held.
    global _lock, _calls, _thread
    _lock, _calls, _thread = threading.Lock(), queue.SimpleQueue(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
