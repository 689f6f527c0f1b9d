"""Device placement: the ``devices`` setting, its errors, round-robin pinning,
and CPU runs that stay bitwise what they were. (The CUDA paths themselves run
in tests/gpu/test_gpu_devices.py, where a GPU is visible.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
import torch
from sim_fakes import SEED, digest

from blazefl._exceptions import ConfigurationError
from blazefl.reproducibility import create_client_rng_suite
from blazefl.sim import (
    ClientContext,
    CohortExecutor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)
from blazefl.sim._context import ClientState
from blazefl.sim._devices import WorkerDevice, device_for, parse_devices
from blazefl.sim._executors._pool import WorkerPool
from blazefl.sim._jobs import ClientJob, JobOutcome
from fakes import FedAvgHandler, ScriptedWork, quick_processes


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch sees two CUDA devices (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch sees no CUDA device, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_device_lists_are_parsed_in_order() -> None:
    """A name, a comma-separated list or a sequence: the devices in order."""
    assert parse_devices(None) is None
    assert parse_devices("cpu") == ("cpu",)
    assert parse_devices(" cpu , cpu") == ("cpu", "cpu")
    assert parse_devices(["cpu"]) == ("cpu",)


@pytest.mark.usefixtures("two_gpus")
def test_cuda_means_every_visible_gpu() -> None:
    """'cuda' expands to cuda:0..cuda:N-1; explicit indices are kept as given."""
    assert parse_devices("cuda") == ("cuda:0", "cuda:1")
    assert parse_devices("cuda:1,cuda:0") == ("cuda:1", "cuda:0")
    assert parse_devices(["cpu", "cuda:1"]) == ("cpu", "cuda:1")


def test_round_robin_by_worker_position() -> None:
    """Worker i computes on devices[i % len(devices)]; None leaves the job's."""
    devices = ("cuda:0", "cuda:1", "cuda:2")
    assert [device_for(devices, i) for i in range(7)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
    ]
    assert device_for(None, 3) is None


@pytest.mark.usefixtures("two_gpus")
def test_executors_pin_workers_round_robin() -> None:
    """Every executor taking devices places worker positions the same way."""
    for executor in (
        ThreadExecutor(4, devices="cuda"),
        ProcessExecutor(4, devices="cuda"),
        CohortExecutor(4, devices="cuda"),
    ):
        assert executor.devices == ("cuda:0", "cuda:1")
        assert [executor.worker_device(i) for i in range(4)] == [
            "cuda:0",
            "cuda:1",
            "cuda:0",
            "cuda:1",
        ]
    assert InlineExecutor(devices="cuda:1").worker_device(0) == "cuda:1"


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cpu,cuda:0", ["cuda:1"]])
def test_cuda_without_a_gpu_is_refused_naming_the_value(spec: Any) -> None:
    """Asking for CUDA where none is visible fails at construction, saying so."""
    with pytest.raises(
        ConfigurationError,
        match=rf"devices={re.escape(repr(spec))} asks for a CUDA device, "
        r"but no CUDA device "
        r"is visible \(torch.cuda.is_available\(\) is False",
    ):
        ThreadExecutor(2, devices=spec)


@pytest.mark.usefixtures("two_gpus")
def test_an_index_beyond_the_visible_gpus_is_refused() -> None:
    """cuda:2 with two GPUs: the error names the index and what is visible."""
    with pytest.raises(
        ConfigurationError,
        match=r"devices='cuda:0,cuda:2': 'cuda:2' is beyond the 2 visible CUDA "
        r"devices \(cuda:0 to cuda:1\)",
    ):
        ProcessExecutor(2, devices="cuda:0,cuda:2")


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("", r"names no device"),
        ("cpu,", r"names no device"),
        ([], r"names no device"),
        ("mps", r"'mps' is not a device blazefl places workers on"),
        ("cuda:x", r"'cuda:x' is not a CUDA device"),
        ("cuda:01", r"'cuda:01' is not a CUDA device"),
        (3, r"devices must be a device name or a list of them"),
        (["cpu", 0], r"devices must be a device name or a list of them"),
    ],
)
def test_malformed_devices_are_refused(spec: Any, pattern: str) -> None:
    """Anything but cpu/cuda names fails early with what was expected."""
    with pytest.raises(ConfigurationError, match=pattern):
        ThreadExecutor(2, devices=spec)


@pytest.mark.usefixtures("no_gpu")
def test_simulation_cuda_device_without_a_gpu_is_refused() -> None:
    """Simulation(device='cuda') where no GPU is visible fails when built."""
    with pytest.raises(ConfigurationError, match=r"device='cuda' asks for a CUDA"):
        Simulation(FedAvgHandler(), ScriptedWork(), device="cuda")


def test_describe_names_the_devices() -> None:
    """The per-round log line says where the workers compute."""
    assert ThreadExecutor(2, devices="cpu,cpu").describe() == {
        "executor": "threads",
        "workers": 2,
        "devices": "cpu,cpu",
    }
    assert "devices" not in ThreadExecutor(2).describe()


def test_a_replacement_worker_keeps_its_position() -> None:
    """A replaced worker gets the next index but the dead one's position."""
    started: list[tuple[int, int]] = []

    def spawn(index: int, position: int) -> tuple[int, int]:
        started.append((index, position))
        return (index, position)

    pool: WorkerPool[tuple[int, int]] = WorkerPool(spawn, lambda w: None)
    pool.start(3)
    middle = list(pool)[1]
    assert pool.replace(middle) == (3, 1)
    assert list(pool) == [(0, 0), (3, 1), (2, 2)]
    assert started == [(0, 0), (1, 1), (2, 2), (3, 1)]


