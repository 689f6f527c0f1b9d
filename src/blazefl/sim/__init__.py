"""The async coordinator: `Simulation` and the executors it runs clients on.

::

    async with Simulation(handler, work, executor=ThreadExecutor(4)) as sim:
        async with sim.events() as events:   # optional progress stream
            result = await sim.run_round()

``work(ctx, payload) -> uplink`` is one client's local work; ``ctx`` is a
`ClientContext`. BlazeFL client trainers are accepted in its place.
``handler`` is any `ServerHandler`. To write an executor of your own, see
`blazefl.sim.abc`.
"""

from blazefl import _exports
from blazefl._client_stats import accuracy_stats
from blazefl._memory import MemoryEstimate, MemoryLimit, estimate_memory, memory_limit
from blazefl.sim import abc as abc
from blazefl.sim._checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    save_checkpoint,
)
from blazefl.sim._context import ClientContext, ClientState, ClientWork, StopFlag
from blazefl.sim._evaluation import ClientEvaluation
from blazefl.sim._events import (
    ClientFailed,
    ClientFinished,
    ClientsEvaluated,
    Event,
    EventStream,
    RoundAborted,
    RoundFinished,
    RoundStarted,
    RoundTimed,
)
from blazefl.sim._executors._base import Executor, RoundSession
from blazefl.sim._executors._cohort import (
    CohortExecutor,
    CohortMember,
    CohortResult,
    CohortTrainer,
)
from blazefl.sim._executors._inline import InlineExecutor
from blazefl.sim._executors._processes import ProcessExecutor
from blazefl.sim._executors._ray import RayExecutor
from blazefl.sim._executors._threads import ThreadExecutor
from blazefl.sim._gil import gil_enabled
from blazefl.sim._handler import ServerHandler
from blazefl.sim._jobs import ClientFailure
from blazefl.sim._logging import configure_logging
from blazefl.sim._results import ClientReport, RoundResult
from blazefl.sim._simulation import Simulation

__all__ = [
    "Simulation",
    "ServerHandler",
    # executors
    "CohortExecutor",
    "CohortMember",
    "CohortResult",
    "CohortTrainer",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "RoundSession",
    "ThreadExecutor",
    # client work
    "ClientContext",
    "ClientState",
    "ClientWork",
    "StopFlag",
    # results and events
    "ClientFailure",
    "ClientReport",
    "RoundResult",
    "ClientEvaluation",
    "accuracy_stats",
    "Event",
    "EventStream",
    "ClientFailed",
    "ClientFinished",
    "ClientsEvaluated",
    "RoundAborted",
    "RoundFinished",
    "RoundStarted",
    "RoundTimed",
    # checkpoints
    "CHECKPOINT_FORMAT",
    "load_checkpoint",
    "save_checkpoint",
    # memory: will a run fit?
    "MemoryEstimate",
    "MemoryLimit",
    "estimate_memory",
    "memory_limit",
    # utilities
    "configure_logging",
    "gil_enabled",
]

_exports.publish(globals())
