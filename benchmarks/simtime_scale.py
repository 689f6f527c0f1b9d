"""Asynchronous FL at scale: many registered clients, many in flight, a tiny model.

Each configuration runs in a fresh subprocess (so its peak RSS is its own):
FedBuff-style server updates (K = concurrency / 10) on a 1,000-parameter
model, with generated profiles for every registered client and client states
in the on-disk store (``client_state_path``), so what stays in memory should be
proportional to the clients in flight, not to the clients registered. The
client work is a cheap native function (a few tensor operations), so the
measurement is of the coordinator: the schedule, the in-flight results, the
model versions in use.

Run from the repository root (about a minute)::

    .venv/bin/python benchmarks/simtime_scale.py

Results: ``benchmarks/results/simtime_scale.{json,md}``.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CONFIGS = [
    # (registered clients, concurrency, server updates)
    (10_000, 100, 100),
    (100_000, 100, 100),
    (100_000, 1_000, 30),
]
PARAMS = 1_000


def _child(registered: int, concurrency: int, updates: int) -> dict[str, Any]:
    import anyio
    import structlog
    import torch

    from blazefl.sim import InlineExecutor, Simulation
    from blazefl.simtime import SimTime, generate_profiles

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR)
    )

    class Server:
        """A tiny asynchronous handler: x ← x + mean of the buffered deltas."""

        def __init__(self) -> None:
            self.num_clients = registered
            self.clients_per_round = concurrency
            self.params = torch.zeros(PARAMS)
            self.version = 0

        def sample_clients(self) -> list[int]:
            raise AssertionError("async mode samples through the scheduler")

        def sample_among(self, candidates: Any, count: int) -> list[int]:
            raise AssertionError("async mode samples through the scheduler")

        def async_buffer_size(self) -> int:
            return max(1, concurrency // 10)

        def downlink_package(self) -> torch.Tensor:
            return self.params

        def load(self, update: Any) -> bool:
            raise AssertionError("async mode applies through load_stale")

        def load_stale(self, entries: list[tuple[Any, int, torch.Tensor]]) -> None:
            deltas = [u - base for u, _, base in entries]
            self.params = self.params + torch.stack(deltas).mean(0)
            self.version += 1

        def is_stopped(self) -> bool:
            return self.version >= updates

    def work(ctx: Any, params: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(PARAMS, generator=ctx.rng.torch_cpu)
        return params + 0.01 * noise

    profiles = generate_profiles(registered, 0)
    time_model = SimTime(
        profiles,
        mode="async",
        concurrency=concurrency,
        epochs=1,
        samples=lambda cid: 32,
    )
    with tempfile.TemporaryDirectory() as folder:
        server = Server()
        sim = Simulation(
            server,
            work,
            executor=InlineExecutor(),
            seed=0,
            time=time_model,
            evaluate_every=0,
            client_state_path=Path(folder) / "states.sqlite",
        )

        async def main() -> float:
            async with sim:
                start = time.perf_counter()
                await sim.run()
                return time.perf_counter() - start

        seconds = anyio.run(main)
        virtual = sim.now
    return {
        "registered": registered,
        "concurrency": concurrency,
        "server_updates": updates,
        "client_updates": updates * max(1, concurrency // 10),
        "virtual_seconds": virtual,
        "wall_seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(_child(*map(int, sys.argv[2:]))))
        return
    rows = []
    for registered, concurrency, updates in CONFIGS:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(registered), str(concurrency),
             str(updates)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(row, flush=True)
        rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simtime_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Asynchronous FL at scale (`benchmarks/simtime_scale.py`)",
        "",
        f"A {PARAMS}-parameter model, generated profiles for every registered "
        "client, client states on disk, InlineExecutor; peak RSS of the whole "
        "process (Python, torch and all).",
        "",
        "| registered | in flight | server updates | client updates | "
        "virtual s | wall s | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['registered']:,} | {r['concurrency']:,} | {r['server_updates']} "
        f"| {r['client_updates']:,} | {r['virtual_seconds']:.1f} | "
        f"{r['wall_seconds']:.1f} | {r['peak_rss_mib']:.0f} MiB |"
        for r in rows
    ]
    (RESULTS / "simtime_scale.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'simtime_scale'}.{{json,md}}")


if __name__ == "__main__":
    main()
