"""The public surface: every exported name exists, and the BlazeFL 3.0 API is whole."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = [
    "blazefl",
    "blazefl.core",
    "blazefl.reproducibility",
    "blazefl.sim",
    "blazefl.sim.abc",
    "blazefl.contrib",
    "blazefl.data",
    "blazefl.models",
    "blazefl.algorithms",
    "blazefl.simtime",
    "blazefl.privacy",
    "blazefl.robust",
]

# Every public name of BlazeFL 3.0 (../shared/docs/BLAZEFL-API.md).
BLAZEFL_API = {
    "blazefl.core": [
        "BaseServerHandler",
        "BaseClientTrainer",
        "ThreadPoolClientTrainer",
        "ProcessPoolClientTrainer",
        "ModelSelector",
        "PartitionedDataset",
        "FilteredDataset",
        "serialize_model",
        "deserialize_model",
        "SHMHandle",
        "process_tensors_in_object",
        "reconstruct_from_shared_memory",
    ],
    "blazefl.reproducibility": [
        "RNGSuite",
        "create_rng_suite",
        "setup_reproducibility",
        "seed_everything",
        "RandomStateSnapshot",
    ],
    "blazefl.contrib": [
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


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_names_resolve(module_name: str) -> None:
    """Each public module's __all__ lists only names it really has, once each."""
    module = importlib.import_module(module_name)
    names = module.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_classes_and_functions_are_exported(module_name: str) -> None:
    """Nothing public is defined in a package without being in its __all__."""
    module = importlib.import_module(module_name)
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and getattr(
            value, "__module__", ""
        ).startswith("blazefl"):
            assert name in module.__all__, f"{module_name}.{name} not in __all__"


@pytest.mark.parametrize(
    ("module_name", "name"),
    [(m, n) for m, names in BLAZEFL_API.items() for n in names],
)
def test_blazefl_api_name_present(module_name: str, name: str) -> None:
    """Every BlazeFL 3.0 public name imports from its original path."""
    module = importlib.import_module(module_name)
    assert name in module.__all__
    assert getattr(module, name) is not None


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_exported_names_show_a_public_module(module_name: str) -> None:
    """Exported classes and functions carry a public module path, not a private one."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        path = value.__module__
        if not path.startswith("blazefl"):
            continue
        assert not any(p.startswith("_") for p in path.split(".")), (
            f"{module_name}.{name} shows {path}"
        )
        assert getattr(importlib.import_module(path), value.__name__) is value


def test_published_classes_still_pickle_by_reference() -> None:
    """A published class pickles under its public path and comes back as itself."""
    import pickle

    from blazefl.sim import ClientFailure
    from blazefl.sim.abc import ClientJob

    failure = ClientFailure("error", "ValueError", "boom")
    assert pickle.loads(pickle.dumps(failure)) == failure
    assert b"blazefl.sim.abc" in pickle.dumps(ClientJob)
