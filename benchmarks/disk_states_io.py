"""Disk client-state store: the cost of writing and reading N rows.

What it measures: `DiskStateStore.commit_round` of N client states in rounds
of ``--per-round`` clients, `get_many` of all of them back, a checkpoint
(`state_dict`), and a resume of it in a fresh store (`load_state_dict`,
which checks the file against the checkpoint). Every row holds the same
freshly derived RNG suite (about 9 KB of JSON), so deriving N suites is not
what is timed. Run from the repository root::

    .venv/bin/python benchmarks/disk_states_io.py --rows 100000

It prints one JSON line: wall seconds per phase, CPU seconds of writing and
reading (steadier on a shared machine), and wall microseconds per row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from blazefl.sim._context import ClientState
from blazefl.sim._disk_states import DiskStateStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-round", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clients.sqlite"
        store = DiskStateStore(0, path)
        state = store.fresh(0)
        cids = list(range(args.rows))
        chunks = [
            cids[i : i + args.per_round] for i in range(0, args.rows, args.per_round)
        ]
        times: dict[str, float] = {}
        cpu: dict[str, float] = {}
        start, cpu_start = time.perf_counter(), time.process_time()
        for rounds, chunk in enumerate(chunks, 1):
            store.commit_round(rounds, [(cid, ClientState(state.rng)) for cid in chunk])
        times["write"] = time.perf_counter() - start
        cpu["write"] = time.process_time() - cpu_start
        start, cpu_start = time.perf_counter(), time.process_time()
        for chunk in chunks:
            got = store.get_many(chunk)
            assert len(got) == len(chunk)
        times["read"] = time.perf_counter() - start
        cpu["read"] = time.process_time() - cpu_start
        start = time.perf_counter()
        checkpoint = store.state_dict(len(chunks))
        times["checkpoint"] = time.perf_counter() - start
        store.close()
        start = time.perf_counter()
        resumed = DiskStateStore(0, path)
        resumed.load_state_dict(checkpoint, len(chunks))
        resumed.close()
        times["resume"] = time.perf_counter() - start
        size = path.stat().st_size + sum(
            p.stat().st_size for p in Path(tmp).glob("clients.sqlite-*")
        )
    report = {
        "rows": args.rows,
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "us_per_row": {
            k: round(1e6 * times[k] / args.rows, 1) for k in ("write", "read")
        },
        "file_mib": round(size / 2**20, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
