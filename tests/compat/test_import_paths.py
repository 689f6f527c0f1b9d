"""BlazeFL 3.0's module paths: every public name imports from where 3.0 defines it."""

from __future__ import annotations

import importlib
import pickle

import pytest

# ../shared/docs/BLAZEFL-API.md, "Module paths, edges and hooks".
MODULE_PATHS = {
    "blazefl.core.client_trainer": [
        "BaseClientTrainer",
        "ProcessPoolClientTrainer",
        "ThreadPoolClientTrainer",
    ],
    "blazefl.core.model_selector": ["ModelSelector"],
    "blazefl.core.partitioned_dataset": ["PartitionedDataset", "FilteredDataset"],
    "blazefl.core.server_handler": ["BaseServerHandler"],
    "blazefl.core.utils": [
        "SHMHandle",
        "serialize_model",
        "deserialize_model",
        "process_tensors_in_object",
        "reconstruct_from_shared_memory",
    ],
    "blazefl.reproducibility.generator": [
        "RNGSuite",
        "create_rng_suite",
        "setup_reproducibility",
    ],
    "blazefl.reproducibility.snapshot": ["RandomStateSnapshot", "seed_everything"],
    "blazefl.contrib.fedavg": [
        "FedAvgUplinkPackage",
        "FedAvgDownlinkPackage",
        "FedAvgPartitionType",
        "FedAvgPartitionedDataset",
        "FedAvgBaseServerHandler",
        "FedAvgBaseClientTrainer",
        "FedAvgThreadPoolClientTrainer",
        "FedAvgProcessPoolClientTrainer",
    ],
}


@pytest.mark.parametrize(
    ("path", "name"), [(p, n) for p, names in MODULE_PATHS.items() for n in names]
)
def test_name_imports_from_its_blazefl_module(path: str, name: str) -> None:
    """`from <3.0 module> import <name>` works and is the package-level object."""
    module = importlib.import_module(path)
    assert name in module.__all__
    package = importlib.import_module(path.rsplit(".", 1)[0])
    assert getattr(module, name) is getattr(package, name)


@pytest.mark.parametrize(
    "path", [p for p in MODULE_PATHS if not p.startswith("blazefl.contrib")]
)
def test_names_show_their_blazefl_module(path: str) -> None:
    """Reprs and pickles name the 3.0 module, as in BlazeFL itself."""
    module = importlib.import_module(path)
    for name in module.__all__:
        assert getattr(module, name).__module__ == path


def test_a_blazefl_path_pickle_loads() -> None:
    """An object pickled under a 3.0 module path loads back as itself."""
    from blazefl.core.utils import SHMHandle

    data = pickle.dumps(SHMHandle())
    assert b"blazefl.core.utils" in data
    assert pickle.loads(data) == SHMHandle()