class _DeviceCheckingWork(ScriptedWork):
    """ScriptedWork that fails unless it is handed the CPU."""

    def __call__(self, ctx: ClientContext, payload: torch.Tensor) -> Any:
        if ctx.device != "cpu":
            raise RuntimeError(f"client ran on {ctx.device!r}, not the worker's cpu")
        return super().__call__(ctx, payload)


def test_executor_devices_override_the_simulations_device() -> None:
    """With devices, a client runs on its worker's device, not the job's."""
    handler = FedAvgHandler(rounds=1)
    sim = Simulation(
        handler,
        _DeviceCheckingWork(),
        executor=ThreadExecutor(2, devices="cpu"),
        seed=SEED,
        device="meta",
    )
    (result,) = sim.run_sync()
    assert len(result.clients) == 6


@pytest.mark.parametrize(
    "make",
    [
        lambda: InlineExecutor(devices="cpu"),
        lambda: ThreadExecutor(3, devices="cpu"),
        lambda: ThreadExecutor(2, devices=["cpu", "cpu"]),
        lambda: quick_processes(2, devices="cpu,cpu"),
    ],
    ids=["inline", "threads3", "threads2", "processes"],
)
def test_cpu_devices_leave_the_numbers_bitwise_unchanged(
    make: Any, reference: dict[str, Any]
) -> None:
    """devices='cpu' on any executor gives the reference run bit for bit."""
    handler = FedAvgHandler()
    results = Simulation(handler, ScriptedWork(), executor=make(), seed=SEED).run_sync()
    got = digest(handler, results)
    assert torch.equal(got["params"], reference["params"])
    assert got["client_metrics"] == reference["client_metrics"]


class _FakeStream:
    """Stands for torch.cuda.Stream on a machine without CUDA: records calls."""

    made: ClassVar[list[_FakeStream]] = []

    def __init__(self, device: str) -> None:
        self.device = device
        self.calls: list[str] = []
        self.fail_sync: Exception | None = None
        _FakeStream.made.append(self)

    def wait_stream(self, other: str) -> None:
        self.calls.append(f"wait {other}")

    def synchronize(self) -> None:
        self.calls.append("synchronize")
        if self.fail_sync is not None:
            raise self.fail_sync


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torch.cuda's stream and device contexts as recorders; determinism noted."""
    from blazefl.sim import _devices

    entered: list[str] = []

    @contextmanager
    def context(what: str, arg: Any) -> Iterator[None]:
        entered.append(f"enter {what} {arg}")
        yield
        entered.append(f"exit {what}")

    _FakeStream.made = []
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: _FakeStream(device))
    monkeypatch.setattr(
        torch.cuda, "default_stream", lambda device: f"default:{device}"
    )
    monkeypatch.setattr(torch.cuda, "device", lambda d: context("device", d))
    monkeypatch.setattr(torch.cuda, "stream", lambda s: context("stream", s.device))
    monkeypatch.setattr(
        _devices, "enable_cuda_determinism", lambda: entered.append("determinism")
    )
    return entered


def test_a_cuda_client_runs_on_the_workers_stream_then_synchronises(
    fake_cuda: list[str],
) -> None:
    """Determinism on, the stream waits for the default one, body inside the
    device and stream contexts, then the stream is synchronised; one stream
    per device, reused by the worker, a new one for a new worker."""
    place = WorkerDevice("cuda:1")
    job = ClientJob(round=0, slot=0, cid=3, device="cpu", state=_state())
    seen: list[str] = []

    def execute(placed: ClientJob) -> JobOutcome:
        seen.append(placed.device)
        fake_cuda.append("body")
        return JobOutcome(placed.slot, placed.cid, "w", 0.0, result=1)

    assert place.run(job, execute, "w").result == 1
    assert seen == ["cuda:1"]
    assert fake_cuda == [
        "determinism",
        "enter device cuda:1",
        "enter stream cuda:1",
        "body",
        "exit stream",
        "exit device",
    ]
    (stream,) = _FakeStream.made
    assert stream.calls == ["wait default:cuda:1", "synchronize"]
    place.run(job, execute, "w")
    assert len(_FakeStream.made) == 1  # the worker keeps its stream
    WorkerDevice("cuda:1").run(job, execute, "w")
    assert len(_FakeStream.made) == 2  # a new worker has its own


def test_an_error_at_synchronisation_fails_the_clients_slot(
    fake_cuda: list[str],
) -> None:
    """A kernel error CUDA reports only at the sync is that client's failure."""
    place = WorkerDevice("cuda:0")
    job = ClientJob(round=0, slot=2, cid=5, device="cuda:0", state=_state())

    def execute(placed: ClientJob) -> JobOutcome:
        _FakeStream.made[-1].fail_sync = RuntimeError(
            "CUDA error: an illegal memory access"
        )
        return JobOutcome(
            placed.slot, placed.cid, "thread-0", 0.1, result=torch.ones(1)
        )

    outcome = place.run(job, execute, "thread-0")
    assert outcome.result is None
    assert outcome.error is not None
    assert outcome.error.type == "RuntimeError"
    assert "illegal memory access" in outcome.error.message
    assert (outcome.slot, outcome.cid, outcome.worker) == (2, 5, "thread-0")


def test_cpu_clients_touch_no_cuda(fake_cuda: list[str]) -> None:
    """On the CPU the body runs as it is: no stream, no determinism switch."""
    job = ClientJob(round=0, slot=0, cid=0, device="cpu", state=_state())
    outcome = WorkerDevice("cpu").run(
        job, lambda j: JobOutcome(j.slot, j.cid, "w", 0.0, result=j.device), "w"
    )
    assert outcome.result == "cpu"
    assert fake_cuda == []
    assert _FakeStream.made == []


def _state() -> ClientState:
    return ClientState(create_client_rng_suite(0, 0).get_state())
