"""What the benchmarks share: one FedAvg workload, the bare loop, the timing loop.

`overhead.py` (one interpreter, one workload) and `matrix.py` (executors x
workers x workloads x interpreters, plus Flower) both measure blazefl.sim
against a *bare* FedAvg loop written by hand that does the same arithmetic.
Everything that makes those numbers comparable lives here, once:

* `Workload`: the data set, model and hyper-parameters every variant shares;
* `Bare`: the hand-written loop (a for-loop, or a thread pool of p workers);
* `Sim`: the same workload through `Simulation` on one executor;
* `run_repeat`: one repetition, every variant's rounds interleaved in a
  rotating order, the final models checked bit for bit against the first;
* `LoadMonitor`: how much CPU *other* processes took while a cycle ran;
* statistics over rounds >= 2 (`summarise`, `paired`), `machine_info`,
  and `update_readme` for the marked tables in ``benchmarks/README.md``.

Not a package: the scripts import it from their own directory.
"""

from __future__ import annotations

import datetime
import json
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
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import anyio
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
from blazefl.data import SyntheticCIFAR10, SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.reproducibility import RNGSuite, create_client_rng_suite
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

#: The issue's targets, checked on the paired median of rounds >= 2.
THREAD_TARGET = 1.05  # ThreadExecutor(p) / bare(p)
PROCESS_TARGET = 1.30  # ProcessExecutor(p) / ThreadExecutor(p)
#: A round-robin cycle is "quiet" when other processes used at most this share
#: of all CPUs while it ran.
QUIET = 0.10


@dataclass(frozen=True)
class Config:
    """One FedAvg workload and how often to time it.

    ``dataset`` picks the data and input shape: "synthetic" is
    `SyntheticPartitionedDataset` (1x12x12), "cifar" is `SyntheticCIFAR10`
    (3x32x32, for "resnet18"). ``eval_batch_size`` is the server's evaluation
    batch (None: ``batch_size``); it changes no client's arithmetic.
    """

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
    dataset: str = "synthetic"
    test_samples: int = 1000
    eval_batch_size: int | None = None


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


def config_from_json(text: str) -> Config:
    """A `Config` from ``json.dumps(asdict(cfg))``: how cells receive theirs."""
    data = json.loads(text)
    data["workers"] = tuple(data["workers"])
    return Config(**data)


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
        # utime, stime, and cutime, cstime: the time of children that exited
        # and were waited for (a finished child run still counts as ours).
        total = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
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
        self.dataset: SyntheticPartitionedDataset
        if cfg.dataset == "cifar":
            self.zoo = ModelZoo(input_shape=(3, 32, 32), num_classes=10)
            self.dataset = SyntheticCIFAR10(
                cfg.clients,
                seed=cfg.seed,
                samples_per_client=cfg.samples_per_client,
                test_samples=cfg.test_samples,
            )
        elif cfg.dataset == "synthetic":
            self.zoo = ModelZoo(input_shape=(1, 12, 12), num_classes=10)
            self.dataset = SyntheticPartitionedDataset(
                cfg.clients,
                seed=cfg.seed,
                samples_per_client=cfg.samples_per_client,
                test_samples=cfg.test_samples,
            )
        else:
            raise ValueError(f"unknown dataset {cfg.dataset!r}")
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
            batch_size=cfg.eval_batch_size or cfg.batch_size,
            seed=cfg.seed,
        )


# -- the bare, hand-written loop -------------------------------------------


