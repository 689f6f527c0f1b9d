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
from collections.abc import Callable
from typing import Any

import structlog
import torch
from harness import (
    HERE,
    BareLoop,
    LoadMonitor,
    Run,
    SimRunner,
    interleave,
    machine_info,
    paired,
    plan_variants,
    quantile,
)

from blazefl.sim import (
    ClientContext,
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


class Bare(BareLoop):
    """The bare loop (`harness.BareLoop`) over the light clients."""

    def __init__(self, clients: int, rounds: int, parallelism: int, seed: int) -> None:
        super().__init__(parallelism, seed)
        self.args = clients, rounds

    def new_handler(self) -> LightHandler:
        return LightHandler(*self.args)

    def client(self, cid: int, payload: torch.Tensor) -> torch.Tensor:
        return light(payload, self.suites[cid].torch_cpu)


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[], Any]]]:
    c, r, s = args.clients, args.rounds, args.seed
    return plan_variants(
        args.workers,
        lambda p: lambda: Bare(c, r, p, s),
        lambda make: lambda: SimRunner(lambda: LightHandler(c, r), light_work, make, s),
    )


def run_repeat(
    args: argparse.Namespace, repeat: int, monitor: LoadMonitor
) -> list[Run]:
    runs, live = interleave(plan(args), args.rounds, repeat, monitor)
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
