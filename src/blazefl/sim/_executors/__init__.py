"""Where client work runs: the executors behind one interface.

``_base`` holds the `Executor`/`RoundSession` interface the coordinator talks
to; each other module is one back-end (``_inline``, ``_threads``,
``_processes`` with its child loop ``_process_worker`` and its shared
``_result_buffers``, ``_ray``). The coordinator never asks which one it has.
"""

from blazefl.sim._executors._base import Executor, RoundSession, gil_enabled
from blazefl.sim._executors._inline import InlineExecutor
from blazefl.sim._executors._processes import ProcessExecutor
from blazefl.sim._executors._ray import RayExecutor
from blazefl.sim._executors._threads import ThreadExecutor

__all__ = [
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "RoundSession",
    "ThreadExecutor",
    "gil_enabled",
]
