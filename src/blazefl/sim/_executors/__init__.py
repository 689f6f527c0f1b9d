"""Where client work runs: the executors behind one interface.

``_base`` holds the `Executor`/`RoundSession` interface the coordinator talks
to (and `Placement`, where an executor's workers run); each back-end is one
module (``_inline``, ``_threads``, ``_processes`` with its child loop
``_process_worker`` and its shared ``_result_buffers``, ``_ray``). Process
workers and Ray actors share their job body (``_job_body``) and the way a dead
worker is replaced (``_pool``). The coordinator never asks which executor it
has; which client code each may run is decided in `blazefl.sim._adapters`.
"""

from blazefl.sim._executors._base import (
    Executor,
    Placement,
    RoundSession,
)
from blazefl.sim._executors._cohort import CohortExecutor
from blazefl.sim._executors._inline import InlineExecutor
from blazefl.sim._executors._processes import ProcessExecutor
from blazefl.sim._executors._ray import RayExecutor
from blazefl.sim._executors._threads import ThreadExecutor

__all__ = [
    "CohortExecutor",
    "Executor",
    "InlineExecutor",
    "Placement",
    "ProcessExecutor",
    "RayExecutor",
    "RoundSession",
    "ThreadExecutor",
]
