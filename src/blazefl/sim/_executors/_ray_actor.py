"""The Ray actor: one long-lived client worker on a cluster node.

It is our process worker on a cluster: it gets the run's work once when it is
created (again only in a round in which the work's version changed), keeps
``ctx.cache`` for the whole run, fetches each round's payload once (and lends
its clients a `PayloadCopy` of it), and runs
each client through the job body every out-of-process worker shares
(`_job_body`). `RayExecutor` (in `_ray`) drives a pool of them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from blazefl._exceptions import MissingDependencyError
from blazefl.sim._devices import WorkerDevice
from blazefl.sim._executors._job_body import prepare_worker, run_job
from blazefl.sim._jobs import ClientJob, JobOutcome, JobWork
from blazefl.sim._payload import PayloadCopy

__all__ = ["RayWorker", "import_ray"]


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("RayExecutor", extra="ray", package="ray") from exc
    if not hasattr(ray, "remote"):  # a stray directory named ray/ on sys.path
        raise MissingDependencyError("RayExecutor", extra="ray", package="ray")
    return ray


class RayWorker:
    """One long-lived worker on a cluster node; becomes a Ray actor.

    It runs with ``max_concurrency=2``: one client at a time on one thread,
    while `stop` can land on the other.
    """

    def __init__(
        self,
        index: int,
        work: JobWork,
        work_key: str,
        torch_threads: int,
        settings: dict[str, Any],
    ) -> None:
        ray = import_ray()
        prepare_worker(torch_threads, settings)
        self._work = work
        self._work_key = work_key
        self._node = str(ray.get_runtime_context().get_node_id())
        self._label = f"ray-{index}@{self._node[:8]}"
        self._cache: dict[str, Any] = {}
        # Ray makes the actor's GPUs (gpus_per_client) the visible ones; a
        # client on one of them runs on this actor's own stream.
        self._place = WorkerDevice()
        self._payload = PayloadCopy(None)
        self._payload_key: str | None = None
        self._lock = threading.Lock()
        self._flags: dict[tuple[int, int], threading.Event] = {}
        self._early_stops: set[tuple[int, int]] = set()

    def ready(self) -> tuple[int, str]:
        """This actor's process id and node id, once it is constructed."""
        return os.getpid(), self._node

    def run(self, job: ClientJob, payload_box: list[Any]) -> JobOutcome:
        """Run one client. The payload and work references come boxed so that
        Ray does not resolve them per call: the payload is fetched once per
        round and actor, the work only in a round in which it changed."""
        ref, work_ref = payload_box
        if work_ref.hex() != self._work_key:
            self._work = import_ray().get(work_ref)
            self._work_key = work_ref.hex()
        if ref.hex() != self._payload_key:
            # Drop the old round's payload first; keep its copy's memory.
            self._payload = self._payload.renew(None)
            self._payload = self._payload.renew(import_ray().get(ref))
            self._payload_key = ref.hex()
        key = (job.round, job.slot)
        flag = threading.Event()
        with self._lock:
            if key in self._early_stops:
                self._early_stops.discard(key)
                flag.set()
            self._flags[key] = flag

        def execute(placed: ClientJob) -> JobOutcome:
            return run_job(
                self._work,
                placed,
                self._payload,
                stop_event=flag,
                cache=self._cache,
                worker=self._label,
            )

        try:
            return self._place.run(job, execute, self._label)
        finally:
            with self._lock:
                self._flags.pop(key, None)

    def stop(self, round_index: int, slot: int) -> None:
        """Ask the client of (round, slot) to stop, even if it has not started."""
        key = (round_index, slot)
        with self._lock:
            flag = self._flags.get(key)
            if flag is None:
                self._early_stops.add(key)
            else:
                flag.set()
