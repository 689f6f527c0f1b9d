"""Overhead of `RayExecutor` on one machine, next to threads and processes.

The same FedAvg federation (blazefl.algorithms, an MLP on the built-in
synthetic data) runs on ``ThreadExecutor(2)``, ``ProcessExecutor(2)`` and
``RayExecutor(2)`` against one local, loopback-only Ray instance with 2 CPUs
started once up front. Variants alternate within each repetition (A B C A B
C ...); each round is timed on its own, round 1 (workers warming up) apart
from the median of the later rounds, and executor start-up apart from both.
The final global model of every run must equal the threads' bit for bit.

Run from the repository root (needs ``pip install 'blazefl[ray]'``)::

    .venv/bin/python benchmarks/ray_overhead.py           # about 2 min
    .venv/bin/python benchmarks/ray_overhead.py --quick   # about 1 min

Results go to ``benchmarks/results/ray_overhead.{json,md}``.
"""

from __future__ import annotations

import os

# Before Ray is imported: keep every Ray process on 127.0.0.1 (Ray otherwise
# turns 127.0.0.1 into the machine's routable address) and send no usage data.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse
import datetime as dt
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import structlog
import torch

import ray
from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import (
    Executor,
    ProcessExecutor,
    RayExecutor,
    Simulation,
    ThreadExecutor,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NUM_CLIENTS = 10

VARIANTS: dict[str, Callable[[], Executor]] = {
    "threads(2)": lambda: ThreadExecutor(2),
    "processes(2)": lambda: ProcessExecutor(2),
    "ray(2)": lambda: RayExecutor(2),
}


def federation(
    data: SyntheticPartitionedDataset, rounds: int
) -> tuple[FederatedServer, FederatedClient]:
    server = FederatedServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=data,
        num_clients=NUM_CLIENTS,
        rounds=rounds,
        sample_ratio=0.5,
        seed=0,
    )
    client = FederatedClient(
        FedAvg(), ModelZoo(), "mlp", data, epochs=1, batch_size=16, lr=0.1
    )
    return server, client


async def timed_run(
    make: Callable[[], Executor], data: SyntheticPartitionedDataset, rounds: int
) -> tuple[float, list[float], torch.Tensor]:
    """(start-up seconds, per-round seconds, final parameters) of one run."""
    server, client = federation(data, rounds)
    sim = Simulation(server, client, executor=make(), seed=0)
    start = time.perf_counter()
    async with sim:
        startup = time.perf_counter() - start
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            await sim.run_round()
            times.append(time.perf_counter() - t0)
    return startup, times, server.params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats, rounds = (2, 6) if args.quick else (4, 10)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    data = SyntheticPartitionedDataset(
        NUM_CLIENTS, seed=0, samples_per_client=256, test_samples=500
    )
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=2,
        log_to_driver=False,
    )
    startups: dict[str, list[float]] = {name: [] for name in VARIANTS}
    first: dict[str, list[float]] = {name: [] for name in VARIANTS}
    later: dict[str, list[float]] = {name: [] for name in VARIANTS}
    reference: torch.Tensor | None = None
    try:
        for rep in range(repeats):
            for name, make in VARIANTS.items():
                startup, times, params = anyio.run(timed_run, make, data, rounds)
                if reference is None:
                    reference = params
                assert torch.equal(params, reference), f"{name} differs"
                startups[name].append(startup)
                first[name].append(times[0])
                later[name].extend(times[1:])
                print(
                    f"rep {rep} {name}: start {startup:.2f}s, "
                    f"rounds>=2 median {statistics.median(times[1:]) * 1e3:.1f} ms"
                )
    finally:
        ray.shutdown()
    base = statistics.median(later["threads(2)"])
    summary = {
        name: {
            "startup_s": statistics.median(startups[name]),
            "round1_ms": statistics.median(first[name]) * 1e3,
            "round_median_ms": statistics.median(later[name]) * 1e3,
            "round_min_ms": min(later[name]) * 1e3,
            "vs_threads": statistics.median(later[name]) / base,
            "rounds_timed": len(later[name]),
        }
        for name in VARIANTS
    }
    ray_ms = summary["ray(2)"]["round_median_ms"]
    proc_ms = summary["processes(2)"]["round_median_ms"]
    per_client = (ray_ms - summary["threads(2)"]["round_median_ms"]) / (
        NUM_CLIENTS // 2
    )
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "cpus": os.cpu_count(),
        },
        "config": {
            "clients": NUM_CLIENTS,
            "clients_per_round": NUM_CLIENTS // 2,
            "samples_per_client": 256,
            "model": "mlp",
            "epochs": 1,
            "rounds_per_run": rounds,
            "repeats": repeats,
        },
        "results": summary,
        "ray_extra_ms_per_round_vs_processes": ray_ms - proc_ms,
        "ray_extra_ms_per_client_vs_threads": per_client,
        "bitwise_equal": True,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "ray_overhead-quick" if args.quick else "ray_overhead"
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# RayExecutor overhead on one machine",
        "",
        f"{record['date']}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, Ray {ray.__version__}, {os.cpu_count()} CPUs. "
        f"FedAvg, MLP, {NUM_CLIENTS} clients x 256 samples, 5 per round, "
        f"1 epoch; {repeats} alternating repetitions x {rounds} rounds. "
        "Final models bitwise equal across executors.",
        "",
        "| executor | start-up | round 1 | rounds >= 2, median | min | vs threads |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['startup_s']:.2f} s | {row['round1_ms']:.1f} ms | "
            f"{row['round_median_ms']:.1f} ms | {row['round_min_ms']:.1f} ms | "
            f"{row['vs_threads']:.2f}x |"
        )
    lines += [
        "",
        f"Ray's extra cost per round vs processes: {ray_ms - proc_ms:+.1f} ms; "
        f"per client vs threads: {per_client:+.2f} ms.",
        "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
