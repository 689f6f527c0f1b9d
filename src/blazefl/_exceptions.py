"""Every error blazefl raises on purpose.

The tree::

    BlazeFLError                 root: catch this to catch everything below
    ├── ConfigurationError       a bad argument or setting (also a ValueError)
    │   ├── InUseError           a file or run folder is claimed by another run
    │   └── IntegrityError       stored data fails its digest or its checkpoint
    ├── MissingDependencyError   an optional extra is missing (also an ImportError)
    ├── ClientError              one client's work failed (the work raised)
    │   ├── ClientTimeoutError   a client ran past its per-client timeout
    │   ├── WorkerDiedError      the process running a client exited unexpectedly
    │   └── UpdateRejectedError  the coordinator refused a client's update
    │       ├── NonFiniteUpdateError  the update holds NaN or infinite values
    │       └── PayloadModifiedError  the client wrote into the round's payload
    ├── RoundFailedError         a round's failures exceed its failure policy
    ├── EvaluationFailedError    every client's per-client evaluation failed
    ├── ExecutorClosedError      work was submitted to an executor not running
    └── SimulationFinishedError  a round was asked for after the handler stopped

Failures of client work are *data*: the coordinator records them as failed slots
(`blazefl.sim.ClientFailure`) and only raises `RoundFailedError` when the
round's failure policy says the round cannot be aggregated. A recorded failure
still has its type: ``failure.exception()`` rebuilds the `ClientError` subclass
it stands for, so ``isinstance(f.exception(), ClientTimeoutError)`` (or a
``match`` on it) tells a timeout from a dead worker from a client's own error.
"""

from __future__ import annotations

__all__ = [
    "BlazeFLError",
    "ClientError",
    "ClientTimeoutError",
    "ConfigurationError",
    "EvaluationFailedError",
    "ExecutorClosedError",
    "InUseError",
    "IntegrityError",
    "MissingDependencyError",
    "NonFiniteUpdateError",
    "PayloadModifiedError",
    "RoundFailedError",
    "SimulationFinishedError",
    "UpdateRejectedError",
    "WorkerDiedError",
]


class BlazeFLError(Exception):
    """Root of every error blazefl raises on purpose."""


class ConfigurationError(BlazeFLError, ValueError):
    """Raised early, at construction, when an argument or setting is invalid."""


class InUseError(ConfigurationError):
    """Raised when a client-state file or a run folder is claimed by another run
    (its message names the holder: pid, host, start time and command)."""


class IntegrityError(ConfigurationError):
    """Raised when stored data fails its check: a client state on disk whose
    digest does not match, or a state file that is not the one a checkpoint
    refers to."""


class MissingDependencyError(BlazeFLError, ImportError):
    """Raised when a feature needs an optional extra that is not installed."""

    def __init__(self, feature: str, extra: str, package: str) -> None:
        super().__init__(
            f"{feature} needs the optional package {package!r}; "
            f"install it with: pip install 'blazefl[{extra}]'"
        )
        self.extra = extra


class ClientError(BlazeFLError):
    """Recorded when one client's work did not produce a usable result.

    As the type of ``ClientFailure.exception()`` itself, it stands for an
    exception the client's own work raised; ``type_name`` then names that
    exception's class (which may not be importable in this process).
    """

    def __init__(self, message: str, *, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name or type(self).__name__


class ClientTimeoutError(ClientError):
    """Recorded when a client ran past its per-client timeout and was stopped."""


class WorkerDiedError(ClientError):
    """Recorded when the worker process running a client exited unexpectedly."""


class UpdateRejectedError(ClientError):
    """Recorded when the coordinator refuses a client's update before
    aggregation: the handler's ``check_uplink`` raised, or the update could not
    be checked at all."""


class NonFiniteUpdateError(UpdateRejectedError):
    """Recorded when a client's update holds NaN or infinite values."""


class PayloadModifiedError(UpdateRejectedError):
    """Recorded when a client wrote into the round's payload (a tensor written
    in place, swapped or removed): its update is refused, and the payload the
    handler and the other clients see is unchanged (see docs/reliability.md)."""


class RoundFailedError(BlazeFLError):
    """Raised when a round's failures exceed what its failure policy allows.

    The simulation is left exactly as it was before the round started.
    """

    def __init__(self, message: str, failures: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class EvaluationFailedError(BlazeFLError):
    """Raised by `Simulation.evaluate_clients` when every client's evaluation
    failed (some failing are counted and left out); ``failures`` says why."""

    def __init__(self, message: str, failures: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class ExecutorClosedError(BlazeFLError):
    """Raised when work is submitted to an executor that is not running."""


class SimulationFinishedError(BlazeFLError):
    """Raised by `Simulation.run_round` once the handler reports it is stopped."""
