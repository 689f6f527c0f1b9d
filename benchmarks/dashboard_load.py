"""Does watching a run slow it down? 20 dashboard clients on one running run.

The question (issue "watch it live"): 20 concurrent dashboard clients on one
run, and a client that disconnects mid-stream, must not slow the run by more
than 5% and must leak nothing. The run is a real ``blazefl run`` (FedAvg, the
README's data and model, 10 rounds) in its own process; the dashboard is a
`DashboardServer` in this process over the run's folder, as ``blazefl
serve`` would be. Plain and watched runs alternate (``--repeats`` pairs), and
the figure is the ratio of the medians of the runs' own round seconds (from
their ``metrics.jsonl``), watched / plain. Leaks: this process's open file
descriptors and asyncio tasks before the clients connect and after they all
left.

Reproduce (about 4 minutes on 2 idle cores)::

    .venv/bin/python benchmarks/dashboard_load.py    # results/dashboard_load.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
import torch

from blazefl.dashboard import DashboardServer

RESULTS = Path(__file__).with_name("results")
ARGS = ["--rounds", "10", "--executor", "threads", "--workers", "2", "-q"]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _watch(
    client: httpx.AsyncClient, run: str, stop: anyio.Event, drop: bool
) -> int:
    frames = 0
    async with client.stream("GET", f"/events?run={run}") as response:
        async for chunk in response.aiter_text():
            frames += chunk.count("\nid: ") + chunk.startswith("id: ")
            if stop.is_set() or (drop and frames >= 20):
                break  # the mid-stream disconnect
    return frames


async def _one(folder: Path, watchers: int) -> dict[str, float]:
    env = {**os.environ}
    cmd = [sys.executable, "-m", "blazefl.cli", "run", "--out", str(folder), *ARGS]
    before_fds, before_tasks = _fds(), len(asyncio.all_tasks())
    async with DashboardServer([folder.parent], announce=lambda line: None) as server:
        stop = anyio.Event()
        async with httpx.AsyncClient(base_url=server.url, timeout=None) as client:
            async with anyio.create_task_group() as tg:
                process = await anyio.open_process(cmd, env=env)
                if watchers:
                    log = anyio.Path(folder / "events.jsonl")
                    while not await log.exists():  # noqa: ASYNC110 (a file: polled)
                        await anyio.sleep(0.05)
                    await anyio.sleep(0.5)  # the server finds the new run
                    await client.get("/api/runs")
                    for i in range(watchers + 1):
                        tg.start_soon(_watch, client, folder.name, stop, i == watchers)
                await process.wait()
                stop.set()
                # Wake the streams so they see `stop` (one more line).
                with (folder / "events.jsonl").open("a") as f:
                    f.write(json.dumps({"event": "bench_done"}) + "\n")
            await process.aclose()
    await anyio.sleep(0.2)
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return {
        "round_seconds": sum(r["seconds"] for r in rows[1:]),  # round 1: warm-up
        "fds_leaked": _fds() - before_fds,
        "tasks_leaked": len(asyncio.all_tasks()) - before_tasks,
    }


async def main(repeats: int, watchers: int) -> None:
    plain, watched, leaks = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for kind in ("plain", "watched"):
                folder = Path(tmp) / f"{kind}{i}" / "run"
                folder.parent.mkdir()
                got = await _one(folder, watchers if kind == "watched" else 0)
                (watched if kind == "watched" else plain).append(got["round_seconds"])
                if kind == "watched":
                    leaks.append((got["fds_leaked"], got["tasks_leaked"]))
                print(kind, i, got, flush=True)
    ratio = statistics.median(watched) / statistics.median(plain)
    machine = (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    doc = {
        "watchers": watchers,
        "repeats": repeats,
        "plain_round_seconds": plain,
        "watched_round_seconds": watched,
        "ratio": ratio,
        "target": 1.05,
        "leaks_fds_tasks": leaks,
        "machine": machine,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard_load.json").write_text(json.dumps(doc, indent=2) + "\n")
    verdict = "PASS" if ratio <= 1.05 else "MISS"
    (RESULTS / "dashboard_load.md").write_text(
        f"`blazefl run {' '.join(ARGS)}` (rounds 2-10 summed), plain vs watched by "
        f"{watchers} dashboard clients plus one that disconnects mid-stream; "
        f"{repeats} alternating pairs. {machine}.\n\n"
        f"| plain s (median) | watched s (median) | watched / plain | target |\n"
        f"| ---: | ---: | ---: | --- |\n"
        f"| {statistics.median(plain):.2f} | {statistics.median(watched):.2f} | "
        f"{ratio:.3f} | <= 1.05 {verdict} |\n\n"
        f"Leaked after each watched run (file descriptors, asyncio tasks): {leaks}\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.repeats, args.watchers))
