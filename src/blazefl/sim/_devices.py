"""Which device each worker computes on, and how workers share a GPU.

Every executor that takes ``devices`` (inline, threads, processes, cohort)
places its workers the same way, through this module:

- ``devices`` is ``"cpu"``, ``"cuda"`` (every visible GPU), ``"cuda:N"``, a
  comma-separated list of those (``"cuda:0,cuda:1"``) or a sequence of them;
  `parse_devices` checks it when the executor is built, so a GPU that is not
  there fails at once, not in round 1.
- Worker ``i`` (its position in the pool, kept by a replacement worker) runs
  every client it takes on ``devices[i % len(devices)]`` (`device_for`), so
  process workers are pinned to GPUs round-robin and several thread workers
  share one GPU. Without ``devices`` a client runs where the simulation puts
  it (``Simulation(device=...)``).
- A worker computing on a GPU does so on a CUDA stream of its own
  (`WorkerDevice`): in-process workers sharing a GPU overlap their kernels
  instead of queueing on the default stream, and each client's work is
  synchronised before its result leaves the worker.
- The first CUDA device used switches this process to deterministic kernels
  (`enable_cuda_determinism`), in process workers as well, before they touch
  CUDA: what makes GPU runs bitwise repeatable.

Which worker ran a client never changes its numbers: its result is a function
of the payload and its context only, on any device of one kind (a GPU model
and software stack). Across GPU models, or between CPU and GPU, results
differ in the last bits; see docs/gpu.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl.sim._jobs import ClientJob, JobOutcome, error_info

__all__ = [
    "CUBLAS_WORKSPACE",
    "DeviceSpec",
    "WorkerDevice",
    "check_simulation_device",
    "device_for",
    "enable_cuda_determinism",
    "is_cuda",
    "parse_devices",
]

#: What an executor's ``devices`` accepts.
DeviceSpec = str | Sequence[str] | None

#: The cuBLAS workspace setting deterministic mode asks for; torch reads it
#: once per process, when it first sets up cuBLAS, hence set before that.
CUBLAS_WORKSPACE = ":4096:8"

_EXPECTED = "'cpu', 'cuda' (every visible GPU) or 'cuda:N'"


def is_cuda(device: str | None) -> bool:
    """Whether ``device`` names a CUDA device."""
    return device is not None and (device == "cuda" or device.startswith("cuda:"))


def _visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _label(name: str, value: object) -> str:
    """How a message names the value: ``devices='cuda:3'``, or just the value
    where the caller names the setting itself (the command line)."""
    return f"{name}={value!r}" if name else repr(value)


def _subject(name: str, value: object, item: str) -> str:
    """The entry a message is about, within its value where that is a list."""
    label = _label(name, value)
    return label if value == item else f"{label}: {item!r}"


def _no_gpu(name: str, value: object) -> ConfigurationError:
    build = "; this torch is a CPU-only build" if torch.version.cuda is None else ""
    return ConfigurationError(
        f"{_label(name, value)} asks for a CUDA device, but no CUDA device is visible "
        f"(torch.cuda.is_available() is False{build}); use 'cpu', or run where "
        "a GPU is visible"
    )


def _one(name: str, value: object, item: str, count: int) -> list[str]:
    """One entry of a device list, checked; 'cuda' expands to every GPU."""
    if item == "cpu":
        return ["cpu"]
    if not is_cuda(item):
        raise ConfigurationError(
            f"{_subject(name, value, item)} is not a device blazefl places workers "
            f"on; expected {_EXPECTED}"
        )
    index = item.removeprefix("cuda:") if item != "cuda" else ""
    if item != "cuda" and (not index.isdigit() or (len(index) > 1 and index[0] == "0")):
        raise ConfigurationError(
            f"{_subject(name, value, item)} is not a CUDA device; expected 'cuda' "
            "or 'cuda:N' with N a device index"
        )
    if count == 0:
        raise _no_gpu(name, value)
    if item == "cuda":
        return [f"cuda:{i}" for i in range(count)]
    if int(index) >= count:
        visible = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise ConfigurationError(
            f"{_subject(name, value, item)} is beyond the {count} visible CUDA "
            f"device{'s' if count > 1 else ''} ({visible})"
        )
    return [item]


def parse_devices(spec: DeviceSpec, *, name: str = "devices") -> tuple[str, ...] | None:
    """The devices an executor places its workers on, in order, or None.

    :raises ConfigurationError: for an empty list, a device that is not
        'cpu' or CUDA, a CUDA device where none is visible, or an index
        beyond the visible ones.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        items = [part.strip() for part in spec.split(",")]
    elif isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
        items = [s.strip() for s in spec]
    else:
        raise ConfigurationError(
            f"{name or 'the value'} must be a device name or a list of them "
            f"({_EXPECTED}), got {spec!r}"
        )
    if not items or any(not item for item in items):
        raise ConfigurationError(
            f"{_label(name, spec)} names no device (or an empty one); expected "
            f"{_EXPECTED}, or a comma-separated list of them"
        )
    count = _visible_gpus() if any(is_cuda(i) for i in items) else 0
    return tuple(d for item in items for d in _one(name, spec, item, count))