class BareLoop:
    """A round by hand, the part every bare loop shares.

    Each sampled client's `RNGSuite` is derived from (seed, cid) on first use
    and simply continued across rounds; the clients run in a for-loop at
    parallelism 1, on a `ThreadPoolExecutor(p)` above; the uploads are loaded
    in sampled order; `after_round` runs inside the timed round. Subclasses
    give `new_handler` and `client`.
    """

    def __init__(self, parallelism: int, seed: int) -> None:
        self.parallelism = parallelism
        self.seed = seed

    def new_handler(self) -> Any:
        raise NotImplementedError

    def client(self, cid: int, payload: Any) -> Any:
        raise NotImplementedError

    def after_round(self) -> None:
        """What the round does after loading the uploads (nothing)."""

    def start(self) -> None:
        self.handler = self.new_handler()
        self.suites: dict[int, RNGSuite] = {}
        self.pool = (
            ThreadPoolExecutor(self.parallelism) if self.parallelism > 1 else None
        )

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
        self.after_round()
        return time.perf_counter() - start

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class Bare(BareLoop):
    """FedAvg by hand: what a user would write without blazefl.sim.

    Per client: the worker's cached model gets the payload's parameters, the
    client's own RNG suite (derived from (seed, cid) on first use and simply
    continued across rounds) shuffles its batches, `train` runs, the model is
    serialised into an uplink. The server loads the uplinks in sampled order
    and evaluates, exactly as `Simulation` makes it do. At parallelism p > 1
    the clients go to a `ThreadPoolExecutor(p)`, one cached model per thread.
    """

    def __init__(self, wl: Workload, parallelism: int) -> None:
        super().__init__(parallelism, wl.cfg.seed)
        self.wl = wl

    def new_handler(self) -> FedAvgBaseServerHandler:
        return self.wl.handler()

    def start(self) -> None:
        super().start()
        self.local = threading.local()

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

    def after_round(self) -> None:
        self.handler.get_summary()


# -- the coordinator -------------------------------------------------------


