"""Overhead of blazefl.sim's executors against a hand-written FedAvg loop.

The same FedAvg workload (same sampled clients, same per-client RNG streams,
same batch order, same `blazefl.training.train` call, same server
aggregation and evaluation) runs

* through a *bare* loop written by hand, without `blazefl.sim`: a plain
  for-loop at parallelism 1, a `concurrent.futures.ThreadPoolExecutor(p)` with
  one cached model per thread at parallelism p > 1;
* through `Simulation` on `InlineExecutor` (p = 1), `ThreadExecutor(p)` and
  `ProcessExecutor(p)`.

Variants alternate within each repetition (A B C A B C ...). Every round is
timed on its own; round 1 (first touch, worker warm-up) is reported apart from
the median of rounds >= 2. The final global model of every run must equal the
bare loop's bit for bit, which the script asserts: that is what makes the
comparison one of overhead only.

Run from the repository root::

    .venv/bin/python benchmarks/overhead.py            # full run, 3-6 min
    .venv/bin/python benchmarks/overhead.py --quick    # smoke run, < 1 min

Results go to ``benchmarks/results/overhead.{json,md}`` (``overhead-quick.*``
with ``--quick``); ``--update-readme`` also rewrites the table in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import anyio
import structlog
import torch
from anyio.from_thread import start_blocking_portal

import blazefl
from blazefl.contrib.fedavg import (
    FedAvgBaseServerHandler,
    FedAvgClientWork,
    FedAvgDownlinkPackage,
    FedAvgUplinkPackage,
)
from blazefl.core import deserialize_model, serialize_model
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.reproducibility import (
    RNGSuite,
    create_client_rng_suite,
    set_torch_threads,
)
from blazefl.sim import (
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
    gil_enabled,
)
from blazefl.training import train

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
TABLE_START = "<!-- overhead-table:start -->"
TABLE_END = "<!-- overhead-table:end -->"

#: The issue's targets: (numerator, denominator, limit, statistic).
THREAD_TARGET = 1.05  # ThreadExecutor(p) / bare(p), steady state (rounds >= 2)
PROCESS_TARGET = 1.30  # ProcessExecutor(p) / ThreadExecutor(p), rounds >= 2
#: A round-robin cycle is "quiet" when other processes used at most this share
#: of all CPUs while it ran.
QUIET = 0.10


@dataclass(frozen=True)
class Config:
    rounds: int
    clients: int
    sampled: int
    repeats: int
    workers: tuple[int, ...]
    model: str
    epochs: int
    batch_size: int
    lr: float
    samples_per_client: int
    seed: int
    quick: bool


@dataclass
class Run:
    """One variant's run: a fresh server, a fresh executor, `rounds` rounds."""

    variant: str
    repeat: int
    startup_s: float
    rounds_s: list[float]
    close_s: float
    #: Per round: the share of the machine's CPU time that other processes
    #: used while that round-robin cycle ran (None where /proc is missing).
    foreign: list[float | None] = field(default_factory=list)


# -- other load on the machine ---------------------------------------------


