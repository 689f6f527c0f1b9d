"""The BlazeFL trainers' local_process, as users subclass them, on real workers."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from blazefl import RoundFailedError
from blazefl.core import (
    ProcessPoolClientTrainer,
    SHMHandle,
    ThreadPoolClientTrainer,
    process_tensors_in_object,
)


@dataclass
class Up:
    cid: int
    tensor: torch.Tensor
    info: dict[str, Any]


def _delay(cid: int) -> float:
    # Later clients finish first, so completion order is the reverse of cid order.
    return 0.002 * (10 - cid % 10)


class EchoThreadTrainer(ThreadPoolClientTrainer[Up, torch.Tensor]):
    """A user-written trainer: each client returns payload * cid."""

    def __init__(self, num_parallels: int) -> None:
        self.num_parallels = num_parallels
        self.device = "cpu"
        self.device_count = 0
        self.cache = []
        self.stop_event = threading.Event()
        self.seen_threads: set[int] = set()
        self.completions: list[int] = []

    def worker(
        self, cid: int, device: str, payload: torch.Tensor, stop_event: threading.Event
    ) -> Up:
        time.sleep(_delay(cid))
        self.seen_threads.add(threading.get_ident())
        if cid == 666:
            raise RuntimeError("client 666 is cursed")
        if cid == 777:
            payload.add_(1.0)  # into the caller's payload, were it not lent
        return Up(cid, payload * cid, {"thread": threading.current_thread().name})

    def progress_fn(self, it: Any) -> Any:
        assert len(it) >= 1
        for item in as_completed(it):
            self.completions.append(item.cid)
            yield item


class EchoProcessTrainer(
    ProcessPoolClientTrainer[Up, torch.Tensor, dict[str, int], Up]
):
    """A user-written trainer using the BlazeFL shared-memory uplink protocol."""

    def __init__(self, num_parallels: int) -> None:
        self.num_parallels = num_parallels
        self.device = "cpu"
        self.device_count = 0
        self.cache = []
        self.stop_event = None

    def get_client_config(self, cid: int) -> dict[str, int]:
        return {"cid": cid, "scale": cid + 1}

    @staticmethod
    def worker(
        config: dict[str, int],
        payload: torch.Tensor,
        device: str,
        stop_event: Any,
        *,
        shm_buffer: Up | None = None,
    ) -> Up:
        time.sleep(_delay(config["cid"]))
        if config["cid"] == 666:
            raise ValueError("client 666 is cursed")
        if config["cid"] == 777:
            payload.add_(1.0)  # into the caller's payload, were it not lent
        package = Up(config["cid"], payload * config["scale"], {"pid": os.getpid()})
        assert shm_buffer is not None
        assert shm_buffer.tensor.is_shared()
        shm_buffer.tensor.copy_(package.tensor)
        light: Up = process_tensors_in_object(package, "replace")
        assert isinstance(light.tensor, SHMHandle)
        return light

    def prepare_uplink_package_buffer(self) -> Up:
        return Up(-1, torch.zeros(4), {})

    def convert_buffer_to_uplink(self, buffer: Up) -> Up:
        return buffer


def test_thread_trainer_results_in_cid_list_order() -> None:
    """local_process stores results in cid_list order although they finish reversed."""
    trainer = EchoThreadTrainer(num_parallels=3)
    cids = [7, 1, 9, 4, 0, 5]
    trainer.local_process(torch.ones(3), cids)
    packages = trainer.uplink_package()
    assert [p.cid for p in packages] == cids
    for p in packages:
        assert torch.equal(p.tensor, torch.full((3,), float(p.cid)))
    assert trainer.completions != cids  # they really finished out of order
    assert sorted(trainer.completions) == sorted(cids)
    assert len(trainer.seen_threads) > 1  # and really ran on several threads
    assert trainer.uplink_package() == []  # cleared


def test_thread_trainer_reports_failed_client() -> None:
    """A client that raises fails local_process with its id and traceback."""
    trainer = EchoThreadTrainer(num_parallels=2)
    with pytest.raises(RoundFailedError, match=r"client 666.*cursed") as info:
        trainer.local_process(torch.ones(2), [1, 666, 2])
    assert "Traceback" in str(info.value)
    assert trainer.cache == []


def test_thread_trainer_client_writing_into_payload_fails() -> None:
    """A worker writing into the payload fails by name; the caller's is unchanged."""
    trainer = EchoThreadTrainer(num_parallels=1)
    payload = torch.ones(2)
    with pytest.raises(
        RoundFailedError,
        match=r"client 777: PayloadModifiedError: client 777 wrote into the round's "
        r"payload: the tensor at payload \(shape \(2,\)\) was written in place",
    ):
        trainer.local_process(payload, [1, 777, 2])
    assert torch.equal(payload, torch.ones(2))
    trainer.local_process(payload, [1, 2])
    assert [p.cid for p in trainer.cache] == [1, 2]
    for p in trainer.cache:
        assert torch.equal(p.tensor, torch.full((2,), p.cid * 1.0))


def test_thread_trainer_device_mapping() -> None:
    """get_client_device spreads clients over GPUs by id when device is 'cuda'."""
    trainer = EchoThreadTrainer(num_parallels=1)
    assert trainer.get_client_device(5) == "cpu"
    trainer.device, trainer.device_count = "cuda", 2
    assert [trainer.get_client_device(c) for c in (0, 1, 2, 3)] == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
        "cuda:1",
    ]


def test_process_trainer_shared_memory_round_trip() -> None:
    """Worker processes write into shared buffers; results come back in order."""
    trainer = EchoProcessTrainer(num_parallels=2)
    try:
        cids = [3, 0, 8, 5]
        trainer.local_process(torch.arange(4.0), cids)
        first = trainer.uplink_package()
        assert [p.cid for p in first] == cids
        for p in first:
            assert torch.equal(p.tensor, torch.arange(4.0) * (p.cid + 1))
        pids = {p.info["pid"] for p in first}
        assert os.getpid() not in pids
        # Round two: the same worker processes serve (no pool per round), and
        # reused slot buffers do not overwrite round one's packages.
        trainer.local_process(torch.ones(4), [9, 2])
        second = trainer.uplink_package()
        assert [p.cid for p in second] == [9, 2]
        assert torch.equal(second[0].tensor, torch.full((4,), 10.0))
        assert {p.info["pid"] for p in second} <= set(
            trainer._blazefl_runner.executor.pids
        )
        assert torch.equal(first[0].tensor, torch.arange(4.0) * 4)
        pids_alive = trainer._blazefl_runner.executor.pids
    finally:
        trainer.shutdown()
    for pid in pids_alive:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def test_process_trainer_reports_failed_client() -> None:
    """A client that raises in a worker process fails local_process, by id."""
    trainer = EchoProcessTrainer(num_parallels=1)
    try:
        with pytest.raises(RoundFailedError, match=r"client 666.*ValueError.*cursed"):
            trainer.local_process(torch.ones(4), [1, 666])
    finally:
        trainer.shutdown()


def test_process_trainer_client_writing_into_payload_fails() -> None:
    """In a worker process too: the writer fails, the shared payload is intact."""
    trainer = EchoProcessTrainer(num_parallels=1)
    payload = torch.arange(4.0)
    try:
        with pytest.raises(
            RoundFailedError, match=r"client 777: PayloadModifiedError: client 777"
        ):
            trainer.local_process(payload, [777, 1])
        assert torch.equal(payload, torch.arange(4.0))
        trainer.local_process(payload, [1])
        assert torch.equal(trainer.cache[0].tensor, torch.arange(4.0) * 2)
    finally:
        trainer.shutdown()


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True
