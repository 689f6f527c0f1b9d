"""Differential privacy and secure aggregation for any algorithm and executor.

Central DP-FedAvg (McMahan et al. 2018) with fixed or adaptive clipping
(Andrew et al. 2021), local DP (Gaussian or Laplace noise added by each
client), an (ε, δ) accountant on Google's ``dp-accounting`` (RDP or PLD), and
simulated secure aggregation (pairwise masks, dropout recovery). Every noise
draw comes from the server's or the client's own RNG suite, so a private run
is reproducible bit for bit on every executor and after a resume::

    privacy = Privacy(dp="central", noise_multiplier=2.0, clip_norm=0.5,
                      target_epsilon=8.0, secagg=True, secret=seed)
    server = FederatedServer(FedAvg(), zoo, "cnn", dataset=data, num_clients=100,
                             rounds=50, sample_ratio=0.1, seed=seed,
                             privacy=privacy)
    client = FederatedClient(FedAvg(), zoo, "cnn", data, privacy=privacy)

See docs/privacy.md for what each choice assumes.
"""

from blazefl import _exports
from blazefl.privacy._accountant import PrivacyAccountant, calibrate_noise
from blazefl.privacy._secagg import MODULUS_BITS, SCALE_BITS, SecAggStats
from blazefl.privacy._server import PrivateAggregation
from blazefl.privacy._settings import (
    DP_INCOMPATIBLE_AGGREGATORS,
    SECAGG_INCOMPATIBLE_AGGREGATORS,
    Privacy,
)

__all__ = [
    "DP_INCOMPATIBLE_AGGREGATORS",
    "MODULUS_BITS",
    "Privacy",
    "PrivacyAccountant",
    "PrivateAggregation",
    "SCALE_BITS",
    "SECAGG_INCOMPATIBLE_AGGREGATORS",
    "SecAggStats",
    "calibrate_noise",
]

_exports.publish(globals())