class SimRunner:
    """A `Simulation` (handler, work, executor) to be timed round by round.

    Each simulation runs in its own event loop on a portal thread, so that all
    variants stay alive side by side and their rounds can be interleaved. The
    round is timed inside the event loop (the portal hop is not counted).
    """

    def __init__(
        self,
        make_handler: Callable[[], Any],
        work: Any,
        make_executor: Callable[[], Any],
        seed: int,
    ) -> None:
        self.make_handler, self.work = make_handler, work
        self.make_executor, self.seed = make_executor, seed

    def start(self) -> None:
        self.stack = ExitStack()
        try:
            self.portal = self.stack.enter_context(start_blocking_portal())
            self.handler = self.make_handler()
            self.sim = Simulation(
                self.handler, self.work, executor=self.make_executor(), seed=self.seed
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


class Sim(SimRunner):
    """The shared workload through `Simulation` on one executor."""

    def __init__(self, wl: Workload, make_executor: Callable[[], Any]) -> None:
        super().__init__(wl.handler, wl.work, make_executor, wl.cfg.seed)
        self.wl = wl


def plan_variants(
    workers: Sequence[int],
    bare: Callable[[int], Any],
    sim: Callable[[Callable[[], Any]], Any],
) -> list[tuple[str, Any]]:
    """bare(p), inline (at p = 1), threads(p), processes(p) for each p, in order.

    ``bare(p)`` and ``sim(make_executor)`` return what the plan holds for the
    variant (a factory of the variant, in both scripts that use this).
    """
    out: list[tuple[str, Any]] = []
    for p in workers:
        out.append((f"bare({p})", bare(p)))
        if p == 1:
            out.append(("inline", sim(InlineExecutor)))
        out.append((f"threads({p})", sim(lambda p=p: ThreadExecutor(p))))
        out.append((f"processes({p})", sim(lambda p=p: ProcessExecutor(p))))
    return out


def variants(cfg: Config) -> list[tuple[str, Callable[[Workload], Any]]]:
    return plan_variants(
        cfg.workers,
        lambda p: lambda wl: Bare(wl, p),
        lambda make: lambda wl: Sim(wl, make),
    )


def interleave(
    plan: Sequence[tuple[str, Callable[[], Any]]],
    rounds: int,
    repeat: int,
    monitor: LoadMonitor,
) -> tuple[dict[str, Run], list[tuple[str, Any]]]:
    """Start every variant of ``plan``, run their rounds interleaved, close them.

    The order rotates each round, so that no variant always follows the same
    neighbour (e.g. the one that just woke the process workers). Returns the
    runs by name and the closed variants (their handlers hold the results).
    """
    live: list[tuple[str, Any]] = []
    runs: dict[str, Run] = {}
    try:
        for name, make in plan:
            variant = make()
            t0 = time.perf_counter()
            variant.start()
            live.append((name, variant))
            runs[name] = Run(name, repeat, time.perf_counter() - t0, [], 0.0)
        for index in range(rounds):
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
    return runs, live


def run_repeat(
    wl: Workload,
    plan: list[tuple[str, Callable[[Workload], Any]]],
    repeat: int,
    reference: list[torch.Tensor],
    monitor: LoadMonitor,
) -> list[Run]:
    """One repetition: start every variant, interleave their rounds, close."""
    makers = [(name, lambda make=make: make(wl)) for name, make in plan]
    runs, live = interleave(makers, wl.cfg.rounds, repeat, monitor)
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


# -- machine and output ----------------------------------------------------


def cpu_model(default: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo, else ``default`` (else
    ``platform.processor()``)."""
    model = (platform.processor() or "") if default is None else default
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def run_info(load_average: bool = False) -> dict[str, Any]:
    """The short machine record of the memory and scale benchmarks: CPUs,
    (the load average,) Python, torch, blazefl, the commit, when."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE.parent, capture_output=True,
            text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        commit = ""
    info: dict[str, Any] = {"cpus": os.cpu_count()}
    if load_average:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return {
        **info,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "blazefl": blazefl.__version__,
        "commit": commit,
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_info() -> dict[str, Any]:
    model = cpu_model()
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


def update_readme(table: str, start: str, end: str) -> None:
    """Replace what lies between the markers ``start`` and ``end`` in README.md."""
    text = README.read_text(encoding="utf-8")
    head, sep, rest = text.partition(start)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise SystemExit(f"{README} has no {start} ... {end} markers")
    README.write_text(f"{head}{start}\n{table}{end}{tail}", encoding="utf-8")


# -- peak memory -----------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """Peak resident memory of one variant run alone (all its processes)."""

    variant: str
    peak_rss_mib: float | None
    #: The most processes seen at once (1 + process workers).
    processes: int
    #: RSS of the process when it forked: the interpreter with torch imported.
    base_rss_mib: float | None
    ok: bool


def measure_memory(
    cfg: Config, name: str, make: Callable[[Workload], Any], rounds: int
) -> Memory:
    """Run one variant alone in a forked child and sample its process tree.

    The child inherits the interpreter with torch imported, builds its own
    workload (data set and all), runs ``rounds`` rounds and exits: what a
    fresh run of that variant holds. `procmon.TreeMonitor` sums the RSS of the
    child and every process it starts (process workers, their resource
    tracker). The sampler thread runs here, in the parent, so it steals no
    time from the child's interpreter.

    Call it before this process builds a `Workload` or starts any thread or
    process executor: fork copies only the calling thread, and a child would
    otherwise inherit the parent's shared-memory bookkeeping (torch's file
    descriptor server thread, multiprocessing's resource tracker) half-alive.
    """
    from procmon import TreeMonitor, tree_sample

    base = tree_sample(os.getpid())
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: run the variant, then leave without cleanup hooks
        code = 1
        try:
            variant = make(Workload(cfg))
            variant.start()
            try:
                for _ in range(rounds):
                    variant.round()
            finally:
                variant.close()
            code = 0
        except BaseException as exc:  # report, never return into the parent's code
            print(f"memory run of {name} failed: {exc!r}", file=sys.stderr)
        finally:
            os._exit(code)
    with TreeMonitor(root=pid, interval=0.05) as monitor:
        _, status = os.waitpid(pid, 0)
    peak = max((s.rss_mib for s in monitor.samples if s.processes), default=None)
    return Memory(
        variant=name,
        peak_rss_mib=peak,
        processes=max((s.processes for s in monitor.samples), default=0),
        base_rss_mib=None if base is None else base.rss_mib,
        ok=os.waitstatus_to_exitcode(status) == 0,
    )
