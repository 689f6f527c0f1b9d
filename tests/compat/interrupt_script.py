"""The BlazeFL 3.0 loop with clients that train for many minutes, for
test_signals.py to interrupt: ``python interrupt_script.py threads|processes``.

Prints ``started`` once a client is training, and on the way out the child
processes (less multiprocessing's resource tracker) and threads still alive.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from blazefl.contrib.fedavg import (
    FedAvgBaseServerHandler,
    FedAvgProcessPoolClientTrainer,
    FedAvgThreadPoolClientTrainer,
)
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo


def _left() -> tuple[list[int], list[str]]:
    me = str(Path("/proc/self").resolve().name)
    kids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z" and b"resource_tracker" not in cmd:
            kids.append(int(entry.name))
    for _ in range(200):  # anyio's worker threads exit just after their loop
        # (multiprocessing's resource sharer serves fds on a daemon thread
        # of its own, for the life of the interpreter)
        threads = [
            t.name
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.name.endswith("(_serve)")
        ]
        if not threads:
            break
        time.sleep(0.01)
    return kids, threads


def main(kind: str) -> None:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    data = SyntheticPartitionedDataset(2, seed=1, samples_per_client=4096)
    zoo = ModelZoo(data.input_shape, data.num_classes)
    handler = FedAvgBaseServerHandler(zoo, "mlp", data, 1, 2, 1.0, "cpu", 64, 1)
    common = {
        "model_selector": zoo,
        "model_name": "mlp",
        "dataset": data,
        "device": "cpu",
        "num_clients": 2,
        "epochs": 100_000,
        "batch_size": 1,
        "lr": 0.01,
        "seed": 1,
        "num_parallels": 2,
    }
    if kind == "threads":
        trainer: object = FedAvgThreadPoolClientTrainer(**common)  # type: ignore[arg-type]
    else:
        trainer = FedAvgProcessPoolClientTrainer(state_dir=tempfile.mkdtemp(), **common)  # type: ignore[arg-type]

    def progress(it):  # type: ignore[no-untyped-def]
        print("started", flush=True)
        return it

    trainer.progress_fn = progress  # type: ignore[attr-defined]
    try:
        while not handler.is_stopped():
            trainer.local_process(handler.downlink_package(), handler.sample_clients())  # type: ignore[attr-defined]
    except BaseException:
        kids, threads = _left()
        print(f"left children={kids} threads={threads}", flush=True)
        raise


if __name__ == "__main__":
    main(sys.argv[1])
