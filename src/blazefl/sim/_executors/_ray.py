"""The Ray executor: client work on long-lived actors of a Ray cluster.

Why actors, not tasks: a Ray task starts from nothing each time, so every
client would rebuild its model and re-read the run's work (data set included)
from the object store. An actor is our process worker on a cluster node: it
gets the work once when it is created, keeps ``ctx.cache`` (models, optimizer
buffers) for the whole run, and takes each round's payload once. Per client
only the small `ClientJob` (client id, slot, RNG and algorithm state) goes out
and the `JobOutcome` comes back, through the same `execute_job` every executor
uses, so the result is bitwise what a thread would compute.

Per round the coordinator puts the payload into the object store once
(``ray.put``); each actor resolves that one reference the first time it runs a
client of the round. Every wait happens in a worker thread (``ray.wait`` in
short hops), so the event loop never blocks, under asyncio and trio alike.

An actor whose process or node dies becomes a failed slot of kind
``"worker_died"`` (optionally retried on its replacement); a cancelled client
gets ``stop_grace`` seconds to honour its stop flag, then its actor is killed
and replaced.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int, check_number
from blazefl._versions import version_of
from blazefl.sim._executors._base import Executor, Placement, RoundSession
from blazefl.sim._executors._job_body import torch_settings
from blazefl.sim._executors._lifetime import on_lifetime_thread
from blazefl.sim._executors._pool import WorkerPool, died
from blazefl.sim._executors._ray_actor import RayWorker, import_ray
from blazefl.sim._jobs import ClientFailure, ClientJob, JobOutcome, JobWork

__all__ = ["RayExecutor"]

# A wait is a chain of ``ray.wait`` calls of at most this long, each in a
# worker thread: a cancelled wait leaves a thread behind for no longer than this.
_POLL_SECONDS = 0.25


# -- the executor (runs in the coordinator) ------------------------------------


@dataclass(eq=False)
class _Actor:
    index: int
    handle: Any


class RayExecutor(Executor):
    """Runs clients on long-lived Ray actors: one machine or a whole cluster.

    Without ``address`` it joins the Ray instance this process is already
    connected to, or else starts a private local one (loopback only, no
    dashboard) and shuts it down on close. With ``address`` (``"host:port"``
    of a head node, or ``"auto"``) it connects to that cluster and disconnects
    on close. The work must be native ``work(ctx, payload)`` (a BlazeFL pool
    trainer without ``as_client_work`` keeps its clients on this machine and
    is refused when the simulation is built), picklable (Ray uses
    cloudpickle), and blazefl must be installed on every node.

    :param max_workers: how many actors, i.e. clients at once. ``None`` takes
        as many as the cluster's resources fit (e.g. 8 CPUs at
        ``cpus_per_client=2`` make 4). A number the cluster cannot fit fails
        at start.
    :param address: the cluster to connect to; see above.
    :param cpus_per_client: CPUs each actor reserves. Keep ``torch_threads``
        at most this.
    :param gpus_per_client: GPUs each actor reserves (fractions share a GPU);
        Ray then makes only those visible to the actor, so use
        ``device="cuda"`` in the simulation.
    :param resources_per_client: custom Ray resources each actor reserves
        (e.g. ``{"big_memory": 1}`` to pin clients to labelled nodes).
    :param stop_grace: seconds a cancelled client gets to honour its stop flag
        before its actor is killed and replaced.
    :param max_retries: how often a client whose actor died is run again on
        the replacement actor before its slot counts as failed. A retried
        client computes exactly what it would have: its state travels with
        the job.
    :param start_timeout: seconds to wait for the actors to come up.
    :param init_kwargs: extra arguments for ``ray.init`` (``runtime_env``,
        ``namespace``, ``num_cpus`` of a local instance, ...).
    :param actor_options: extra Ray actor options (``scheduling_strategy``,
        ``runtime_env``, ...).
    """

    kind = "ray"
    placement = Placement.CLUSTER

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        address: str | None = None,
        cpus_per_client: float = 1.0,
        gpus_per_client: float = 0.0,
        resources_per_client: Mapping[str, float] | None = None,
        torch_threads: int = 1,
        stop_grace: float = 5.0,
        max_retries: int = 0,
        start_timeout: float = 120.0,
        init_kwargs: Mapping[str, Any] | None = None,
        actor_options: Mapping[str, Any] | None = None,
    ) -> None:
        if address is None and "ray" not in sys.modules:
            # Ray 2.x swaps 127.0.0.1 for the machine's routable address
            # unless multi-node support is off; a private one-machine
            # instance has no reason to listen beyond loopback.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        self._ray = import_ray()
        requested = (
            None if max_workers is None else check_int("max_workers", max_workers)
        )
        super().__init__(requested or 1, torch_threads=torch_threads)
        self._requested = requested
        self._address = address
        demand = {
            "CPU": check_number("cpus_per_client", cpus_per_client, allow_zero=True),
            "GPU": check_number("gpus_per_client", gpus_per_client, allow_zero=True),
        }
        for name, amount in (resources_per_client or {}).items():
            if name in ("CPU", "GPU"):
                raise ConfigurationError(
                    f"resources_per_client may not name {name!r}; use "
                    f"{name.lower()}s_per_client"
                )
            demand[str(name)] = check_number(
                f"resources_per_client[{name!r}]", amount, allow_zero=True
            )
        self._demand = {k: v for k, v in demand.items() if v > 0}
        if requested is None and not self._demand:
            raise ConfigurationError(
                "max_workers=None sizes the actors by the resources each client "
                "reserves, but every per-client resource is 0; set max_workers"
            )
        self._stop_grace = check_number(
            "stop_grace", stop_grace, allow_zero=True, unit="seconds"
        )
        self._max_retries = check_int("max_retries", max_retries, minimum=0)
        self._start_timeout = check_number(
            "start_timeout", start_timeout, unit="seconds"
        )
        self._init_kwargs = dict(init_kwargs or {})
        self._actor_options = dict(actor_options or {})
        self._actors = WorkerPool(self._spawn, self._kill)
        self._actor_class: Any = None
        self._work_ref: Any = None
        self._work_version: Any = None
        self._owns_ray = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "address": self._address or "local"}

    # -- lifecycle ---------------------------------------------------------

    async def _start(self, work: JobWork) -> None:
        ray = self._ray
        try:
            if not ray.is_initialized():
                # A private Ray's raylet and GCS die with the thread that
                # started them (Ray's parent-death signal), not the process:
                # start them on one that lives as long as this process.
                connect = functools.partial(on_lifetime_thread, self._connect)
                await anyio.to_thread.run_sync(connect)
                self._owns_ray = True
            self._max_workers = self._fit_workers()
            try:
                self._work_version = version_of(work)
                self._work_ref = await anyio.to_thread.run_sync(ray.put, work)
            except Exception as exc:
                raise ConfigurationError(
                    f"the client work {work!r} cannot be serialized for Ray "
                    f"({type(exc).__name__}: {exc}); RayExecutor needs picklable "
                    "work"
                ) from exc
            self._actor_class = ray.remote(RayWorker).options(
                num_cpus=self._demand.get("CPU", 0),
                num_gpus=self._demand.get("GPU", 0),
                resources={
                    k: v for k, v in self._demand.items() if k not in ("CPU", "GPU")
                },
                max_concurrency=2,
                max_restarts=0,
                **self._actor_options,
            )
            self._actors.start(self._max_workers)
            await self._await_ready()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise

    def _connect(self) -> None:
        ray = self._ray
        if self._address is None:
            # A private instance for one machine: nothing listens beyond
            # loopback and no dashboard starts.
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "_node_ip_address": "127.0.0.1",
                **self._init_kwargs,
            }
            ray.init(address="local", **kwargs)
        else:
            ray.init(address=self._address, **self._init_kwargs)

    def _fit_workers(self) -> int:
        """The actor count: as requested, or as many as the cluster fits."""
        total: dict[str, float] = dict(self._ray.cluster_resources())
        fits = min(
            (int(total.get(k, 0.0) / v + 1e-9) for k, v in self._demand.items()),
            default=self._requested or 1,
        )
        wanted = self._requested if self._requested is not None else fits
        if wanted < 1 or fits < wanted:
            have = {k: total.get(k, 0.0) for k in self._demand}
            raise ConfigurationError(
                f"the Ray cluster has {have}, which fits {fits} clients reserving "
                f"{self._demand} each, not max_workers={wanted}; lower max_workers "
                "or the per-client resources, or add nodes"
            )
        return wanted

    def _spawn(self, index: int, position: int) -> _Actor:
        del position  # Ray places actors (and their GPUs: gpus_per_client)
        handle = self._actor_class.remote(
            index,
            self._work_ref,
            self._work_ref.hex(),
            self.torch_threads,
            torch_settings(),
        )
        return _Actor(index, handle)

    async def _await_ready(self) -> None:
        ray = self._ray
        refs = [actor.handle.ready.remote() for actor in self._actors]
        get = functools.partial(ray.get, refs, timeout=self._start_timeout)
        try:
            await anyio.to_thread.run_sync(get)
        except ray.exceptions.GetTimeoutError:
            raise ConfigurationError(
                f"the Ray actors were not up after {self._start_timeout}s; the "
                f"cluster may lack free resources ({self._demand} per client, "
                f"available: {ray.available_resources()})"
            ) from None
        except ray.exceptions.RayError as exc:
            raise ConfigurationError(
                f"a Ray actor could not start: {exc}. Every node must have blazefl "
                "and the modules your work is defined in importable"
            ) from exc

    async def _close(self) -> None:
        ray = self._ray
        with anyio.CancelScope(shield=True):
            for actor in self._actors.take_all():
                self._kill(actor)
            self._work_ref = None
            self._actor_class = None
            if self._owns_ray:
                self._owns_ray = False
                await anyio.to_thread.run_sync(ray.shutdown)

    def _kill(self, actor: _Actor) -> None:
        with suppress(Exception):  # already dead, or the cluster is gone
            self._ray.kill(actor.handle, no_restart=True)

    # -- rounds ------------------------------------------------------------

    @asynccontextmanager
    async def _round(
        self, work: JobWork, index: int, payload: Any
    ) -> AsyncIterator[RoundSession]:
        # Into the object store once; every actor resolves this one reference.
        ref = await anyio.to_thread.run_sync(self._ray.put, payload)
        version = version_of(work)
        if version != self._work_version:  # e.g. a data set with per-round state
            self._work_ref = await anyio.to_thread.run_sync(self._ray.put, work)
            self._work_version = version
        send, receive = anyio.create_memory_object_stream[_Actor](len(self._actors))
        for actor in self._actors:
            send.send_nowait(actor)
        with send, receive:
            yield _RaySession(self, [ref, self._work_ref], send, receive)

    async def _result(self, ref: Any) -> Any:
        """``ray.get(ref)`` without blocking the event loop."""
        ray = self._ray
        wait = functools.partial(ray.wait, [ref], timeout=_POLL_SECONDS)
        while not (await anyio.to_thread.run_sync(wait, abandon_on_cancel=True))[0]:
            pass
        return await anyio.to_thread.run_sync(ray.get, ref)

    async def _stop(self, actor: _Actor, job: ClientJob, ref: Any) -> _Actor:
        """Stop a cancelled client: its flag, a grace period, then a kill."""
        ray = self._ray
        with suppress(Exception):
            actor.handle.stop.remote(job.round, job.slot)
        wait = functools.partial(ray.wait, [ref], timeout=self._stop_grace)
        ready, _ = await anyio.to_thread.run_sync(wait)
        if ready:
            try:
                await anyio.to_thread.run_sync(ray.get, ref)
            except ray.exceptions.RayActorError:
                return self._actors.replace(actor)
            except Exception:
                pass  # an error of the cancelled client itself: moot now
            return actor
        return self._actors.replace(actor)


class _RaySession(RoundSession):
    def __init__(
        self,
        owner: RayExecutor,
        box: list[Any],
        send: MemoryObjectSendStream[_Actor],
        receive: MemoryObjectReceiveStream[_Actor],
    ) -> None:
        self._owner = owner
        self._box = box  # [payload reference, work reference]
        self._send = send
        self._receive = receive

    async def run(self, job: ClientJob) -> JobOutcome:
        owner = self._owner
        errors = owner._ray.exceptions
        lost = (errors.RayActorError, errors.WorkerCrashedError, errors.ObjectLostError)
        actor = await self._receive.receive()
        try:
            for attempt in range(owner._max_retries + 1):
                ref = actor.handle.run.remote(job, self._box)
                try:
                    outcome: JobOutcome = await owner._result(ref)
                except lost as exc:
                    # Its replacement serves the next attempt or client.
                    dead, actor = actor, owner._actors.replace(actor)
                    death = _worker_died(job, dead, attempt, exc)
                    continue
                except errors.RayTaskError as exc:
                    # The actor failed around the client (its result could
                    # not be serialized, the payload could not be fetched).
                    return _failed(job, actor, _task_failure(exc))
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        actor = await owner._stop(actor, job, ref)
                    raise
                return outcome
            return death
        finally:
            self._send.send_nowait(actor)


def _failed(job: ClientJob, actor: _Actor, failure: ClientFailure) -> JobOutcome:
    return JobOutcome(
        slot=job.slot,
        cid=job.cid,
        worker=f"ray-{actor.index}",
        seconds=0.0,
        error=failure,
    )


def _worker_died(
    job: ClientJob, dead: _Actor, attempt: int, exc: BaseException
) -> JobOutcome:
    tries = f" (attempt {attempt + 1})" if attempt else ""
    return died(
        job,
        f"ray-{dead.index}",
        f"Ray actor ray-{dead.index} died while running client {job.cid}{tries}: "
        f"{type(exc).__name__}",
        str(exc),
    )


def _task_failure(exc: BaseException) -> ClientFailure:
    cause = getattr(exc, "cause", None)
    origin = cause if isinstance(cause, BaseException) else exc
    return ClientFailure("error", type(origin).__qualname__, str(origin), str(exc))
