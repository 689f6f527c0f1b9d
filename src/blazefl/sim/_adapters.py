"""What the user's client code is, and where it may run.

`adapt` turns what the user handed us into work the executors can run. Five
shapes of client code are accepted, recognised by what they provide:

1. native client work: a callable ``work(ctx, payload) -> uplink``;
2. a trainer with ``as_client_work()`` (blazefl's own contrib trainers): its
   native work, so it gets the coordinator's per-client RNG suites;
3. a BlazeFL ``ProcessPoolClientTrainer``: its static ``worker`` runs on the
   workers with the client's config and a pre-allocated shared uplink buffer;
4. a BlazeFL ``ThreadPoolClientTrainer``: its ``worker(cid, device, payload,
   stop_event)`` runs on the workers;
5. any other ``BaseClientTrainer``: ``local_process(payload, [cid])`` one
   client at a time (it was not written to be called concurrently).

Each shape says how far from this process it can run (a `Placement`) and
whether its clients may run concurrently; each executor says where its workers
run. `check_executor` compares the two when a `Simulation` or a BlazeFL
trainer's engine is built, so a mismatch fails at construction, with a message
naming the client code, the executor and what to use instead; nothing else
asks which executor it has. `default_executor` is what a trainer asks for when
the user names no executor.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl._shared_tensors import rebuild_from_handles, share_tensors
from blazefl._tree import map_leaves
from blazefl._versions import STATIC, version_of
from blazefl.sim._context import ClientContext, ClientWork
from blazefl.sim._executors._base import Executor, Placement
from blazefl.sim._executors._inline import InlineExecutor
from blazefl.sim._executors._processes import ProcessExecutor
from blazefl.sim._executors._threads import ThreadExecutor
from blazefl.sim._jobs import JobWork

__all__ = [
    "Adapter",
    "Shape",
    "adapt",
    "check_executor",
    "default_executor",
    "metrics_of",
    "refusal",
]


@dataclass(frozen=True, slots=True)
class Shape:
    """One kind of client code and what it needs from an executor."""

    #: what the user wrote, for messages ("a ThreadPoolClientTrainer")
    name: str
    #: the farthest placement its work can run at
    reach: Placement
    #: whether several of its clients may run at the same time
    concurrent: bool = True
    #: why it cannot run farther than ``reach`` (for the refusal)
    bound: str = ""
    #: the executor(s) to use instead (for the refusal)
    instead: str = ""


NATIVE = Shape("client work", Placement.CLUSTER)
NATIVE_TRAINER = Shape("a trainer with as_client_work()", Placement.CLUSTER)
PROCESS_TRAINER = Shape(
    "a BlazeFL ProcessPoolClientTrainer",
    Placement.ON_HOST,
    bound="its uplinks come back through this machine's shared memory",
    instead="ProcessExecutor or ThreadExecutor",
)
THREAD_TRAINER = Shape(
    "a BlazeFL ThreadPoolClientTrainer",
    Placement.IN_PROCESS,
    bound="its worker() runs on the trainer object, which stays in this process",
    instead="ThreadExecutor",
)
SERIAL_TRAINER = Shape(
    "a BlazeFL BaseClientTrainer",
    Placement.IN_PROCESS,
    concurrent=False,
    bound="its local_process() runs on the trainer object, in this process",
    instead="InlineExecutor",
)

# Where each placement puts the clients, for the refusal.
_WHERE = {
    Placement.IN_PROCESS: "in this process",
    Placement.ON_HOST: "in worker processes",
    Placement.CLUSTER: "on Ray actors, possibly on other machines",
}


@dataclass(frozen=True, slots=True)
class NativeWork:
    """The user's ``work(ctx, payload)``, in the executors' three-argument form."""

    work: ClientWork[Any, Any]

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        return self.work(ctx, payload)

    def __blazefl_version__(self) -> Hashable:
        return version_of(self.work)


@dataclass(frozen=True, slots=True)
class ThreadTrainerWork:
    """A BlazeFL ``ThreadPoolClientTrainer``'s ``worker``."""

    trainer: Any

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        return self.trainer.worker(ctx.cid, ctx.device, payload, ctx.stop_event)


@dataclass(frozen=True, slots=True)
class ProcessTrainerWork:
    """A BlazeFL ``ProcessPoolClientTrainer``'s static ``worker``.

    Only the function travels to the workers (by reference), never the trainer;
    per-round state reaches them in each job's client config.
    """

    worker: Callable[..., Any]

    def __blazefl_version__(self) -> Hashable:
        return STATIC

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        config, shm_buffer = arg
        return self.worker(
            config, payload, ctx.device, ctx.stop_event, shm_buffer=shm_buffer
        )


@dataclass(frozen=True, slots=True)
class SerialTrainerWork:
    """Any ``BaseClientTrainer``: one ``local_process`` call per client."""

    trainer: Any

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        self.trainer.local_process(payload, [ctx.cid])
        packages = self.trainer.uplink_package()
        if len(packages) != 1:
            raise ValueError(
                f"uplink_package() returned {len(packages)} packages after "
                f"local_process(payload, [{ctx.cid}]); expected exactly 1"
            )
        return packages[0]


