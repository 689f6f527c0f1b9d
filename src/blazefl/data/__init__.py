"""Built-in federated data sets that satisfy `blazefl.core.PartitionedDataset`."""

from blazefl.data._synthetic import SyntheticPartitionedDataset

__all__ = ["SyntheticPartitionedDataset"]
