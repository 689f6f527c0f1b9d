"""Turning what the user handed us into work the executors can run.

Four shapes of client code are accepted, recognised by what they provide:

1. native client work: a callable ``work(ctx, payload) -> uplink``;
2. a trainer with ``as_client_work()`` (blazefl's own contrib trainers): its
   native work, so it gets the coordinator's per-client RNG suites;
3. a BlazeFL ``ProcessPoolClientTrainer``: its static ``worker`` runs on the
   workers with the client's config and a pre-allocated shared uplink buffer;
4. a BlazeFL ``ThreadPoolClientTrainer``: its ``worker(cid, device, payload,
   stop_event)`` runs on the workers;
5. any other ``BaseClientTrainer``: ``local_process(payload, [cid])`` one
   client at a time (it was not written to be called concurrently).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl._tree import map_leaves, rebuild_from_handles, share_tensors
from blazefl.sim._context import ClientContext, ClientWork
from blazefl.sim._jobs import JobWork

__all__ = ["Adapter", "adapt", "metrics_of"]


@dataclass(frozen=True, slots=True)
class NativeWork:
    """The user's ``work(ctx, payload)``, in the executors' three-argument form."""

    work: ClientWork[Any, Any]

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        return self.work(ctx, payload)


@dataclass(frozen=True, slots=True)
class ThreadTrainerWork:
    """A BlazeFL ``ThreadPoolClientTrainer``'s ``worker``."""

    trainer: Any

    def __call__(self, ctx: ClientContext, payload: Any, arg: Any) -> Any:
        return self.trainer.worker(ctx.cid, ctx.device, payload, ctx.stop_event)


@dataclass(frozen=True, slots=True)
class ProcessTrainerWork:
    """A BlazeFL ``ProcessPoolClientTrainer``'s static ``worker``.

    Only the function travels to the workers (by reference), never the trainer.
    """

    worker: Callable[..., Any]

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
    """The executor-facing work plus the parent-side hooks around each job."""

    work: JobWork
    device_of: Callable[[int], str]
    job_arg: Callable[[int, int], Any] | None = None
    finish: Callable[[int, Any], Any] | None = None
    serial: bool = False
    picklable: bool = True


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
    native = getattr(trainer, "as_client_work", None)
    if callable(native):
        return Adapter(NativeWork(native()), device_of)
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
            job_arg=slots.job_arg,
            finish=slots.finish,
        )
    if callable(getattr(trainer, "worker", None)) and hasattr(trainer, "num_parallels"):
        return Adapter(ThreadTrainerWork(trainer), device_of, picklable=False)
    if callable(getattr(trainer, "local_process", None)) and callable(
        getattr(trainer, "uplink_package", None)
    ):
        return Adapter(
            SerialTrainerWork(trainer), device_of, serial=True, picklable=False
        )
    if callable(trainer):
        return Adapter(NativeWork(trainer), device_of)
    raise ConfigurationError(
        f"cannot run {trainer!r} as client work: expected a callable "
        "work(ctx, payload), a ThreadPoolClientTrainer, a ProcessPoolClientTrainer "
        "or a BaseClientTrainer"
    )


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
