"""BlazeFL 3.0's ``blazefl.core.model_selector``, importable by its original
module path."""

from blazefl import _exports
from blazefl.core._protocols import ModelSelector

__all__ = ["ModelSelector"]

_exports.publish(globals())
