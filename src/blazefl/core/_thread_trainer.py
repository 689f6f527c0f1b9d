"""`ThreadPoolClientTrainer`: BlazeFL's thread-parallel trainer, on our engine."""

from __future__ import annotations

import threading
from abc import abstractmethod
from typing import Generic, TypeVar

from blazefl.sim._sync import PoolTrainer, run_local_process

__all__ = ["ThreadPoolClientTrainer"]

UplinkPackage = TypeVar("UplinkPackage")
DownlinkPackage = TypeVar("DownlinkPackage")


class ThreadPoolClientTrainer(
    PoolTrainer[UplinkPackage], Generic[UplinkPackage, DownlinkPackage]
):
    """A client trainer whose user writes one client's work; clients run on threads.

    Subclass it, set the attributes below in ``__init__`` and implement
    `worker`. ``local_process`` runs the sampled clients on ``num_parallels``
    worker threads through the blazefl engine and stores their packages in
    ``cache`` in ``cid_list`` order, whatever order they finish in. On a
    free-threaded Python build the threads run Python code in parallel.

    Attributes the subclass sets: ``num_parallels``, ``device`` (``"cpu"``,
    ``"cuda"``, ``"cuda:1"``...), ``device_count`` (GPUs to spread clients
    over when ``device == "cuda"``), ``cache`` (a list) and ``stop_event`` (a
    `threading.Event`; set it to ask running clients to stop early).

    Unlike BlazeFL 3.0, a client that raises does not lose the others' results
    silently: ``local_process`` raises `blazefl.RoundFailedError` naming every
    failed client with its traceback.
    """

    num_parallels: int
    device: str
    device_count: int
    cache: list[UplinkPackage]
    stop_event: threading.Event

    @abstractmethod
    def worker(
        self,
        cid: int,
        device: str,
        payload: DownlinkPackage,
        stop_event: threading.Event,
    ) -> UplinkPackage:
        """Train client ``cid`` on ``device`` from ``payload``; return its upload."""

    def local_process(self, payload: DownlinkPackage, cid_list: list[int]) -> None:
        """Run ``cid_list`` on the thread pool; results go to ``cache`` in order."""
        from blazefl.sim import ThreadExecutor

        results = run_local_process(
            self,
            lambda: ThreadExecutor(self.num_parallels),
            payload,
            cid_list,
            keep_executor=False,
        )
        self.cache = list(results)
