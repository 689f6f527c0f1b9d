"""Reproducible randomness: per-client RNG suites, global seeding, snapshots.

Code written against ``blazefl.reproducibility`` of BlazeFL 3.0 runs here
unchanged. Additions: `derive_seed` and `create_client_rng_suite` (per-client
streams that do not collide across runs), `RNGSuiteState` (JSON-ready suite
state for checkpoints) and `set_torch_threads` / `torch_threads`.
"""

from blazefl import _exports
from blazefl.reproducibility._global import set_torch_threads, torch_threads
from blazefl.reproducibility._rng import (
    RNGSuiteState,
    create_client_rng_suite,
    derive_seed,
)

# Through BlazeFL 3.0's own module paths, so the names show those paths too.
from blazefl.reproducibility.generator import (
    RNGSuite,
    create_rng_suite,
    setup_reproducibility,
)
from blazefl.reproducibility.snapshot import RandomStateSnapshot, seed_everything

__all__ = [
    # per-client generators
    "RNGSuite",
    "RNGSuiteState",
    "create_rng_suite",
    "create_client_rng_suite",
    "derive_seed",
    # process-wide state
    "setup_reproducibility",
    "seed_everything",
    "RandomStateSnapshot",
    "set_torch_threads",
    "torch_threads",
]

_exports.publish(globals())
