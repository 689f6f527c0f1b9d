"""blazefl: fast, deterministic federated-learning simulation for PyTorch.

Public entry points live in the subpackages:

- `blazefl.core`: the BlazeFL 3.0 protocols, trainers and tensor utilities;
- `blazefl.reproducibility`: per-client RNG suites, snapshots, seeding;
- `blazefl.sim`: the async coordinator (`Simulation`) and its executors;
- `blazefl.contrib`: algorithms (FedAvg, ...);
- `blazefl.data`: built-in data sets and partitioners.
"""

from blazefl import _exports
from blazefl._exceptions import (
    BlazeFLError,
    ClientError,
    ClientTimeoutError,
    ConfigurationError,
    EvaluationFailedError,
    ExecutorClosedError,
    IntegrityError,
    InUseError,
    MissingDependencyError,
    NonFiniteUpdateError,
    PayloadModifiedError,
    RoundFailedError,
    SimulationFinishedError,
    UpdateRejectedError,
    WorkerDiedError,
)

__version__ = "3.1.0.dev0"

__all__ = [
    "__version__",
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

_exports.publish(globals())
