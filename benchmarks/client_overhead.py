"""The fixed cost per client: 200 light clients a round, side by side.

A client that does almost nothing (it adds 16 draws from its own torch
generator to a 16-element payload) makes a round's time almost all framework:
restoring and capturing the client's RNG suite, building its context, the hop
to a worker thread or process and back, the engine's checks, events and logs.
Each round samples all 200 clients of the federation and runs them

* through a *bare* loop written by hand (each client's `RNGSuite` kept in a
  dict and simply continued, a for-loop at p = 1, a
  `concurrent.futures.ThreadPoolExecutor(p)` at p > 1), and
* through `Simulation` on `ThreadExecutor(p)` and `ProcessExecutor(p)`,

rounds interleaved in a rotating order (as in ``harness.py``). The fixed cost
per client is the paired difference ``(round − bare(p) round) / clients``, its
median over rounds >= 2 of all repetitions; the final server state of every
variant must equal the bare loop's bit for bit, which the script asserts.

    python benchmarks/client_overhead.py            # ~1-2 min on 2 cores
    python benchmarks/client_overhead.py --quick    # smoke run
    python benchmarks/client_overhead.py --label before  # name in the results

Results go to ``benchmarks/results/client_overhead.{json,md}``
(``client_overhead-quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import structlog
import torch
from anyio.from_thread import start_blocking_portal
from harness import HERE, LoadMonitor, Run, machine_info, paired, quantile

from blazefl.reproducibility import RNGSuite, create_client_rng_suite
from blazefl.sim import (
    ClientContext,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
)

SIZE = 16
#: The issue's targets for the fixed cost per client, in milliseconds.
TARGETS = {"inline": None, "threads": 0.2, "processes": 1.0}


def light(payload: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A light client's whole work: one small draw from its own stream."""
    return payload + torch.rand(SIZE, generator=generator)


def light_work(ctx: ClientContext, payload: torch.Tensor) -> torch.Tensor:
    return light(payload, ctx.rng.torch_cpu)


class LightHandler:
    """All clients every round; the new model is the mean of the uplinks."""

    def __init__(self, clients: int, rounds: int) -> None:
        self.clients, self.rounds = clients, rounds
        self.model = torch.zeros(SIZE)
        self.done = 0
        self._total = torch.zeros(SIZE)
        self._loaded = 0

    def sample_clients(self) -> list[int]:
        return list(range(self.clients))

    def downlink_package(self) -> torch.Tensor:
        return self.model.clone()

    def load(self, package: torch.Tensor) -> bool:
        self._total += package
        self._loaded += 1
        if self._loaded < self.clients:
            return False
        self.model = self._total / self.clients
        self._total, self._loaded = torch.zeros(SIZE), 0
        self.done += 1
        return True

    def is_stopped(self) -> bool:
        return self.done >= self.rounds


class Bare:
    def __init__(self, clients: int, rounds: int, parallelism: int, seed: int) -> None:
        self.args = clients, rounds
        self.parallelism, self.seed = parallelism, seed

    def start(self) -> None:
        self.handler = LightHandler(*self.args)
        self.suites: dict[int, RNGSuite] = {}
        self.pool = (
            ThreadPoolExecutor(self.parallelism) if self.parallelism > 1 else None
        )

    def client(self, cid: int, payload: torch.Tensor) -> torch.Tensor:
        return light(payload, self.suites[cid].torch_cpu)

    def round(self) -> float:
        handler = self.handler
        start = time.perf_counter()
        cids = handler.sample_clients()
        payload = handler.downlink_package()
        for cid in cids:
            if cid not in self.suites:
                self.suites[cid] = create_client_rng_suite(self.seed, cid)
        if self.pool is None:
            uploads = [self.client(cid, payload) for cid in cids]
        else:
            uploads = list(self.pool.map(self.client, cids, [payload] * len(cids)))
        for upload in uploads:
            handler.load(upload)
        return time.perf_counter() - start

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class Sim:
    """`Simulation` on one executor, in its own event loop on a portal thread."""

    def __init__(
        self, clients: int, rounds: int, make: Callable[[], Any], seed: int
    ) -> None:
        self.args, self.make, self.seed = (clients, rounds), make, seed

    def start(self) -> None:
        self.stack = ExitStack()
        try:
            self.portal = self.stack.enter_context(start_blocking_portal())
            self.handler = LightHandler(*self.args)
            self.sim = Simulation(
                self.handler, light_work, executor=self.make(), seed=self.seed
            )
            self.portal.call(self.sim.start)
        except BaseException:
            self.stack.close()
            raise

    async def _timed(self) -> float:
        start = time.perf_counter()
        await self.sim.run_round()
        return time.perf_counter() - start

    def round(self) -> float:
        return self.portal.call(self._timed)

    def close(self) -> None:
        try:
            self.portal.call(self.sim.aclose)
        finally:
            self.stack.close()


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[], Any]]]:
    c, r, s = args.clients, args.rounds, args.seed
    out: list[tuple[str, Callable[[], Any]]] = []
    for p in args.workers:
        out.append((f"bare({p})", lambda p=p: Bare(c, r, p, s)))
        if p == 1:
            out.append(("inline", lambda: Sim(c, r, InlineExecutor, s)))
        out.append(
            (f"threads({p})", lambda p=p: Sim(c, r, lambda: ThreadExecutor(p), s))
        )
        out.append(
            (f"processes({p})", lambda p=p: Sim(c, r, lambda: ProcessExecutor(p), s))
        )
    return out


