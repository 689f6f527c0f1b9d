"""Built-in federated data sets that satisfy `blazefl.core.PartitionedDataset`."""

from blazefl import _exports
from blazefl.data._cifar_like import SyntheticCIFAR10
from blazefl.data._client_split import split_client_tests
from blazefl.data._digits import load_digits_dataset
from blazefl.data._feature_shift import (
    FEATURE_SHIFTS,
    ClientShift,
    client_shifts,
    feature_shift,
)
from blazefl.data._files import FileImageDataset, ImageSplits, load_cifar10, load_mnist
from blazefl.data._leaf import LeafSyntheticDataset
from blazefl.data._leaf_sets import (
    LEAF_LETTERS,
    LeafCelebA,
    LeafDataset,
    LeafFEMNIST,
    LeafSent140,
    LeafShakespeare,
    sent140_token_ids,
)
from blazefl.data._mnist5k import load_mnist5k, mnist5k_path
from blazefl.data._partition import (
    client_inner_dirichlet_partition,
    dirichlet_partition,
    iid_partition,
    label_skew_partition,
    shard_partition,
    unbalanced_partition,
    unbalanced_sizes,
)
from blazefl.data._partition_report import PartitionReport, partition_report
from blazefl.data._partitioned import TensorPartitionedDataset
from blazefl.data._size_partition import (
    natural_id_partition,
    natural_ids,
    size_partition,
    size_partition_sizes,
)
from blazefl.data._synthetic import SyntheticPartitionedDataset

__all__ = [
    "split_client_tests",
    "SyntheticPartitionedDataset",
    "FEATURE_SHIFTS",
    "ClientShift",
    "client_shifts",
    "feature_shift",
    "PartitionReport",
    "client_inner_dirichlet_partition",
    "dirichlet_partition",
    "iid_partition",
    "label_skew_partition",
    "partition_report",
    "shard_partition",
    "unbalanced_partition",
    "unbalanced_sizes",
    "TensorPartitionedDataset",
    "LeafSyntheticDataset",
    "LEAF_LETTERS",
    "LeafCelebA",
    "LeafDataset",
    "LeafFEMNIST",
    "LeafSent140",
    "LeafShakespeare",
    "sent140_token_ids",
    "natural_id_partition",
    "natural_ids",
    "size_partition",
    "size_partition_sizes",
    "SyntheticCIFAR10",
    "FileImageDataset",
    "ImageSplits",
    "load_cifar10",
    "load_mnist",
    "load_mnist5k",
    "mnist5k_path",
    "load_digits_dataset",
]

_exports.publish(globals())
