"""BlazeFL 3.0's ``blazefl.reproducibility.generator``: RNG suites and
process-wide determinism settings, importable by their original module path."""

from blazefl import _exports
from blazefl.reproducibility._global import setup_reproducibility
from blazefl.reproducibility._rng import RNGSuite, create_rng_suite

__all__ = ["RNGSuite", "create_rng_suite", "setup_reproducibility"]

_exports.publish(globals())
