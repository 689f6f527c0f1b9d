"""The BlazeFL 3.0 core API: protocols, trainers and tensor utilities.

Code written against ``blazefl.core`` of BlazeFL 3.0 runs here unchanged. The
trainers' ``local_process`` is a thin face over the coordinator in
`blazefl.sim`, so determinism, failure reporting and persistent workers apply
to them too.
"""

from blazefl import _exports
from blazefl.core._dataset import FilteredDataset
from blazefl.core._process_trainer import ProcessPoolClientTrainer
from blazefl.core._protocols import (
    BaseClientTrainer,
    BaseServerHandler,
    ModelSelector,
    PartitionedDataset,
)
from blazefl.core._tensors import (
    SHMHandle,
    deserialize_model,
    process_tensors_in_object,
    reconstruct_from_shared_memory,
    serialize_model,
)
from blazefl.core._thread_trainer import ThreadPoolClientTrainer

__all__ = [
    "BaseClientTrainer",
    "BaseServerHandler",
    "FilteredDataset",
    "ModelSelector",
    "PartitionedDataset",
    "ProcessPoolClientTrainer",
    "SHMHandle",
    "ThreadPoolClientTrainer",
    "deserialize_model",
    "process_tensors_in_object",
    "reconstruct_from_shared_memory",
    "serialize_model",
]

_exports.publish(globals())
