"""Federated algorithms on the coordinator: each a client update plus a server
aggregation, run by the generic `FederatedServer` (a BlazeFL server handler)
and `FederatedClient` (native client work)::

    server = FederatedServer(FedProx(mu=0.01), ModelZoo(), "cnn", dataset=data,
                             num_clients=20, rounds=10, sample_ratio=0.5, seed=0)
    client = FederatedClient(FedProx(mu=0.01), ModelZoo(), "cnn", data,
                             epochs=2, batch_size=16, lr=0.1)
    Simulation(server, client, executor=ThreadExecutor(2), seed=0).run_sync()
"""

from typing import TYPE_CHECKING, Any

from blazefl import _exports
from blazefl.algorithms._aggregation import (
    AggregateDtype,
    Aggregator,
    Fold,
    RoundUpdates,
    WeightedMean,
    aggregate_delta,
    aggregate_model,
    aggregating,
    current_aggregator,
)
from blazefl.algorithms._apfl import APFL
from blazefl.algorithms._async import AsyncAlgorithm, FedAsync, FedBuff, StaleUpdate
from blazefl.algorithms._base import (
    Algorithm,
    Broadcast,
    ClientUpdate,
    LocalTraining,
    weighted_average,
)
from blazefl.algorithms._ditto import Ditto
from blazefl.algorithms._fedavg import FedAvg
from blazefl.algorithms._fedavgm import FedAvgM
from blazefl.algorithms._fedbn import FedBN
from blazefl.algorithms._fedopt import FedAdagrad, FedAdam, FedYogi
from blazefl.algorithms._fedper import FedPer, FedRep
from blazefl.algorithms._fedprox import FedProx
from blazefl.algorithms._finetune import Finetune
from blazefl.algorithms._local_parts import LocalParts
from blazefl.algorithms._scaffold import Scaffold

if TYPE_CHECKING:
    from blazefl.algorithms._client import FederatedClient
    from blazefl.algorithms._server import FederatedServer

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (
        FedAvg,
        FedAvgM,
        FedProx,
        Scaffold,
        FedAdam,
        FedYogi,
        FedAdagrad,
        FedBuff,
        FedAsync,
        Ditto,
        FedPer,
        FedRep,
        FedBN,
        APFL,
        Finetune,
    )
}
"""Every built-in algorithm by name (what the command line's --algorithm takes).

Adding one here (and its import above) is all the command line needs: its
options, config keys, checks and resume rules come from its `setting` fields.
"""


def __getattr__(name: str) -> Any:
    # The server and client import torch, models and data at once; the
    # algorithm classes above do not, so `blazefl run --help` can read their
    # settings without paying for torch.
    value: Any
    if name == "FederatedServer":
        from blazefl.algorithms._server import FederatedServer

        value = FederatedServer
    elif name == "FederatedClient":
        from blazefl.algorithms._client import FederatedClient

        value = FederatedClient
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _exports.publish({"__name__": __name__, "__all__": [name], name: value})
    return value


__all__ = [
    "ALGORITHMS",
    "APFL",
    "AggregateDtype",
    "Aggregator",
    "Algorithm",
    "AsyncAlgorithm",
    "Broadcast",
    "ClientUpdate",
    "Ditto",
    "FedAdagrad",
    "FedAdam",
    "FedAsync",
    "FedAvg",
    "FedAvgM",
    "FedBN",
    "FedBuff",
    "FedPer",
    "FedProx",
    "FedRep",
    "FedYogi",
    "FederatedClient",
    "FederatedServer",
    "Finetune",
    "Fold",
    "LocalParts",
    "LocalTraining",
    "RoundUpdates",
    "Scaffold",
    "StaleUpdate",
    "WeightedMean",
    "aggregate_delta",
    "aggregate_model",
    "aggregating",
    "current_aggregator",
    "weighted_average",
]

_exports.publish(globals())
