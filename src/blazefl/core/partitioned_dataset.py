"""BlazeFL 3.0's ``blazefl.core.partitioned_dataset``: the data-set protocol and
`FilteredDataset`, importable by their original module path."""

from blazefl import _exports
from blazefl.core._dataset import FilteredDataset
from blazefl.core._protocols import PartitionedDataset

__all__ = ["FilteredDataset", "PartitionedDataset"]

_exports.publish(globals())
