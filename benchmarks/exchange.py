"""An exchange-heavy FedAvg round: blazefl vs a hand-written 2-thread loop.

The workload of issue #15 (item 3): a 10.8M-parameter wide CNN (conv 3→32→64,
fc 1600→4096→1024→10, no BatchNorm), 20 clients x 100 samples of 3x32x32
(`SyntheticCIFAR10`), every client every round, batch 50, 1 local epoch, 2
clients at a time, 1 torch thread each. Each round moves 20 updates of 43 MB
and averages them, so the server's mean and the result transport weigh as
much as training does.

Side by side, in one process, every variant alive at once, one round of
each per cycle in a rotating order (`harness.LoadMonitor` notes how busy
other processes kept the machine in each cycle):

* ``loop``: by hand, a `ThreadPoolExecutor(2)`; each thread loads the
  broadcast into its model, trains the client (`blazefl.training.train`, the
  client's own RNG suite shuffling its batches), serialises the model; then
  the weighted mean in the model's dtype (Σ nₖ·xₖ in slot order, / Σ nₖ);
* ``threads`` / ``processes``: `Simulation` with `FederatedServer(FedAvg())`
  on `ThreadExecutor(2)` / `ProcessExecutor(2)`, the mean folded while the
  clients train (the default);
* ``threads-float64`` / ``processes-float64``: the same with
  ``WeightedMean(dtype="float64")`` (``--aggregate-dtype float64``), the
  round collected first: the arithmetic before folding.

Reported: the median round time over cycles 2+ (the quiet ones, when
enough are), its ratio to the loop's, and the median of the per-cycle
ratios (each variant's round over the loop's round of the same cycle);
target ≤ 1.05 for the folded ones. The folded
variants must end on the loop's model bit for bit, and the float64 ones on
each other's (checked, or the script fails). Writes
``benchmarks/results/exchange.{json,md}``.

    python benchmarks/exchange.py                # the measurement
    python benchmarks/exchange.py --rounds 3     # a quick look
    python benchmarks/exchange.py --profile processes --rounds 4
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import math
import pstats
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import structlog
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from anyio.from_thread import start_blocking_portal  # noqa: E402
from harness import QUIET, LoadMonitor, machine_info  # noqa: E402

from blazefl.algorithms import (  # noqa: E402
    FedAvg,
    FederatedClient,
    FederatedServer,
    WeightedMean,
)
from blazefl.core import deserialize_model, serialize_model  # noqa: E402
from blazefl.data import SyntheticCIFAR10  # noqa: E402
from blazefl.models import build_model  # noqa: E402
from blazefl.reproducibility import create_client_rng_suite  # noqa: E402
from blazefl.sim import ProcessExecutor, Simulation, ThreadExecutor  # noqa: E402
from blazefl.training import train  # noqa: E402

CLIENTS = 20
SAMPLES = 100
BATCH = 50
EPOCHS = 1
LR = 0.05
WORKERS = 2
SEED = 0
TARGET = 1.05


class WideCNN(nn.Module):
    """conv 3→32→64 (5x5, 2x2 max-pool each), fc 1600→4096→1024→10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5)
        self.conv2 = nn.Conv2d(32, 64, 5)
        self.fc1 = nn.Linear(1600, 4096)
        self.fc2 = nn.Linear(4096, 1024)
        self.fc3 = nn.Linear(1024, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class WideZoo:
    """The model selector (picklable: worker processes build it too)."""

    def select_model(self, name: str) -> nn.Module:
        return WideCNN()


def dataset() -> SyntheticCIFAR10:
    return SyntheticCIFAR10(CLIENTS, seed=SEED, samples_per_client=SAMPLES)


# -- the hand-written loop ---------------------------------------------------


class Loop:
    """FedAvg by hand on two threads, then the model-dtype mean."""

    def __init__(self, data: SyntheticCIFAR10) -> None:
        self.data = data

    def start(self) -> None:
        self.params = serialize_model(build_model(WideZoo(), "wide", SEED))
        self.suites = {c: create_client_rng_suite(SEED, c) for c in range(CLIENTS)}
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(WORKERS)

    def client(self, cid: int) -> tuple[torch.Tensor, int]:
        model = getattr(self.local, "model", None)
        if model is None:
            model = self.local.model = build_model(WideZoo(), "wide")
        deserialize_model(model, self.params)
        loader = self.data.get_dataloader(
            "train", cid, BATCH, self.suites[cid].torch_cpu
        )
        train(model, loader, epochs=EPOCHS, lr=LR, device="cpu")
        return serialize_model(model), len(self.data.get_dataset("train", cid))

    def round(self) -> float:
        start = time.perf_counter()
        uploads = list(self.pool.map(self.client, range(CLIENTS)))
        acc = uploads[0][0].mul(uploads[0][1])
        for model, n in uploads[1:]:
            acc.add_(model, alpha=n)
        self.params = acc.div_(math.fsum(n for _, n in uploads))
        return time.perf_counter() - start

    def close(self) -> None:
        self.pool.shutdown(wait=True)


# -- blazefl -----------------------------------------------------------------


class Blazefl:
    """`Simulation` of `FederatedServer(FedAvg())` on one executor, kept alive
    in its own event loop (a portal thread) so that rounds interleave."""

    def __init__(
        self, data: SyntheticCIFAR10, make_executor: Callable[[], Any], dtype: str
    ) -> None:
        self.data = data
        self.make_executor = make_executor
        self.dtype = dtype

    def start(self) -> None:
        self.server = FederatedServer(
            FedAvg(),
            WideZoo(),
            "wide",
            dataset=self.data,
            num_clients=CLIENTS,
            rounds=1000,
            seed=SEED,
            aggregator=WeightedMean(dtype=self.dtype),  # type: ignore[arg-type]
        )
        client = FederatedClient(
            FedAvg(), WideZoo(), "wide", self.data, epochs=EPOCHS, batch_size=BATCH,
            lr=LR,
        )  # fmt: skip
        self.sim = Simulation(
            self.server,
            client,
            executor=self.make_executor(),
            seed=SEED,
            evaluate_every=0,
        )
        self.stack = ExitStack()
        self.portal = self.stack.enter_context(start_blocking_portal())
        self.portal.call(self.sim.start)

    async def _round(self, profile: cProfile.Profile | None) -> float:
        start = time.perf_counter()
        if profile is not None:
            profile.enable()  # on the event loop's thread: the coordinator
        try:
            await self.sim.run_round()
        finally:
            if profile is not None:
                profile.disable()
        return time.perf_counter() - start

    def round(self, profile: cProfile.Profile | None = None) -> float:
        return self.portal.call(self._round, profile)

    @property
    def params(self) -> torch.Tensor:
        return self.server.params

    def close(self) -> None:
        try:
            self.portal.call(self.sim.aclose)
        finally:
            self.stack.close()


def variants(data: SyntheticCIFAR10) -> dict[str, Any]:
    return {
        "loop": Loop(data),
        "threads": Blazefl(data, lambda: ThreadExecutor(WORKERS), "model"),
        "processes": Blazefl(data, lambda: ProcessExecutor(WORKERS), "model"),
        "threads-float64": Blazefl(data, lambda: ThreadExecutor(WORKERS), "float64"),
        "processes-float64": Blazefl(data, lambda: ProcessExecutor(WORKERS), "float64"),
    }


def measure(rounds: int) -> dict[str, Any]:
    """Every variant alive side by side; each cycle runs one round of each, in
    a rotating order; cycle 1 (start-up) is left out of the medians, and so
    are cycles other processes were busy in when enough quiet ones remain."""
    torch.set_num_threads(1)
    machine = machine_info()
    data = dataset()
    running = variants(data)
    names = list(running)
    times: dict[str, list[float]] = {name: [] for name in names}
    foreign: list[float | None] = []
    monitor = LoadMonitor()
    for variant in running.values():
        variant.start()
    try:
        for cycle in range(rounds):
            order = names[cycle % len(names) :] + names[: cycle % len(names)]
            before = monitor.sample()
            for name in order:
                times[name].append(running[name].round())
            foreign.append(monitor.foreign(before, monitor.sample()))
            print(
                f"cycle {cycle + 1}: "
                + ", ".join(f"{n} {times[n][-1]:.3f}" for n in names)
                + f"; foreign CPU {foreign[-1]}",
                flush=True,
            )
        finals = {name: v.params.clone() for name, v in running.items()}
    finally:
        for variant in running.values():
            variant.close()
    for name in ("threads", "processes"):
        if not torch.equal(finals[name], finals["loop"]):
            raise SystemExit(f"{name} did not end on the loop's model bit for bit")
    if not torch.equal(finals["threads-float64"], finals["processes-float64"]):
        raise SystemExit("the float64 variants differ")
    steady = list(range(1, rounds))
    quiet = [c for c in steady if (foreign[c] or 0.0) <= QUIET]
    kept = quiet if len(quiet) >= max(3, len(steady) // 2) else steady
    medians = {n: statistics.median(times[n][c] for c in kept) for n in names}
    paired = {
        n: statistics.median(times[n][c] / times["loop"][c] for c in kept)
        for n in names
    }
    return {
        "workload": {
            "model": "wide CNN (conv 3-32-64, fc 1600-4096-1024-10)",
            "parameters": sum(p.numel() for p in WideCNN().parameters()),
            "clients": CLIENTS,
            "samples_per_client": SAMPLES,
            "batch_size": BATCH,
            "epochs": EPOCHS,
            "workers": WORKERS,
            "torch_threads": 1,
            "rounds": rounds,
        },
        "median_round_s": medians,
        "ratio_to_loop": {n: m / medians["loop"] for n, m in medians.items()},
        "paired_ratio_to_loop": paired,
        "rounds_s": times,
        "foreign_cpu_per_cycle": foreign,
        "cycles_kept": [c + 1 for c in kept],
        "target": TARGET,
        "bitwise": "threads and processes end on the loop's model; the float64 "
        "variants on each other's",
        "machine": machine,
    }


def profile(name: str, rounds: int, out: Path) -> None:
    """Where the coordinator's event-loop thread spends a round of ``name``
    (cProfile of rounds 2+), written to results/exchange_profile_NAME.txt."""
    torch.set_num_threads(1)
    variant = variants(dataset())[name]
    if not isinstance(variant, Blazefl):
        raise SystemExit(f"--profile takes a blazefl variant, not {name!r}")
    profiler = cProfile.Profile()
    variant.start()
    try:
        variant.round()
        seconds = [variant.round(profiler) for _ in range(rounds - 1)]
    finally:
        variant.close()
    text = io.StringIO()
    text.write(
        f"{name}: rounds 2..{rounds} took {', '.join(f'{t:.3f}' for t in seconds)} "
        "s; cProfile of the coordinator's event-loop thread (epoll: waiting)\n"
    )
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
    (out / f"exchange_profile_{name}.txt").write_text(text.getvalue())
    print(text.getvalue())


def markdown(result: dict[str, Any]) -> str:
    w, m = result["workload"], result["machine"]
    rows = [
        "| variant | median s/round | vs loop | paired: median of per-cycle ratios |",
        "|---|---:|---:|---:|",
    ]
    for name, median in result["median_round_s"].items():
        ratio = result["ratio_to_loop"][name]
        pair = result["paired_ratio_to_loop"][name]
        rows.append(f"| {name} | {median:.3f} | {ratio:.2f}x | {pair:.2f}x |")
    return "\n".join(
        [
            "# Exchange-heavy FedAvg: blazefl vs a hand-written loop",
            "",
            f"`python benchmarks/exchange.py --rounds {w['rounds']}`: "
            f"{w['model']}, {w['parameters']:,} parameters; "
            f"{w['clients']} clients x {w['samples_per_client']} samples of "
            f"3x32x32, all every round, batch {w['batch_size']}, {w['epochs']} "
            f"epoch, {w['workers']} clients at a time, torch threads 1. "
            "`threads`/`processes` fold the model-dtype mean while clients "
            "train; the `-float64` ones collect first (`--aggregate-dtype "
            f"float64`). Target: {result['target']}x the loop.",
            "",
            *rows,
            "",
            f"Median of cycles {result['cycles_kept']} (each cycle: one round "
            "of every variant, in a rotating order; cycle 1 is start-up). "
            f"Checked: {result['bitwise']}. Machine: {m['cpu_count']} CPUs "
            f"({m['cpu_model']}), Python {m['python']}, torch {m['torch']}, "
            f"load average at start {m['loadavg_start']}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--profile",
        metavar="VARIANT",
        help="instead: profile the coordinator thread of one blazefl variant",
    )
    args = parser.parse_args()
    # As `blazefl run` does: warnings only (an info line per client costs
    # milliseconds of the coordinator's thread, which the loop does not pay).
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        profile(args.profile, args.rounds, args.out)
        return
    result = measure(args.rounds)
    (args.out / "exchange.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "exchange.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
