"""The BlazeFL trainers' ``local_process``, as a thin face over the engine.

BlazeFL users call ``trainer.local_process(payload, cid_list)`` from plain
synchronous code. It runs the same `blazefl.sim` engine as `Simulation`: the
round runs in a helper thread with its own event loop (so it also works when
the caller's thread already runs one, as in a notebook), while the calling
thread iterates the trainer's ``progress_fn`` over one `ClientFuture` per
sampled client, as BlazeFL 3.0 does over its pool's futures.

Leaving that iteration by an exception (Ctrl-C's ``KeyboardInterrupt``, the
``SystemExit`` of a SIGTERM handler) cancels the round: the executor sets each
running client's stop flag (a process worker that ignores it is killed after
its grace period), the executor is closed, and only then is the exception
re-raised. Threads cannot be killed: a thread client that never checks its
stop flag is given up on after the thread executor's grace (5 s) and runs on
until it returns; the interpreter waits for it at exit.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import wait as wait_futures
from contextlib import suppress
from typing import Any, Generic, TypeVar

import anyio

from blazefl._exceptions import RoundFailedError

__all__ = ["ClientFuture", "PoolTrainer", "run_local_process"]

UplinkPackage = TypeVar("UplinkPackage")

# How often the round's event loop looks at the caller's stop request; a
# threading.Event cannot be awaited, and polling needs no cross-thread call
# into a loop that may be finishing.
_POLL_SECONDS = 0.05
# How long an interrupted caller waits for the round to wind down (stop
# grace, then killing workers) before re-raising anyway.
_WIND_DOWN_SECONDS = 60.0


class PoolTrainer(Generic[UplinkPackage]):
    """What BlazeFL's thread- and process-pool trainers provide alike."""

    device: str
    device_count: int
    cache: list[UplinkPackage]

    def get_client_device(self, cid: int) -> str:
        """The device for ``cid``: GPUs round-robin by id when ``device == "cuda"``."""
        if self.device == "cuda":
            return f"cuda:{cid % self.device_count}"
        return self.device

    def progress_fn(self, it: list[ClientFuture]) -> Iterable[Any]:
        """Wrap the clients' futures (e.g. ``tqdm(as_completed(it))``); identity
        by default. Results land in ``cid_list`` order whatever this yields."""
        return it

    def uplink_package(self) -> list[UplinkPackage]:
        """The last round's packages in ``cid_list`` order; clears the cache."""
        packages, self.cache = list(self.cache), []
        return packages


class ClientFuture(Future[Any]):
    """One sampled client's result, as BlazeFL 3.0's ``progress_fn`` sees it.

    A real `concurrent.futures.Future` (so ``as_completed(it)`` works, as with
    the 3.0 thread pool) that also answers `multiprocessing.pool.AsyncResult`'s
    ``get`` / ``ready`` / ``wait`` / ``successful`` (as with the 3.0 process
    pool). A failed client's future raises its `blazefl.ClientError`.
    """

    def __init__(self, cid: int) -> None:
        super().__init__()
        self.cid = cid

    def get(self, timeout: float | None = None) -> Any:
        try:
            return self.result(timeout)
        except TimeoutError:
            raise multiprocessing.TimeoutError(
                f"client {self.cid} did not finish within {timeout}s"
            ) from None

    def ready(self) -> bool:
        return self.done()

    def wait(self, timeout: float | None = None) -> None:
        wait_futures([self], timeout)

    def successful(self) -> bool:
        if not self.done():
            raise ValueError(f"client {self.cid} has not finished yet")
        return not self.cancelled() and self.exception() is None


def _settle(future: ClientFuture, outcome: Any) -> None:
    with suppress(InvalidStateError):  # the user cancelled or settled it
        if outcome.ok:
            future.set_result(outcome.result)
        else:
            future.set_exception(outcome.error.exception())


def _drain(items: Iterable[Any]) -> None:
    """Iterate ``progress_fn``'s result, waiting on each future it yields as
    BlazeFL does (``.result()``); client failures are reported afterwards."""
    for item in items:
        if isinstance(item, Future):
            with suppress(Exception):
                item.result()


def run_local_process(
    trainer: Any,
    make_executor: Callable[[], Any],
    payload: Any,
    cid_list: list[int],
    *,
    keep_executor: bool,
) -> list[Any]:
    """Run one round of ``cid_list`` through the engine; results in list order."""
    from blazefl._validate import check_seed
    from blazefl.sim._adapters import adapt
    from blazefl.sim._engine import RoundRunner, check_cids
    from blazefl.sim._states import MemoryStateStore

    cids = check_cids(cid_list)
    runner: RoundRunner | None = getattr(trainer, "_blazefl_runner", None)
    if runner is None:
        runner = RoundRunner(
            adapt(trainer, getattr(trainer, "device", "cpu")),
            make_executor(),
            MemoryStateStore(check_seed("seed", getattr(trainer, "seed", 0) or 0)),
        )
        trainer._blazefl_runner = runner
    index = getattr(trainer, "_blazefl_round", 0)
    futures = [ClientFuture(cid) for cid in cids]
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def watch(scope: anyio.CancelScope) -> None:
        while not stop.is_set():  # noqa: ASYNC110  (a threading.Event)
            await anyio.sleep(_POLL_SECONDS)
        scope.cancel()

    async def main() -> None:
        executor = runner.executor
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, tg.cancel_scope)
                if not executor.running:
                    await executor.start(runner.adapter.work)
                box["outcomes"] = await runner.run(
                    index, payload, cids, lambda o: _settle(futures[o.slot], o)
                )
                tg.cancel_scope.cancel()
        finally:
            if not keep_executor or stop.is_set():
                with anyio.CancelScope(shield=True):
                    await executor.aclose()

    def target() -> None:
        try:
            anyio.run(main)
        except BaseException as exc:  # re-raised in the calling thread
            box["error"] = exc
        finally:
            for future in futures:
                future.cancel()  # a no-op on settled ones; wakes any waiter

    thread = threading.Thread(target=target, name="blazefl-local-process", daemon=True)
    thread.start()
    try:
        _drain(trainer.progress_fn(futures))
        thread.join()
    except BaseException:
        # Ctrl-C, a SIGTERM handler's SystemExit, or an error in progress_fn:
        # stop the clients and close the executor before it propagates.
        stop.set()
        thread.join(_WIND_DOWN_SECONDS)
        raise
    if "error" in box:
        raise box["error"]
    outcomes = box["outcomes"]
    failed = [o for o in outcomes if not o.ok]
    if failed:
        first = failed[0]
        raise RoundFailedError(
            f"{len(failed)} of {len(outcomes)} clients failed; first: client "
            f"{first.cid}: {first.error}\n{first.error.traceback}",
            tuple(o.error for o in failed),
        )
    runner.commit(outcomes, index + 1)
    trainer._blazefl_round = index + 1
    return [o.result for o in outcomes]
