"""Which client code each executor takes: every shape of client code on every
executor is either accepted (and runs) or refused when the Simulation is built,
with a message naming the client code, the executor and what to use instead."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from sim_fakes import quick_processes

from blazefl import ConfigurationError
from blazefl.core import (
    ProcessPoolClientTrainer,
    ThreadPoolClientTrainer,
    process_tensors_in_object,
)
from blazefl.sim import (
    ClientContext,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)
from blazefl.sim._adapters import adapt
from blazefl.sim._engine import RoundRunner
from blazefl.sim._states import MemoryStateStore

_NO_RAY = importlib.util.find_spec("ray.exceptions") is None  # see tests/ray


# -- the client code, one of each shape ------------------------------------------


@dataclass
class Up:
    cid: int
    tensor: torch.Tensor


def native_work(ctx: ClientContext, payload: torch.Tensor) -> Up:
    return Up(ctx.cid, payload * (ctx.cid + 1))


class NativeTrainer:
    """A trainer that hands over native work (blazefl's contrib trainers)."""

    def as_client_work(self) -> Callable[[ClientContext, torch.Tensor], Up]:
        return native_work


class EchoProcessTrainer(ProcessPoolClientTrainer[Up, torch.Tensor, int, Up]):
    def __init__(self, num_parallels: int = 2) -> None:
        self.num_parallels = num_parallels
        self.device = "cpu"
        self.device_count = 0
        self.cache = []
        self.stop_event = None

    def get_client_config(self, cid: int) -> int:
        return cid

    @staticmethod
    def worker(
        config: int,
        payload: torch.Tensor,
        device: str,
        stop_event: Any,
        *,
        shm_buffer: Up | None = None,
    ) -> Up:
        assert shm_buffer is not None
        shm_buffer.tensor.copy_(payload * (config + 1))
        light: Up = process_tensors_in_object(Up(config, shm_buffer.tensor), "replace")
        return light

    def prepare_uplink_package_buffer(self) -> Up:
        return Up(-1, torch.zeros(4))

    def convert_buffer_to_uplink(self, buffer: Up) -> Up:
        return buffer


class EchoThreadTrainer(ThreadPoolClientTrainer[Up, torch.Tensor]):
    def __init__(self, num_parallels: int = 2) -> None:
        self.num_parallels = num_parallels
        self.device = "cpu"
        self.device_count = 0
        self.cache = []
        self.stop_event = threading.Event()

    def worker(
        self, cid: int, device: str, payload: torch.Tensor, stop_event: Any
    ) -> Up:
        return Up(cid, payload * (cid + 1))


class SerialTrainer:
    """A plain BaseClientTrainer: local_process and uplink_package only."""

    def __init__(self) -> None:
        self._cache: list[Up] = []

    def local_process(self, payload: torch.Tensor, cid_list: list[int]) -> None:
        self._cache = [Up(cid, payload * (cid + 1)) for cid in cid_list]

    def uplink_package(self) -> list[Up]:
        packages, self._cache = self._cache, []
        return packages


class OneRound:
    """A server handler for one round of clients 0 and 1, keeping the uplinks."""

    def __init__(self) -> None:
        self.packages: list[Up] = []

    def sample_clients(self) -> list[int]:
        return [0, 1]

    def downlink_package(self) -> torch.Tensor:
        return torch.ones(4)

    def load(self, package: Up) -> bool:
        self.packages.append(package)
        return len(self.packages) == 2

    def is_stopped(self) -> bool:
        return len(self.packages) == 2


SHAPES: dict[str, Callable[[], Any]] = {
    "work": lambda: native_work,
    "as_client_work": NativeTrainer,
    "process_trainer": EchoProcessTrainer,
    "thread_trainer": EchoThreadTrainer,
    "serial_trainer": SerialTrainer,
}


def _ray(max_workers: int) -> Executor:
    from blazefl.sim import RayExecutor

    return RayExecutor(max_workers)


EXECUTORS: dict[str, Callable[[], Executor]] = {
    "inline": InlineExecutor,
    "threads-1": lambda: ThreadExecutor(1),
    "threads-2": lambda: ThreadExecutor(2),
    "processes-2": lambda: quick_processes(2),
    "ray-1": lambda: _ray(1),
}

_INSTEAD = r"\. Write the client as native work\(ctx, payload\), or use "
_IN_PROCESSES = (
    r"cannot run on ProcessExecutor, which runs clients in worker processes: "
)
_ON_RAY = (
    r"cannot run on RayExecutor, which runs clients on Ray actors, possibly on "
    r"other machines: "
)
_THREADS_ONLY = (
    r"EchoThreadTrainer is a BlazeFL ThreadPoolClientTrainer, and its worker\(\) "
    r"runs on the trainer object, which stays in this process"
    + _INSTEAD
    + r"ThreadExecutor$"
)
_INLINE_ONLY = (
    r"SerialTrainer is a BlazeFL BaseClientTrainer, and its local_process\(\) "
    r"runs on the trainer object, in this process" + _INSTEAD + r"InlineExecutor$"
)

# Every pair not listed here is accepted.
REFUSED: dict[tuple[str, str], str] = {
    ("process_trainer", "ray-1"): (
        r"^EchoProcessTrainer " + _ON_RAY + r"EchoProcessTrainer is a BlazeFL "
        r"ProcessPoolClientTrainer, and its uplinks come back through this "
        r"machine's shared memory" + _INSTEAD + r"ProcessExecutor or ThreadExecutor$"
    ),
    ("thread_trainer", "processes-2"): r"^EchoThreadTrainer "
    + _IN_PROCESSES
    + _THREADS_ONLY,
    ("thread_trainer", "ray-1"): r"^EchoThreadTrainer " + _ON_RAY + _THREADS_ONLY,
    ("serial_trainer", "processes-2"): r"^SerialTrainer "
    + _IN_PROCESSES
    + _INLINE_ONLY,
    ("serial_trainer", "ray-1"): r"^SerialTrainer " + _ON_RAY + _INLINE_ONLY,
    ("serial_trainer", "threads-2"): (
        r"^SerialTrainer only provides local_process/uplink_package, which cannot "
        r"run clients concurrently; use one worker, not 2 "
        r"\(ThreadExecutor\(max_workers=2\)\): InlineExecutor\(\) or "
        r"ThreadExecutor\(1\)$"
    ),
}


def _pairs(refused: bool) -> list[Any]:
    return [
        pytest.param(
            shape,
            executor,
            id=f"{shape}-on-{executor}",
            marks=[pytest.mark.skipif(_NO_RAY, reason="needs blazefl[ray]")]
            if executor.startswith("ray")
            else [],
        )
        for shape in SHAPES
        for executor in EXECUTORS
        if ((shape, executor) in REFUSED) == refused
    ]


@pytest.mark.parametrize(("shape", "executor"), _pairs(refused=True))
def test_refused_at_construction(shape: str, executor: str) -> None:
    """A Simulation of client code on an executor that cannot run it is not built."""
    with pytest.raises(ConfigurationError, match=REFUSED[shape, executor]):
        Simulation(OneRound(), SHAPES[shape](), executor=EXECUTORS[executor]())


@pytest.mark.parametrize(("shape", "executor"), _pairs(refused=True))
def test_round_runner_refuses_too(shape: str, executor: str) -> None:
    """The engine behind BlazeFL's local_process refuses the same pairs."""
    adapter = adapt(SHAPES[shape](), "cpu")
    with pytest.raises(ConfigurationError, match=REFUSED[shape, executor]):
        RoundRunner(adapter, EXECUTORS[executor](), MemoryStateStore(0))


@pytest.mark.parametrize(
    ("shape", "executor"),
    [p for p in _pairs(refused=False) if not p.values[1].startswith("ray")],
)
def test_accepted_pairs_run_a_round(shape: str, executor: str) -> None:
    """Accepted client code runs on the executor: every client's uplink arrives."""
    handler = OneRound()
    sim = Simulation(handler, SHAPES[shape](), executor=EXECUTORS[executor]())
    (result,) = sim.run_sync()
    assert list(result.cids) == [0, 1]
    uplinks = {p.cid: p.tensor.tolist() for p in handler.packages}
    assert uplinks == {0: [1.0] * 4, 1: [2.0] * 4}


@pytest.mark.skipif(_NO_RAY, reason="needs blazefl[ray]")
@pytest.mark.parametrize("shape", ["work", "as_client_work"])
def test_ray_accepts_native_work(shape: str) -> None:
    """Native work (direct, or from as_client_work) is accepted by RayExecutor
    (tests/ray runs it)."""
    executor = _ray(1)
    sim = Simulation(OneRound(), SHAPES[shape](), executor=executor)
    assert sim.executor is executor


@pytest.mark.parametrize(
    ("trainer", "expected", "workers"),
    [
        (lambda: native_work, InlineExecutor, 1),
        (NativeTrainer, InlineExecutor, 1),
        (lambda: EchoProcessTrainer(3), ProcessExecutor, 3),
        (lambda: EchoThreadTrainer(3), ThreadExecutor, 3),
        (SerialTrainer, InlineExecutor, 1),
    ],
    ids=["work", "as_client_work", "process_trainer", "thread_trainer", "serial"],
)
def test_default_executor_is_what_the_trainer_asks_for(
    trainer: Callable[[], Any], expected: type[Executor], workers: int
) -> None:
    """Without an executor, a pool trainer gets its num_parallels workers."""
    sim = Simulation(OneRound(), trainer())
    assert type(sim.executor) is expected
    assert sim.executor.max_workers == workers


def test_trainer_with_native_work_keeps_its_pool() -> None:
    """A trainer with as_client_work and a thread pool (contrib's FedAvg thread
    trainer) runs its native work on its num_parallels threads."""

    class PooledNativeTrainer(NativeTrainer):
        num_parallels = 3

        def worker(self) -> None: ...

    sim = Simulation(OneRound(), PooledNativeTrainer())
    assert type(sim.executor) is ThreadExecutor
    assert sim.executor.max_workers == 3
