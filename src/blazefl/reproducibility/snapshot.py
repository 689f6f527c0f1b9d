"""BlazeFL 3.0's ``blazefl.reproducibility.snapshot``: global seeding and
snapshots of the global generators, importable by their original module path."""

from blazefl import _exports
from blazefl.reproducibility._global import RandomStateSnapshot, seed_everything

__all__ = ["RandomStateSnapshot", "seed_everything"]

_exports.publish(globals())