class LoadMonitor:
    """How much CPU other processes took: /proc/stat minus this process tree.

    The benchmark's numbers are only as good as the machine is quiet; this
    records, per round-robin cycle, the share of all CPUs that processes other
    than this one and its children (the process workers) used.
    """

    def __init__(self) -> None:
        self.ok = Path("/proc/stat").exists()
        self.hz = os.sysconf("SC_CLK_TCK") if self.ok else 100
        self.cpus = len(os.sched_getaffinity(0)) if self.ok else 1

    @staticmethod
    def _busy() -> int:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # user nice system idle iowait irq softirq steal ...: all but idle+iowait
        ticks = [int(x) for x in fields[:8]]
        return sum(ticks) - ticks[3] - ticks[4]

    @staticmethod
    def _tree(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0
        rest = stat.rsplit(")", 1)[1].split()
        total = int(rest[11]) + int(rest[12])  # utime, stime
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                kids = children.read_text().split()
            except OSError:
                continue
            total += sum(LoadMonitor._tree(int(k)) for k in kids)
        return total

    def sample(self) -> tuple[float, int, int] | None:
        if not self.ok:
            return None
        return time.perf_counter(), self._busy(), self._tree(os.getpid())

    def foreign(
        self, a: tuple[float, int, int] | None, b: tuple[float, int, int] | None
    ) -> float | None:
        if a is None or b is None or b[0] <= a[0]:
            return None
        other = (b[1] - a[1]) - (b[2] - a[2])
        return max(0.0, other / ((b[0] - a[0]) * self.hz * self.cpus))


# -- the workload ----------------------------------------------------------


class Workload:
    """The data set, model zoo and hyper-parameters every variant shares."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.zoo = ModelZoo(input_shape=(1, 12, 12), num_classes=10)
        self.dataset = SyntheticPartitionedDataset(
            cfg.clients, seed=cfg.seed, samples_per_client=cfg.samples_per_client
        )
        self.work = FedAvgClientWork(
            self.zoo,
            cfg.model,
            self.dataset,
            cfg.epochs,
            cfg.batch_size,
            cfg.lr,
        )
        # ProcessExecutor pickles the work with ForkingPickler, which moves every
        # tensor it reaches (the data set) into shared memory *in place*. Do it
        # once up front so every variant reads the same kind of memory.
        ForkingPickler.dumps(self.work)

    def handler(self) -> FedAvgBaseServerHandler:
        cfg = self.cfg
        return FedAvgBaseServerHandler(
            self.zoo,
            cfg.model,
            self.dataset,
            global_round=cfg.rounds,
            num_clients=cfg.clients,
            sample_ratio=cfg.sampled / cfg.clients,
            device="cpu",
            batch_size=cfg.batch_size,
            seed=cfg.seed,
        )


# -- the bare, hand-written loop -------------------------------------------


class Bare:
    """FedAvg by hand: what a user would write without blazefl.sim.

    Per client: the worker's cached model gets the payload's parameters, the
    client's own RNG suite (derived from (seed, cid) on first use and simply
    continued across rounds) shuffles its batches, `train` runs, the model is
    serialised into an uplink. The server loads the uplinks in sampled order
    and evaluates, exactly as `Simulation` makes it do. At parallelism p > 1
    the clients go to a `ThreadPoolExecutor(p)`, one cached model per thread.
    """

    def __init__(self, wl: Workload, parallelism: int) -> None:
        self.wl = wl
        self.parallelism = parallelism

    def start(self) -> None:
        self.handler = self.wl.handler()
        self.suites: dict[int, RNGSuite] = {}
        self.local = threading.local()
        self.pool = (
            ThreadPoolExecutor(self.parallelism) if self.parallelism > 1 else None
        )

    def client(self, cid: int, payload: FedAvgDownlinkPackage) -> FedAvgUplinkPackage:
        cfg, dataset = self.wl.cfg, self.wl.dataset
        model = getattr(self.local, "model", None)
        if model is None:
            with torch.random.fork_rng(devices=[]):
                model = self.local.model = self.wl.zoo.select_model(cfg.model)
        deserialize_model(model, payload.model_parameters)
        loader = dataset.get_dataloader(
            "train", cid, cfg.batch_size, self.suites[cid].torch_cpu
        )
        result = train(model, loader, epochs=cfg.epochs, lr=cfg.lr, device="cpu")
        size = len(dataset.get_dataset("train", cid))  # type: ignore[arg-type]
        return FedAvgUplinkPackage(
            cid,
            serialize_model(model),
            size,
            {"loss": result.loss, "num_samples": size},
        )

    def round(self) -> float:
        handler = self.handler
        start = time.perf_counter()
        cids = handler.sample_clients()
        payload = handler.downlink_package()
        for cid in cids:
            if cid not in self.suites:
                self.suites[cid] = create_client_rng_suite(self.wl.cfg.seed, cid)
        if self.pool is None:
            uploads = [self.client(cid, payload) for cid in cids]
        else:
            uploads = list(self.pool.map(self.client, cids, [payload] * len(cids)))
        for upload in uploads:
            handler.load(upload)
        handler.get_summary()
        return time.perf_counter() - start

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


# -- the coordinator -------------------------------------------------------


class Sim:
    """The same workload through `Simulation` on one executor.

    Each simulation runs in its own event loop on a portal thread, so that all
    variants stay alive side by side and their rounds can be interleaved. The
    round is timed inside the event loop (the portal hop is not counted).
    """

    def __init__(self, wl: Workload, make_executor: Callable[[], Any]) -> None:
        self.wl = wl
        self.make_executor = make_executor

    def start(self) -> None:
        self.stack = ExitStack()
        try:
            self.portal = self.stack.enter_context(start_blocking_portal())
            self.handler = self.wl.handler()
            self.sim = Simulation(
                self.handler,
                self.wl.work,
                executor=self.make_executor(),
                seed=self.wl.cfg.seed,
            )
            self.portal.call(self.sim.start)
        except BaseException:
            # Stop the portal's thread, or the interpreter waits for it forever.
            self.stack.close()
            raise

    async def _timed_round(self) -> float:
        start = time.perf_counter()
        await self.sim.run_round()
        return time.perf_counter() - start

    def round(self) -> float:
        return self.portal.call(self._timed_round)

    def close(self) -> None:
        try:
            self.portal.call(self.sim.aclose)
        finally:
            self.stack.close()


def variants(cfg: Config) -> list[tuple[str, Callable[[Workload], Any]]]:
    out: list[tuple[str, Callable[[Workload], Any]]] = []
    for p in cfg.workers:
        out.append((f"bare({p})", lambda wl, p=p: Bare(wl, p)))
        if p == 1:
            out.append(("inline", lambda wl: Sim(wl, InlineExecutor)))
        out.append(
            (f"threads({p})", lambda wl, p=p: Sim(wl, lambda: ThreadExecutor(p)))
        )
        out.append(
            (f"processes({p})", lambda wl, p=p: Sim(wl, lambda: ProcessExecutor(p)))
        )
    return out


def run_repeat(
    wl: Workload,
    plan: list[tuple[str, Callable[[Workload], Any]]],
    repeat: int,
    reference: list[torch.Tensor],
    monitor: LoadMonitor,
) -> list[Run]:
    """One repetition: start every variant, interleave their rounds, close."""
    cfg = wl.cfg
    live: list[tuple[str, Any]] = []
    runs: dict[str, Run] = {}
    try:
        for name, make in plan:
            variant = make(wl)
            t0 = time.perf_counter()
            variant.start()
            live.append((name, variant))
            runs[name] = Run(name, repeat, time.perf_counter() - t0, [], 0.0)
        for index in range(cfg.rounds):
            # Rotate the order each round so that no variant always follows the
            # same neighbour (e.g. the one that just woke the process workers).
            shift = (index + repeat) % len(live)
            before = monitor.sample()
            for name, variant in live[shift:] + live[:shift]:
                runs[name].rounds_s.append(variant.round())
            foreign = monitor.foreign(before, monitor.sample())
            for run in runs.values():
                run.foreign.append(foreign)
    finally:
        for name, variant in live:
            t0 = time.perf_counter()
            variant.close()
            if name in runs:
                runs[name].close_s = time.perf_counter() - t0
    for name, variant in live:
        final = serialize_model(variant.handler.model)
        if not reference:
            reference.append(final)
        elif not torch.equal(final, reference[0]):
            diff = (final - reference[0]).abs().max().item()
            raise AssertionError(
                f"{name} (repetition {repeat}) ended with a different global "
                f"model than {plan[0][0]}: max abs diff {diff}; the variants do "
                "not run the same arithmetic"
            )
    return [runs[name] for name, _ in plan]


# -- statistics ------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def later(run: Run) -> list[float]:
    """Round times from round 2 on (round 1 if there is only one)."""
    return run.rounds_s[1:] or run.rounds_s


def summarise(runs: list[Run], names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in names:
        rs = [r for r in runs if r.variant == n]
        steady = [t for r in rs for t in later(r)]
        out[n] = {
            "startup_s": statistics.median(r.startup_s for r in rs),
            "round1_s": statistics.median(r.rounds_s[0] for r in rs),
            "steady_s": statistics.median(steady),
            "steady_p25_s": quantile(steady, 0.25),
            "steady_p75_s": quantile(steady, 0.75),
            "steady_min_s": min(steady),
            "close_s": statistics.median(r.close_s for r in rs),
        }
    return out


def paired(
    runs: list[Run],
    num: str,
    den: str,
    first: bool,
    quiet: bool = False,
    op: Callable[[float, float], float] = lambda x, y: x / y,
) -> list[float]:
    """num / den for each (repetition, round) both ran, rounds >= 2 or round 1.

    ``quiet`` keeps only the rounds whose cycle saw little other load.
    """
    a = {r.repeat: r for r in runs if r.variant == num}
    b = {r.repeat: r for r in runs if r.variant == den}
    out: list[float] = []
    for rep in sorted(a.keys() & b.keys()):
        pairs = list(zip(a[rep].rounds_s, b[rep].rounds_s, a[rep].foreign, strict=True))
        chosen = pairs[:1] if first else (pairs[1:] or pairs)
        out.extend(
            op(x, y)
            for x, y, other in chosen
            if not quiet or (other is not None and other <= QUIET)
        )
    return out


def ratios(
    cfg: Config, runs: list[Run], medians: dict[str, Any]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(num: str, den: str, target: float | None) -> None:
        steady = paired(runs, num, den, first=False)
        first = paired(runs, num, den, first=True)
        calm = paired(runs, num, den, first=False, quiet=True)
        extra = paired(runs, num, den, first=False, op=lambda x, y: x - y)
        if not steady:
            return
        row: dict[str, Any] = {
            "ratio": f"{num} / {den}",
            "steady_median": statistics.median(steady),
            "steady_p25": quantile(steady, 0.25),
            "steady_p75": quantile(steady, 0.75),
            "steady_of_minima": medians[num]["steady_min_s"]
            / medians[den]["steady_min_s"],
            "round1_median": statistics.median(first),
            "quiet_median": statistics.median(calm) if calm else None,
            "quiet_count": len(calm),
            "extra_s_median": statistics.median(extra),
            "steady_pairs": steady,
            "target": target,
        }
        if target is not None:
            row["met"] = row["steady_median"] <= target
            row["met_quiet"] = (
                None if row["quiet_median"] is None else row["quiet_median"] <= target
            )
        rows.append(row)

    for p in cfg.workers:
        if p == 1:
            add("inline", "bare(1)", None)
        add(f"threads({p})", f"bare({p})", THREAD_TARGET)
        add(f"processes({p})", f"threads({p})", PROCESS_TARGET)
        add(f"processes({p})", f"bare({p})", None)
    if len(cfg.workers) > 1:
        lo, hi = min(cfg.workers), max(cfg.workers)
        add(f"bare({hi})", f"bare({lo})", None)
        add(f"processes({hi})", f"bare({lo})", None)
    return rows


# -- output ----------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil_enabled(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "blazefl": getattr(blazefl, "__version__", "unknown"),
        "anyio": anyio.__version__ if hasattr(anyio, "__version__") else _dist("anyio"),
        "git": _git(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _git() -> dict[str, Any]:
    """The commit measured, and whether src/ differed from it (read-only git)."""
    root = HERE.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", "src")
    return {"commit": commit, "src_modified": None if status is None else bool(status)}


def _dist(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "unknown"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def markdown(
    cfg: Config,
    info: dict[str, Any],
    names: Sequence[str],
    medians: dict[str, Any],
    rows: list[dict[str, Any]],
    load: dict[str, Any],
) -> str:
    git = info.get("git") or {}
    commit = (git.get("commit") or "unknown commit")[:10]
    if git.get("src_modified"):
        commit += " + local changes to src"
    lines = [
        f"FedAvg, {cfg.model}, {cfg.clients} clients / {cfg.sampled} per round, "
        f"{cfg.samples_per_client} samples per client, {cfg.epochs} local "
        f"epoch(s), batch {cfg.batch_size}; {cfg.rounds} rounds x {cfg.repeats} "
        f"repetitions, rounds interleaved across variants; torch threads 1. "
        f"Machine: {info['cpu_affinity']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}"
        f"{' free-threaded' if info['free_threaded_build'] else ' (GIL)'}, "
        f"torch {info['torch']}, blazefl {info['blazefl']} "
        f"({commit}), {info['date']}.",
        "",
        "| variant | start-up ms | round 1 ms | rounds >= 2: median ms (p25-p75) "
        "| rounds >= 2: min ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for n in names:
        m = medians[n]
        lines.append(
            f"| {n} | {ms(m['startup_s'])} | {ms(m['round1_s'])} | "
            f"{ms(m['steady_s'])} ({ms(m['steady_p25_s'])}-{ms(m['steady_p75_s'])})"
            f" | {ms(m['steady_min_s'])} |"
        )
    lines += [
        "",
        "| ratio | rounds >= 2: paired median (p25-p75) | quiet rounds only (n) "
        "| ratio of minima | extra ms per round | round 1 | target | verdict: "
        "all rounds / quiet |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        target = row["target"]
        verdict = ""
        if target is not None:
            verdict = "PASS" if row["met"] else "MISS"
            if row["met_quiet"] is not None:
                verdict += " / " + ("PASS" if row["met_quiet"] else "MISS")
        limit = "" if target is None else f"<= {target:.2f}"
        quiet = (
            "-"
            if row["quiet_median"] is None
            else f"{row['quiet_median']:.3f} ({row['quiet_count']})"
        )
        lines.append(
            f"| {row['ratio']} | {row['steady_median']:.3f} "
            f"({row['steady_p25']:.3f}-{row['steady_p75']:.3f}) | {quiet} "
            f"| {row['steady_of_minima']:.3f} | {row['extra_s_median'] * 1e3:+.1f} "
            f"| {row['round1_median']:.3f} "
            f"| {limit} | {verdict} |"
        )
    lines += [
        "",
        "Paired ratio: the two variants' times for the same round of the same "
        "repetition (run in the same round-robin cycle), median over all "
        "rounds >= 2 of all repetitions; targets are checked on it. Quiet "
        f"rounds: only cycles in which other processes used <= {QUIET:.0%} of "
        "the CPUs. Ratio of minima: fastest round >= 2 of each, the least "
        "noise-prone estimate. Extra ms: paired median of the difference. "
        "Start-up is not part of any round.",
    ]
    if load["cycles"]:
        lines += [
            "",
            f"Other load during the run: median {load['median']:.0%}, max "
            f"{load['max']:.0%} of all CPUs per cycle; {load['quiet']} of "
            f"{load['cycles']} cycles quiet.",
        ]
    return "\n".join(lines) + "\n"


def update_readme(table: str) -> None:
    text = README.read_text(encoding="utf-8")
    head, sep, rest = text.partition(TABLE_START)
    _, sep2, tail = rest.partition(TABLE_END)
    if not sep or not sep2:
        raise SystemExit(f"{README} has no {TABLE_START} ... {TABLE_END} markers")
    README.write_text(
        f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}", encoding="utf-8"
    )


# -- main ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run")
    parser.add_argument("--clients", type=int, default=30, help="clients in total")
    parser.add_argument("--sampled", type=int, default=10, help="clients per round")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--samples-per-client", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run (< 1 min on 2 cores)"
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="rewrite the table in benchmarks/README.md",
    )
    args = parser.parse_args(argv)
    if args.quick:
        rounds, repeats, epochs = args.rounds or 4, args.repeats or 1, 1
    else:
        rounds, repeats, epochs = args.rounds or 8, args.repeats or 5, args.epochs
    if rounds < 1 or repeats < 1 or not 1 <= args.sampled <= args.clients:
        parser.error("need rounds >= 1, repeats >= 1 and 1 <= sampled <= clients")
    if any(p < 1 for p in args.workers):
        parser.error("--workers must be >= 1")
    cfg = Config(
        rounds=rounds,
        clients=args.clients,
        sampled=args.sampled,
        repeats=repeats,
        workers=tuple(dict.fromkeys(args.workers)),
        model=args.model,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        samples_per_client=args.samples_per_client,
        seed=args.seed,
        quick=args.quick,
    )
    return cfg, args.update_readme


def main(argv: Sequence[str] | None = None) -> int:
    cfg, readme = parse_args(argv)
    # The coordinator logs every event at info; a benchmark keeps warnings only
    # (a GIL re-enabled warning, say) so that printing is not what is measured.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    set_torch_threads(1)
    info = machine_info()
    info["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    wl = Workload(cfg)
    plan = variants(cfg)
    names = [n for n, _ in plan]
    print(
        f"overhead: {', '.join(names)}; {cfg.rounds} rounds x {cfg.repeats} "
        f"repetitions on {info['cpu_affinity']} CPUs",
        flush=True,
    )

    runs: list[Run] = []
    reference: list[torch.Tensor] = []
    monitor = LoadMonitor()
    began = time.perf_counter()
    for repeat in range(cfg.repeats):
        batch = run_repeat(wl, plan, repeat, reference, monitor)
        runs.extend(batch)
        for run in batch:
            print(
                f"  rep {repeat} {run.variant:>14}: start {ms(run.startup_s):>7} ms,"
                f" round 1 {ms(run.rounds_s[0]):>7} ms, rounds>=2 median "
                f"{ms(statistics.median(later(run))):>7} ms",
                flush=True,
            )
    elapsed = time.perf_counter() - began
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    medians = summarise(runs, names)
    rows = ratios(cfg, runs, medians)
    cycles = [
        f for r in runs if r.variant == names[0] for f in r.foreign if f is not None
    ]
    load = {
        "cycles": len(cycles),
        "median": statistics.median(cycles) if cycles else None,
        "max": max(cycles) if cycles else None,
        "quiet": sum(f <= QUIET for f in cycles),
        "quiet_threshold": QUIET,
    }
    table = markdown(cfg, info, names, medians, rows, load)
    print()
    print(table)

    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stem = "overhead-quick" if cfg.quick else "overhead"
    result = {
        "machine": info,
        "config": asdict(cfg),
        "elapsed_s": elapsed,
        "bitwise_identical": True,
        "variants": names,
        "runs": [
            {
                "variant": r.variant,
                "repeat": r.repeat,
                "startup_s": r.startup_s,
                "rounds_s": r.rounds_s,
                "close_s": r.close_s,
                "foreign_load": r.foreign,
            }
            for r in runs
        ],
        "other_load": load,
        "medians": medians,
        "ratios": rows,
        "targets": {
            row["ratio"]: {
                "target": row["target"],
                "met": row["met"],
                "met_quiet_rounds": row["met_quiet"],
            }
            for row in rows
            if row["target"] is not None
        },
    }
    (out_dir / f"{stem}.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8"
    )
    (out_dir / f"{stem}.md").write_text(table, encoding="utf-8")
    if readme:
        update_readme(table)
    print(f"wrote {out_dir / stem}.json/.md in {elapsed:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