def run_repeat(
    args: argparse.Namespace, repeat: int, monitor: LoadMonitor
) -> list[Run]:
    live: list[tuple[str, Any]] = []
    runs: dict[str, Run] = {}
    try:
        for name, make in plan(args):
            variant = make()
            t0 = time.perf_counter()
            variant.start()
            live.append((name, variant))
            runs[name] = Run(name, repeat, time.perf_counter() - t0, [], 0.0)
        for index in range(args.rounds):
            shift = (index + repeat) % len(live)
            before = monitor.sample()
            for name, variant in live[shift:] + live[:shift]:
                runs[name].rounds_s.append(variant.round())
            foreign = monitor.foreign(before, monitor.sample())
            for run in runs.values():
                run.foreign.append(foreign)
    finally:
        for _, variant in live:
            variant.close()
    reference = live[0][1].handler.model
    for name, variant in live:
        if not torch.equal(variant.handler.model, reference):
            raise AssertionError(f"{name} ended with a different model than bare")
    return list(runs.values())


def analyse(args: argparse.Namespace, runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    kind_p = ("threads", "processes")
    for p in args.workers:
        for kind in ("inline", "threads", "processes") if p == 1 else kind_p:
            name = kind if kind == "inline" else f"{kind}({p})"
            bare = f"bare({p})"

            def per_client(x: float, y: float) -> float:
                return (x - y) * 1000 / args.clients

            diffs = paired(runs, name, bare, first=False, op=per_client)
            quiet = paired(runs, name, bare, first=False, quiet=True, op=per_client)
            steady = [t for r in runs if r.variant == bare for t in r.rounds_s[1:]]
            rows.append(
                {
                    "variant": name,
                    "baseline": bare,
                    "bare_round_ms": statistics.median(steady) * 1000,
                    "ms_per_client": statistics.median(diffs),
                    "p25": quantile(diffs, 0.25),
                    "p75": quantile(diffs, 0.75),
                    "quiet_ms_per_client": statistics.median(quiet) if quiet else None,
                    "quiet_n": len(quiet),
                    "target_ms": TARGETS[kind],
                }
            )
    return rows


def render(result: dict[str, Any]) -> str:
    m, a = result["machine"], result["args"]
    lines = [
        f"{a['clients']} light clients a round (all sampled; each adds {SIZE} "
        "draws of its own torch generator to the payload), "
        f"{a['rounds']} rounds x {a['repeats']} repetitions, rounds interleaved. "
        f"Label: {result['label']}. {m['cpu_count']} CPUs ({m['cpu_model']}), "
        f"Python {m['python']} (GIL {'on' if m['gil_enabled'] else 'off'}), "
        f"torch {m['torch']}, blazefl {m['blazefl']} ({m['git'].get('commit')}), "
        f"{result['date']}. Load average at start {m['loadavg_start']}, "
        f"at end {result['loadavg_end']}.",
        "",
        "| variant | bare round ms | ms per client (p25-p75) | quiet rounds: ms "
        "per client (n) | target | verdict |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result["rows"]:
        quiet = (
            "-"
            if row["quiet_ms_per_client"] is None
            else f"{row['quiet_ms_per_client']:.3f} ({row['quiet_n']})"
        )
        target = row["target_ms"]
        verdict = (
            ""
            if target is None
            else "PASS"
            if row["ms_per_client"] <= target
            else "MISS"
        )
        lines.append(
            f"| {row['variant']} | {row['bare_round_ms']:.1f} | "
            f"{row['ms_per_client']:.3f} ({row['p25']:.3f}-{row['p75']:.3f}) | "
            f"{quiet} | {'' if target is None else f'<= {target}'} | {verdict} |"
        )
    foreign = [f for f in result["foreign"] if f is not None]
    lines += [
        "",
        "ms per client: paired median over rounds >= 2 of (variant round − bare(p) "
        "round in the same cycle) / clients. Quiet rounds: cycles in which other "
        "processes used <= 10% of the CPUs. Other load during the run: median "
        f"{statistics.median(foreign) * 100 if foreign else 0:.0f}%, max "
        f"{max(foreign) * 100 if foreign else 0:.0f}% of all CPUs per cycle.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="current")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 8)
    args.repeats = args.repeats or (1 if args.quick else 3)
    torch.set_num_threads(1)
    # Nothing listens below warnings, as in the other benchmarks: the per-client
    # info lines would otherwise be rendered to the console.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    machine = machine_info()
    monitor = LoadMonitor()
    runs: list[Run] = []
    for repeat in range(args.repeats):
        runs += run_repeat(args, repeat, monitor)
    result = {
        "label": args.label,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "args": vars(args),
        "machine": machine,
        "loadavg_end": os.getloadavg(),
        "rows": analyse(args, runs),
        "foreign": [f for r in runs if r.variant == runs[0].variant for f in r.foreign],
        "runs": [vars(r) for r in runs],
        "threads_alive": threading.active_count(),
    }
    stem = "client_overhead-quick" if args.quick else "client_overhead"
    out = HERE / "results"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
