"""BlazeFL 3.0's ``blazefl.core.utils``: model (de)serialisation and the
shared-memory helpers, importable by their original module path."""

from blazefl import _exports
from blazefl.core._tensors import (
    SHMHandle,
    deserialize_model,
    process_tensors_in_object,
    reconstruct_from_shared_memory,
    serialize_model,
)

__all__ = [
    "SHMHandle",
    "deserialize_model",
    "process_tensors_in_object",
    "reconstruct_from_shared_memory",
    "serialize_model",
]

_exports.publish(globals())
