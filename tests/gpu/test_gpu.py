"""CUDA paths: per-client CUDA generators, and FedAvg on the GPU bit for bit
across executors. Skipped where no GPU is visible."""

from __future__ import annotations

import os

import pytest
import torch

from blazefl.contrib import FedAvgBaseServerHandler, FedAvgThreadPoolClientTrainer
from blazefl.core import serialize_model
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.reproducibility import create_client_rng_suite, setup_reproducibility
from blazefl.sim import InlineExecutor, ProcessExecutor, Simulation, ThreadExecutor

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)


def test_client_suite_has_cuda_generator_that_resumes() -> None:
    """A client's CUDA stream continues exactly after capture and restore."""
    suite = create_client_rng_suite(5, 3)
    assert suite.torch_cuda is not None
    torch.rand(4, device="cuda", generator=suite.torch_cuda)
    state = suite.get_state()
    expected = torch.rand(4, device="cuda", generator=suite.torch_cuda)
    suite.set_state(state)
    assert torch.equal(
        torch.rand(4, device="cuda", generator=suite.torch_cuda), expected
    )


def _fedavg(executor: object) -> torch.Tensor:
    dataset = SyntheticPartitionedDataset(8, seed=0, samples_per_client=64)
    zoo = ModelZoo()
    handler = FedAvgBaseServerHandler(zoo, "cnn", dataset, 3, 8, 0.5, "cuda", 128, 1)
    trainer = FedAvgThreadPoolClientTrainer(
        zoo, "cnn", dataset, "cuda", 8, 1, 16, 0.05, 1, num_parallels=2
    )
    Simulation(handler, trainer, executor=executor, seed=1).run_sync()  # type: ignore[arg-type]
    return serialize_model(handler.model)


def test_fedavg_on_gpu_bitwise_identical_across_executors() -> None:
    """Inline, thread and process executors give the same GPU-trained model."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    setup_reproducibility(0)
    torch.use_deterministic_algorithms(True)
    try:
        inline = _fedavg(InlineExecutor())
        threads = _fedavg(ThreadExecutor(2))
        processes = _fedavg(ProcessExecutor(2))
    finally:
        torch.use_deterministic_algorithms(False)
    assert inline.device.type == "cpu"
    assert torch.equal(inline, threads)
    assert torch.equal(inline, processes)
