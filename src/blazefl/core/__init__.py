"""The BlazeFL 3.0 core API: protocols, trainers and tensor utilities.

Code written against ``blazefl.core`` of BlazeFL 3.0 runs here unchanged. The
trainers' ``local_process`` is a thin face over the coordinator in
`blazefl.sim`, so determinism, failure reporting and persistent workers apply
to them too.
"""

from blazefl import _exports

# Through BlazeFL 3.0's own module paths, so the names show those paths too.
from blazefl.core.client_trainer import (
    BaseClientTrainer,
    ProcessPoolClientTrainer,
    ThreadPoolClientTrainer,
)
from blazefl.core.model_selector import ModelSelector
from blazefl.core.partitioned_dataset import FilteredDataset, PartitionedDataset
from blazefl.core.server_handler import BaseServerHandler
from blazefl.core.utils import (
    SHMHandle,
    deserialize_model,
    process_tensors_in_object,
    reconstruct_from_shared_memory,
    serialize_model,
)

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
