"""`ProcessPoolClientTrainer`: BlazeFL's process-parallel trainer, on our engine."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Generic, TypeVar

import anyio

from blazefl.sim._sync import PoolTrainer, run_local_process

__all__ = ["ProcessPoolClientTrainer"]

UplinkPackage = TypeVar("UplinkPackage")
DownlinkPackage = TypeVar("DownlinkPackage")
ClientConfig = TypeVar("ClientConfig")
BufferPackage = TypeVar("BufferPackage")


class ProcessPoolClientTrainer(
    PoolTrainer[UplinkPackage],
    Generic[UplinkPackage, DownlinkPackage, ClientConfig, BufferPackage],
):
    """A client trainer whose static `worker` runs clients in worker processes.

    The BlazeFL 3.0 shared-memory protocol is kept: `prepare_uplink_package_buffer`
    returns a result skeleton whose tensors are pre-allocated (blazefl moves
    them to shared memory); the worker copies its result tensors into
    ``shm_buffer`` and returns a light copy whose tensors are `SHMHandle`
    placeholders (``process_tensors_in_object(package, "replace")``); the
    parent rebuilds the package and passes it to `convert_buffer_to_uplink`.

    Unlike BlazeFL 3.0, which starts a new process pool in every
    ``local_process`` call, the worker processes start on the first call and
    live until `shutdown` (the workers keep what they cache; the payload is
    shared once per round). One uplink buffer is prepared per slot and reused.
    """

    num_parallels: int
    device: str
    device_count: int
    cache: list[UplinkPackage]
    stop_event: Any

    @abstractmethod
    def get_client_config(self, cid: int) -> ClientConfig:
        """A picklable description of client ``cid``'s work (paths, seeds, sizes)."""

    @staticmethod
    @abstractmethod
    def worker(
        config: ClientConfig,
        payload: DownlinkPackage,
        device: str,
        stop_event: Any,
        *,
        shm_buffer: BufferPackage | None = None,
    ) -> BufferPackage:
        """Run one client in a worker process (see the class docstring)."""

    @abstractmethod
    def prepare_uplink_package_buffer(self) -> BufferPackage:
        """A result skeleton with pre-allocated tensors, one per slot."""

    @abstractmethod
    def convert_buffer_to_uplink(self, buffer: BufferPackage) -> UplinkPackage:
        """Turn a rebuilt result buffer into the package the server loads."""

    def local_process(self, payload: DownlinkPackage, cid_list: list[int]) -> None:
        """Run ``cid_list`` on the worker processes; results to ``cache`` in order."""
        from blazefl.sim import ProcessExecutor

        results = run_local_process(
            self,
            lambda: ProcessExecutor(self.num_parallels),
            payload,
            cid_list,
            keep_executor=True,
        )
        self.cache = list(results)

    def shutdown(self) -> None:
        """Stop the worker processes (and a ``manager`` the subclass kept)."""
        runner = getattr(self, "_blazefl_runner", None)
        if runner is not None and runner.executor.running:
            anyio.run(runner.executor.aclose)
        manager = getattr(self, "manager", None)
        if manager is not None and callable(getattr(manager, "shutdown", None)):
            manager.shutdown()
