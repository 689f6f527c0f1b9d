"""Executors placing workers on GPUs (``devices=``): one CUDA stream per
in-process worker, process workers pinned round-robin, cohort chunks on the
GPU, and the same bits whichever executor ran the clients. Skipped where no
GPU is visible (CPU-side placement: tests/sim/test_sim_devices.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.core import serialize_model
from blazefl.data import SyntheticCIFAR10
from blazefl.models import ModelZoo
from blazefl.sim import (
    ClientContext,
    CohortExecutor,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)

CLIENTS = 8


def _federation(executor: Executor, rounds: int = 2) -> tuple[torch.Tensor, Any]:
    """FedAvg, the CIFAR CNN, 8 clients of 40 CIFAR-shaped images; server on CPU."""
    data = SyntheticCIFAR10(CLIENTS, seed=3, samples_per_client=40, test_samples=50)
    zoo = ModelZoo(input_shape=data.input_shape, num_classes=10)
    server = FederatedServer(
        FedAvg(), zoo, "cifar_cnn", dataset=data, num_clients=CLIENTS,
        rounds=rounds, seed=1,
    )  # fmt: skip
    client = FederatedClient(
        FedAvg(), zoo, "cifar_cnn", data, epochs=1, batch_size=10, lr=0.1
    )
    sim = Simulation(server, client, executor=executor, seed=1, evaluate_every=0)
    results = sim.run_sync()
    return serialize_model(server.model), results


def test_per_client_executors_on_one_gpu_are_bitwise_equal() -> None:
    """Inline, 1 and 4 threads sharing cuda:0, and 2 pinned processes: same bits."""
    inline, _ = _federation(InlineExecutor(devices="cuda:0"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
    for executor in (
        ThreadExecutor(1, devices="cuda:0"),
        ThreadExecutor(4, devices="cuda:0"),
        ProcessExecutor(2, devices="cuda:0"),
    ):
        params, _ = _federation(executor)
        assert torch.equal(params, inline), type(executor).__name__


def test_gpu_run_repeats_bit_for_bit() -> None:
    """Two runs on 4 threads sharing the GPU: the same bits."""
    first, _ = _federation(ThreadExecutor(4, devices="cuda"))
    second, _ = _federation(ThreadExecutor(4, devices="cuda"))
    assert torch.equal(first, second)


def test_cohort_on_the_gpu_is_bitwise_across_workers_and_runs() -> None:
    """Cohort chunks of 4 on the GPU: 1 vs 2 workers, and run to run."""
    one, _ = _federation(CohortExecutor(1, max_cohort=4, devices="cuda:0"))
    two, _ = _federation(CohortExecutor(2, max_cohort=4, devices="cuda:0"))
    again, _ = _federation(CohortExecutor(2, max_cohort=4, devices="cuda:0"))
    assert torch.equal(one, two)
    assert torch.equal(two, again)
    per_client, _ = _federation(ThreadExecutor(2, devices="cuda:0"))
    assert torch.isfinite(one).all()
    # Not bitwise (batched kernels round differently); close.
    assert (one - per_client).abs().max().item() < 1e-2


class _StreamRecorder:
    """Native work that reports the stream and device it computes on."""

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> torch.Tensor:
        x = payload.to(ctx.device) * 2  # some work on the device
        stream = torch.cuda.current_stream()
        ctx.metrics["stream"] = float(stream.stream_id)
        ctx.metrics["default_stream"] = float(
            stream == torch.cuda.default_stream(stream.device)
        )
        ctx.metrics["device_index"] = float(torch.cuda.current_device())
        ctx.metrics["pid"] = float(os.getpid())
        return x.cpu()


class _Handler:
    def __init__(self, clients: int = 12) -> None:
        self.clients = clients
        self.got: list[torch.Tensor] = []

    def sample_clients(self) -> list[int]:
        return list(range(self.clients))

    def downlink_package(self) -> torch.Tensor:
        return torch.arange(16, dtype=torch.float32)

    def load(self, package: torch.Tensor) -> bool:
        self.got.append(package)
        return len(self.got) == self.clients

    def is_stopped(self) -> bool:
        return len(self.got) >= self.clients


def test_thread_workers_each_compute_on_a_stream_of_their_own() -> None:
    """3 threads on one GPU: 3 streams, one per worker, none the default one."""
    handler = _Handler()
    sim = Simulation(
        handler, _StreamRecorder(), executor=ThreadExecutor(3, devices="cuda:0")
    )
    (result,) = sim.run_sync()
    by_worker: dict[str, set[float]] = {}
    for report in result.clients:
        assert report.metrics["default_stream"] == 0.0
        by_worker.setdefault(report.worker, set()).add(report.metrics["stream"])
    assert all(len(streams) == 1 for streams in by_worker.values())
    streams = [s for group in by_worker.values() for s in group]
    assert len(set(streams)) == len(streams)
    assert all(torch.equal(p, torch.arange(16.0) * 2) for p in handler.got)


def test_process_workers_are_pinned_round_robin() -> None:
    """Worker i of a ProcessExecutor computes on GPU i % (visible GPUs)."""
    count = torch.cuda.device_count()
    handler = _Handler()
    executor = ProcessExecutor(2, devices="cuda")
    sim = Simulation(handler, _StreamRecorder(), executor=executor)
    (result,) = sim.run_sync()
    for report in result.clients:
        position = int(report.worker.removeprefix("process-"))
        assert report.metrics["device_index"] == float(position % count)
        assert report.metrics["default_stream"] == 0.0
