"""BlazeFL 3.0's ``progress_fn`` hook and Ctrl-C during ``local_process``.

From ../shared/docs/BLAZEFL-API.md, "Module paths, edges and hooks": the
thread-pool trainer passes ``progress_fn`` a list of futures, overrides return
``tqdm(as_completed(it), total=len(it))``, and leaving a round by an exception
(KeyboardInterrupt included) stops the clients and ends the call promptly.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, as_completed
from typing import Any

import pytest
import torch
from tqdm import tqdm

from blazefl.core.client_trainer import ThreadPoolClientTrainer


class _Trainer(ThreadPoolClientTrainer[int, torch.Tensor]):
    """Client ``cid`` returns ``cid``; later ids finish first. With ``slow``,
    clients wait on their stop flag (for up to a minute) instead."""

    def __init__(self, slow: bool = False) -> None:
        self.num_parallels = 3
        self.device, self.device_count = "cpu", 0
        self.cache = []
        self.stop_event = threading.Event()
        self.slow = slow
        self.stopped: list[int] = []
        self.seen: list[Any] = []
        self.started = threading.Semaphore(0)

    def worker(
        self, cid: int, device: str, payload: torch.Tensor, stop_event: Any
    ) -> int:
        if self.slow:
            self.started.release()
            if stop_event.wait(60):
                self.stopped.append(cid)
            return cid
        time.sleep(0.01 * (10 - cid))
        return cid


class _AsCompleted(_Trainer):
    def progress_fn(self, it: Any) -> Any:
        self.seen = list(it)
        return tqdm(as_completed(it), total=len(it), disable=True)


class _Tqdm(_Trainer):
    def progress_fn(self, it: Any) -> Any:
        return tqdm(it, total=len(it), disable=True)


@pytest.mark.parametrize("cls", [_AsCompleted, _Tqdm])
def test_progress_fn_override_from_blazefl_3(cls: type[_Trainer]) -> None:
    """3.0's tqdm overrides work; results stay in cid_list order."""
    trainer = cls()
    cids = [1, 7, 3, 9, 0]
    trainer.local_process(torch.ones(1), cids)
    assert trainer.uplink_package() == cids


def test_progress_fn_gets_real_futures() -> None:
    """progress_fn receives a list of concurrent.futures.Future, one per client."""
    trainer = _AsCompleted()
    trainer.local_process(torch.ones(1), [4, 2])
    assert all(isinstance(f, Future) for f in trainer.seen)
    assert [f.result() for f in trainer.seen] == [4, 2]
    assert [f.get() for f in trainer.seen] == [4, 2]  # AsyncResult's face too


class _Interrupting(_Trainer):
    def progress_fn(self, it: Any) -> Any:
        for _ in it:  # every client is running
            assert self.started.acquire(timeout=60)
        raise KeyboardInterrupt


def test_interrupt_stops_clients_and_raises() -> None:
    """KeyboardInterrupt in the caller stops every running client, then propagates."""
    trainer = _Interrupting(slow=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.local_process(torch.ones(1), [0, 1, 2])
    assert sorted(trainer.stopped) == [0, 1, 2]
    names = {t.name for t in threading.enumerate()}
    assert "blazefl-local-process" not in names
    assert not trainer._blazefl_runner.executor.running