class _ProcessTrainerSlots:
    """The BlazeFL uplink buffers: one per slot, prepared once, reused."""

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer
        self._buffers: dict[int, Any] = {}

    def job_arg(self, cid: int, slot: int) -> Any:
        buffer = self._buffers.get(slot)
        if buffer is None:
            buffer = share_tensors(self._trainer.prepare_uplink_package_buffer())
            self._buffers[slot] = buffer
        return self._trainer.get_client_config(cid), buffer

    def finish(self, slot: int, light: Any) -> Any:
        full = rebuild_from_handles(light, self._buffers[slot])
        # The slot's buffer is reused next round: hand the trainer private copies.
        return self._trainer.convert_buffer_to_uplink(map_leaves(full, torch.clone))


@dataclass(frozen=True, slots=True)
class Adapter:
    """The executor-facing work plus the parent-side hooks around each job.

    ``shape`` is what kind of client code it came from; ``client`` names the
    user's object in messages.
    """

    work: JobWork
    device_of: Callable[[int], str]
    shape: Shape
    client: str
    job_arg: Callable[[int, int], Any] | None = None
    finish: Callable[[int, Any], Any] | None = None


def default_device_of(device: str) -> Callable[[int], str]:
    """``"cuda"`` spreads clients over the visible GPUs by id; else as given."""

    def device_of(cid: int) -> str:
        if device == "cuda":
            return f"cuda:{cid % max(torch.cuda.device_count(), 1)}"
        return device

    return device_of


def adapt(trainer: Any, device: str) -> Adapter:
    """Recognise the user's client code (see the module docstring)."""
    trainer_device = getattr(trainer, "get_client_device", None)
    device_of = (
        trainer_device if callable(trainer_device) else default_device_of(device)
    )
    client = _name_of(trainer)
    native = getattr(trainer, "as_client_work", None)
    if callable(native):
        return Adapter(NativeWork(native()), device_of, NATIVE_TRAINER, client)
    if all(
        callable(getattr(trainer, name, None))
        for name in (
            "get_client_config",
            "prepare_uplink_package_buffer",
            "convert_buffer_to_uplink",
            "worker",
        )
    ):
        slots = _ProcessTrainerSlots(trainer)
        return Adapter(
            ProcessTrainerWork(type(trainer).worker),
            device_of,
            PROCESS_TRAINER,
            client,
            job_arg=slots.job_arg,
            finish=slots.finish,
        )
    if callable(getattr(trainer, "worker", None)) and hasattr(trainer, "num_parallels"):
        return Adapter(ThreadTrainerWork(trainer), device_of, THREAD_TRAINER, client)
    if callable(getattr(trainer, "local_process", None)) and callable(
        getattr(trainer, "uplink_package", None)
    ):
        return Adapter(SerialTrainerWork(trainer), device_of, SERIAL_TRAINER, client)
    if callable(trainer):
        return Adapter(NativeWork(trainer), device_of, NATIVE, client)
    raise ConfigurationError(
        f"cannot run {trainer!r} as client work: expected a callable "
        "work(ctx, payload), a ThreadPoolClientTrainer, a ProcessPoolClientTrainer "
        "or a BaseClientTrainer"
    )


def _name_of(trainer: Any) -> str:
    """How messages name the user's client code: a function by its name, an
    object by its class."""
    if callable(trainer) and hasattr(trainer, "__qualname__"):
        return str(trainer.__qualname__)
    return type(trainer).__qualname__


def refusal(adapter: Adapter, executor: Executor) -> str | None:
    """Why ``executor`` cannot run ``adapter``'s client code, or None if it can.

    Picklability is not judged here: only pickling the work tells, which the
    process and Ray executors do when they start.
    """
    shape = adapter.shape
    name = type(executor).__name__
    if executor.placement > shape.reach:
        return (
            f"{adapter.client} cannot run on {name}, which runs clients "
            f"{_WHERE[executor.placement]}: {adapter.client} is {shape.name}, and "
            f"{shape.bound}. Write the client as native work(ctx, payload), or "
            f"use {shape.instead}"
        )
    if not shape.concurrent and executor.max_workers != 1:
        return (
            f"{adapter.client} only provides local_process/uplink_package, which "
            f"cannot run clients concurrently; use one worker, not "
            f"{executor.max_workers} ({name}(max_workers={executor.max_workers})):"
            " InlineExecutor() or ThreadExecutor(1)"
        )
    return executor.refuse_work(adapter.work)


def check_executor(adapter: Adapter, executor: Any) -> None:
    """Refuse an executor that is none, or cannot run this client code."""
    if not isinstance(executor, Executor):
        raise ConfigurationError(
            "executor must be a blazefl.sim executor (InlineExecutor, "
            f"ThreadExecutor, ProcessExecutor, RayExecutor), got {executor!r}"
        )
    reason = refusal(adapter, executor)
    if reason is not None:
        raise ConfigurationError(reason)


def default_executor(trainer: Any) -> Executor:
    """The executor a trainer asks for: its ``num_parallels`` processes (a
    trainer with shared uplink buffers) or threads (one with a ``worker``),
    else `InlineExecutor`."""
    parallels = getattr(trainer, "num_parallels", None)
    if isinstance(parallels, int) and parallels >= 1:
        if callable(getattr(trainer, "prepare_uplink_package_buffer", None)):
            return ProcessExecutor(parallels)
        if callable(getattr(trainer, "worker", None)):
            return ThreadExecutor(parallels)
    return InlineExecutor()


def metrics_of(result: Any) -> dict[str, float]:
    """Numbers a BlazeFL uplink package reports in its ``metadata`` dict."""
    metadata = getattr(result, "metadata", None)
    if not isinstance(metadata, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in metadata.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
