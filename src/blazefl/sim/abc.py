"""The extension points for writing an executor, as ``anyio.abc`` is for anyio.

An executor decides *where* client work runs; the coordinator never asks which
one it has. Subclass `Executor` (say its `Placement`: which client code may run
on it follows from that; start and stop workers; open one
`RoundSession` per round with that round's payload) and run each `ClientJob`
on a worker through `execute_job`, the one job runner every built-in executor
uses: it builds the client's `ClientContext`, captures errors as a
`ClientFailure` and hands back a `JobOutcome` carrying the client's new state.
`PayloadCopy` is one worker's copy of the round's payload, lent to its clients
one at a time (made once per worker and round; a client that writes into it
fails). `recorded` makes the failures an executor observes itself (a worker that
died: `WorkerDiedError`). See ``docs/writing-an-executor.md``.
"""

from blazefl import _exports
from blazefl.sim._executors._base import Executor, Placement, RoundSession
from blazefl.sim._jobs import (
    ClientJob,
    JobOutcome,
    JobWork,
    error_info,
    execute_job,
    recorded,
)
from blazefl.sim._payload import PayloadCopy

__all__ = [
    "ClientJob",
    "Executor",
    "JobOutcome",
    "JobWork",
    "PayloadCopy",
    "Placement",
    "RoundSession",
    "error_info",
    "execute_job",
    "recorded",
]

_exports.publish(globals())
