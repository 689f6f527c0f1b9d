"""The BlazeFL trainers' ``local_process``, as a thin face over the engine.

BlazeFL users call ``trainer.local_process(payload, cid_list)`` from plain
synchronous code. It runs the same `blazefl.sim` engine as `Simulation`: the
round runs in a helper thread with its own event loop (so it also works when
the caller's thread already runs one, as in a notebook), while the calling
thread iterates the trainer's ``progress_fn`` over client completions.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import anyio

from blazefl._exceptions import RoundFailedError

__all__ = ["Completions", "PoolTrainer", "run_local_process"]

UplinkPackage = TypeVar("UplinkPackage")

_DONE = object()


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

    def progress_fn(self, it: Iterable[Any]) -> Iterable[Any]:
        """Wrap client completions (e.g. in a tqdm bar); identity by default."""
        return it

    def uplink_package(self) -> list[UplinkPackage]:
        """The last round's packages in ``cid_list`` order; clears the cache."""
        packages, self.cache = list(self.cache), []
        return packages


class Completions:
    """A sized iterable that yields each client's outcome as it completes."""

    def __init__(self, total: int, source: queue.Queue[Any]) -> None:
        self._total = total
        self._source = source

    def __len__(self) -> int:
        return self._total

    def __iter__(self) -> Iterator[Any]:
        while (item := self._source.get()) is not _DONE:
            yield item


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
    completions: queue.Queue[Any] = queue.Queue()
    box: dict[str, Any] = {}

    async def main() -> None:
        executor = runner.executor
        if not executor.running:
            await executor.start(runner.adapter.work)
        try:
            box["outcomes"] = await runner.run(index, payload, cids, completions.put)
        finally:
            if not keep_executor:
                await executor.aclose()

    def target() -> None:
        try:
            anyio.run(main)
        except BaseException as exc:  # re-raised in the calling thread
            box["error"] = exc
        finally:
            completions.put(_DONE)

    thread = threading.Thread(target=target, name="blazefl-local-process")
    thread.start()
    try:
        for _ in trainer.progress_fn(Completions(len(cids), completions)):
            pass
    finally:
        thread.join()
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
