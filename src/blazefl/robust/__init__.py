"""Byzantine robustness: attacks to mix into a federation, and the robust
aggregators that defend against them, on any algorithm and executor::

    attackers = draw_attackers(num_clients=20, fraction=0.2, seed=0)
    server = FederatedServer(FedAvg(), zoo, "cnn", dataset=data, num_clients=20,
                             rounds=10, seed=0, aggregator=Krum(f=4),
                             attack=SignFlip())   # measured each evaluation
    client = AttackedClient(FederatedClient(FedAvg(), zoo, "cnn", data),
                            SignFlip(), attackers)
    Simulation(server, client, executor=ThreadExecutor(2), seed=0).run_sync()

Aggregators (each checks at construction of the server how many Byzantine
clients f of the n per round it tolerates): `Median`, `TrimmedMean`, `Krum`,
`MultiKrum`, `Bulyan`, `NormBound`; `WeightedMean` is the default. Attacks:
`SignFlip`, `ScaledUpdate`, `GaussianNoise`, `LabelFlip`, `Backdoor`. See
docs/robustness.md for which to use when, and measured effects.
"""

from blazefl import _exports
from blazefl.algorithms import Aggregator, RoundUpdates, WeightedMean
from blazefl.robust._aggregators import Median, NormBound, TrimmedMean
from blazefl.robust._attacked import AttackedClient, PoisonedDataset, draw_attackers
from blazefl.robust._attacks import (
    Attack,
    Backdoor,
    GaussianNoise,
    LabelFlip,
    ScaledUpdate,
    SignFlip,
)
from blazefl.robust._krum import Bulyan, Krum, MultiKrum
from blazefl.robust._registry import (
    AGGREGATORS,
    ATTACKS,
    make_aggregator,
    make_attack,
)

__all__ = [
    "AGGREGATORS",
    "ATTACKS",
    "Aggregator",
    "Attack",
    "AttackedClient",
    "Backdoor",
    "Bulyan",
    "GaussianNoise",
    "Krum",
    "LabelFlip",
    "Median",
    "MultiKrum",
    "NormBound",
    "PoisonedDataset",
    "RoundUpdates",
    "ScaledUpdate",
    "SignFlip",
    "TrimmedMean",
    "WeightedMean",
    "draw_attackers",
    "make_aggregator",
    "make_attack",
]

_exports.publish(globals())