def check_simulation_device(device: object) -> str:
    """``Simulation(device=...)``: CUDA forms are checked against the GPUs
    visible here ('cuda' spreads clients over them by id); other names pass
    as torch device names, as before."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not device:
        raise ConfigurationError(f"device must be a torch device name, got {device!r}")
    if is_cuda(device):
        _one("device", device, device, _visible_gpus())
    return device


def device_for(devices: tuple[str, ...] | None, position: int) -> str | None:
    """Worker ``position``'s device: round-robin over ``devices``."""
    if devices is None:
        return None
    return devices[position % len(devices)]


_determinism_lock = threading.Lock()


def enable_cuda_determinism() -> None:
    """Switch this process to deterministic CUDA kernels, once (idempotent).

    Sets ``CUBLAS_WORKSPACE_CONFIG`` (unless already set), then
    ``torch.use_deterministic_algorithms(True)`` (keeping ``warn_only`` if
    the caller already chose it), ``cudnn.deterministic = True`` and
    ``cudnn.benchmark = False``. torch's flags are per process and stay on:
    other simulations of this process may be computing on the GPU. Process
    workers started afterwards copy them (`_job_body.torch_settings`).
    """
    with _determinism_lock:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        if not torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


class WorkerDevice:
    """One worker's device and, on a GPU, the worker's own CUDA stream.

    ``device`` None: each client runs on its job's device (the simulation's
    choice). A stream is made per device, on first use, by the thread that
    computes on it; a worker that replaces a stuck one gets a new
    `WorkerDevice`, hence never a stream the stuck one may still be using.
    """

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self._streams: dict[str, Any] = {}

    def place(self, job: ClientJob) -> ClientJob:
        """``job`` as this worker runs it: on the worker's device, if it has one."""
        if self.device is None or job.device == self.device:
            return job
        return replace(job, device=self.device)

    @contextmanager
    def computing(self, device: str) -> Iterator[None]:
        """Run the body on ``device``, on this worker's stream for it.

        The stream first waits for the device's default stream; on exit it is
        synchronised, so every kernel the body queued has finished (and any
        asynchronous CUDA error is raised here) before a result leaves the
        worker.
        """
        if not is_cuda(device):
            yield
            return
        enable_cuda_determinism()
        stream = self._streams.get(device)
        if stream is None:
            stream = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
            self._streams[device] = stream
        # Work queued on the device's default stream before now (a payload
        # the handler computed on this GPU) comes first.
        stream.wait_stream(torch.cuda.default_stream(device))
        with torch.cuda.device(device), torch.cuda.stream(stream):
            yield
        stream.synchronize()

    def run(
        self, job: ClientJob, execute: Callable[[ClientJob], JobOutcome], worker: str
    ) -> JobOutcome:
        """``execute(job)`` placed on this worker's device: a client failure,
        even one CUDA reports only at the synchronisation, is an outcome."""
        job = self.place(job)
        outcome: JobOutcome | None = None
        try:
            with self.computing(job.device):
                outcome = execute(job)
        except Exception as exc:
            failure = error_info(exc)
            if outcome is None:
                return JobOutcome(job.slot, job.cid, worker, 0.0, error=failure)
            outcome.result, outcome.state, outcome.error = None, None, failure
        return outcome
