"""Where one steady round's time goes, by category, for a workload and executor.

Each run (``--run workload:executor[:workers]``) is a fresh interpreter that
builds a `Simulation`, runs a warm-up round (first touch, worker start-up),
one steady round without the sampler (its wall time is the reference), then
``--rounds`` steady rounds under `profiling.Sampler` (every thread of the
coordinator's process and, with ``processes``, every worker process), and
last, unless ``--no-cprofile``, one more round under ``cProfile`` on the main
thread (the coordinator's own functions, deterministically; a table of the top
ones). The sampled time is charged to categories a reader knows (local
training, data loading, RNG suite, serialisation / payload transport,
aggregation, server evaluation, coordinator, other, idle); see
`profiling.classify` for which frames make which.

Workloads:

* ``exchange``: FedAvg on a 10.8M-parameter wide CNN (conv 3→32→64, fc
  1600→4096→1024→10, no BatchNorm), 20 clients x 100 samples of 3x32x32,
  batch 50, 1 local epoch, all 20 clients every round: a round is dominated
  by moving and averaging 43 MB models;
* ``logreg``: `benchmarks/cohort.py`'s many-light-clients workload (LEAF
  Synthetic(1,1), logistic regression 60→10, 1,000 clients a round, 20-50
  samples each, batch 10), built by cohort.py's own functions.

torch runs one intra-op thread per worker (and on the coordinator). Server
evaluation runs every round (``--evaluate-every``, the `Simulation` default).

    python benchmarks/profile_round.py --label before      # the four default runs
    python benchmarks/profile_round.py --label after --run exchange:processes:2
    python benchmarks/profile_round.py --tiny --label smoke --out /tmp/p

Writes ``<out>/profile_round-<label>.{json,md}`` (default out:
benchmarks/results); runs already in those files under other names are kept.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import torch
from torch import nn

from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.sim import (
    CohortExecutor,
    InlineExecutor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
    configure_logging,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cohort
import profiling
from harness import machine_info

if __name__ == "__mp_main__":  # a spawned worker process of this script
    profiling.start_worker_sampler()

HERE = Path(__file__).resolve().parent
SEED = 7
DEFAULT_RUNS = (
    "exchange:threads:2",
    "exchange:processes:2",
    "logreg:cohort:1",
    "logreg:threads:2",
)
EXECUTORS = ("inline", "threads", "processes", "cohort")


class WideCNN(nn.Module):
    """conv 3→32→64 (5x5, max-pool 2), fc 1600→4096→1024→10; no BatchNorm."""

    def __init__(self, hidden: tuple[int, int] = (4096, 1024)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(1600, hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
            nn.Linear(hidden[1], 10),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


class WideSelector:
    """The exchange workload's model (``tiny``: a narrow head, for tests)."""

    def __init__(self, tiny: bool = False) -> None:
        self.hidden = (32, 16) if tiny else (4096, 1024)

    def select_model(self, name: str) -> nn.Module:
        return WideCNN(self.hidden)


def build(
    spec: dict[str, Any], args: argparse.Namespace
) -> tuple[Any, Any, dict[str, Any]]:
    """(server, client work, what the record says of it) of the workload."""
    rounds = 3 + args.rounds
    if spec["workload"] == "exchange":
        clients, samples, batch = (4, 20, 10) if args.tiny else (20, 100, 50)
        data: Any = SyntheticPartitionedDataset(
            clients, seed=SEED, image_shape=(3, 32, 32),
            samples_per_client=samples, test_samples=200 if args.tiny else 1000,
        )  # fmt: skip
        selector: Any = WideSelector(args.tiny)
        model, lr = "wide_cnn", 0.05
    else:
        data = cohort.dataset("logreg")
        clients = int(cohort.WORKLOADS["logreg"]["clients"])  # type: ignore[call-overload]
        selector, model = cohort.Selector(data.input_shape), "logreg"
        batch, lr = cohort.BATCH, cohort.LR
    ratio = 0.02 if args.tiny and spec["workload"] == "logreg" else 1.0
    server = FederatedServer(
        FedAvg(), selector, model, dataset=data, num_clients=clients,
        rounds=rounds, sample_ratio=ratio, seed=SEED,
    )  # fmt: skip
    client = FederatedClient(FedAvg(), selector, model, data, batch_size=batch, lr=lr)
    params = sum(p.numel() for p in selector.select_model(model).parameters())
    about = {"clients_per_round": server.clients_per_round, "batch": batch,
             "params": params}  # fmt: skip
    return server, client, about


def executor_of(spec: dict[str, Any]) -> Any:
    kind, workers = spec["executor"], spec["workers"]
    if kind == "inline":
        return InlineExecutor()
    if kind == "threads":
        return ThreadExecutor(workers)
    if kind == "processes":
        return ProcessExecutor(workers)
    return CohortExecutor(workers)


def parse_run(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("exchange", "logreg"):
        raise SystemExit(
            f"--run must be workload:executor[:workers] with workload exchange or "
            f"logreg, got {text!r}"
        )
    if parts[1] not in EXECUTORS:
        raise SystemExit(f"--run executor must be one of {EXECUTORS}, got {parts[1]!r}")
    workers = int(parts[2]) if len(parts) == 3 else 1
    if workers < 1:
        raise SystemExit(f"--run workers must be >= 1, got {workers}")
    name = f"{parts[0]}/{parts[1]}" + ("" if parts[1] == "inline" else f"({workers})")
    return {"workload": parts[0], "executor": parts[1], "workers": workers,
            "name": name}  # fmt: skip


def _cprofile_top(prof: cProfile.Profile, rounds: int, count: int = 12) -> list[Any]:
    stats = pstats.Stats(prof)
    rows = []
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (path, _line, func), (_, calls, tottime, cumtime, _) in entries:
        where = profiling.where_text(path, func)
        rows.append([where, calls // rounds, tottime / rounds, cumtime / rounds])
    rows.sort(key=lambda r: -r[2])
    return rows[:count]


def run_one(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One run in this interpreter; returns its record."""
    configure_logging("console", level="warning")
    torch.set_num_threads(1)
    control = Path(tempfile.mkdtemp(prefix="profile_round-"))
    marker = control / "active"
    os.environ["PROFILE_ROUND_MARKER"] = str(marker)  # read by spawned workers
    os.environ["PROFILE_ROUND_INTERVAL"] = str(args.interval_ms / 1e3)
    load = os.getloadavg()
    server, client, about = build(spec, args)
    executor = executor_of(spec)
    sim = Simulation(
        server, client, executor=executor, seed=SEED,
        evaluate_every=args.evaluate_every,
    )  # fmt: skip
    sampler = profiling.Sampler(args.interval_ms / 1e3).start()
    walls: dict[str, Any] = {}
    prof = cProfile.Profile()

    async def timed() -> float:
        start = time.perf_counter()
        result = await sim.run_round()
        assert not result.failures, result.failures
        return time.perf_counter() - start

    async def go() -> list[dict[str, Any]]:
        async with sim:
            walls["warm_up"] = await timed()
            walls["steady_unsampled"] = await timed()
            pids = list(getattr(executor, "pids", []))
            marker.touch()
            sampler.active = True
            start = time.perf_counter()
            for _ in range(args.rounds):
                await timed()
            walls["sampled_per_round"] = (time.perf_counter() - start) / args.rounds
            sampler.active = False
            marker.unlink()
            dumps = [control / f"worker-{pid}.json" for pid in pids]
            for _ in range(600):  # each worker writes its file within 30 s
                if all(d.exists() for d in dumps):
                    break
                await anyio.sleep(0.05)
            workers = [json.loads(d.read_text()) for d in dumps if d.exists()]
            if len(workers) != len(pids):
                raise RuntimeError(
                    f"{len(pids) - len(workers)} workers sent no profile"
                )
            if not args.no_cprofile:
                prof.enable()
                walls["cprofile_round"] = await timed()
                prof.disable()
            return workers

    workers = anyio.run(go)
    sampler.stop()
    parent = sampler.report()
    roles = parent["roles"]
    details = parent["details"]
    for worker in workers:
        for cats in worker["roles"].values():
            profiling.merge_roles(roles, "worker processes", cats)
        details += worker["details"]
    return {
        **spec,
        "config": {
            "rounds_sampled": args.rounds,
            "interval_ms": args.interval_ms,
            "tiny": args.tiny,
            "evaluate_every": args.evaluate_every,
            **about,
        },
        "loadavg_start": load,
        "wall_seconds": walls,
        "per_round": profiling.per_round(roles, args.rounds),
        "details": profiling.top_details(details, args.rounds),
        "threads_counted": parent["threads_counted"],
        "worker_processes": len(workers),
        "cprofile_main_thread": [] if args.no_cprofile else _cprofile_top(prof, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", help="workload:executor[:workers]")
    ap.add_argument("--label", default="before")
    ap.add_argument("--rounds", type=int, default=1, help="steady rounds sampled")
    ap.add_argument("--interval-ms", type=float, default=5.0)
    ap.add_argument("--evaluate-every", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="a small workload (tests)")
    ap.add_argument("--no-cprofile", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument(
        "--summary",
        action="store_true",
        help="print the runs of --label's results side by side, run nothing",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    if args.summary:
        report = json.loads((args.out / f"profile_round-{args.label}.json").read_text())
        print(profiling.summary(report))
        return
    if args.one:
        args.record.write_text(json.dumps(run_one(parse_run(args.one), args)))
        return
    specs = [parse_run(r) for r in (args.run or DEFAULT_RUNS)]
    passed = [a for a in sys.argv[1:] if a not in {"--run", *(args.run or ())}]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, text in zip(specs, args.run or DEFAULT_RUNS, strict=True):
            record = Path(tmp) / "record.json"
            command = [sys.executable, __file__, *passed, "--one", text,
                       "--record", str(record)]  # fmt: skip
            subprocess.run(command, check=True)
            records.append(json.loads(record.read_text()))
            records[-1]["command"] = command_of(spec, args)
            print(profiling.markdown_run(records[-1], command_of(spec, args)))
    write(records, args)


def command_of(spec: dict[str, Any], args: argparse.Namespace) -> str:
    text = f"{spec['workload']}:{spec['executor']}"
    if spec["executor"] != "inline":
        text += f":{spec['workers']}"
    extra = " --tiny" if args.tiny else ""
    return (
        f"python benchmarks/profile_round.py --label {args.label} --run {text}{extra}"
    )


def write(records: list[dict[str, Any]], args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"profile_round-{args.label}.json"
    old = json.loads(path.read_text()) if path.exists() else {"runs": []}
    new = {r["name"] for r in records}
    runs = [r for r in old["runs"] if r["name"] not in new] + records
    report = {"label": args.label, "machine": machine_info(), "runs": runs}
    path.write_text(json.dumps(report, indent=1))
    md = [f"# profile_round: {args.label}", "", profiling.machine_line(report), ""]
    for run in runs:
        md += [profiling.markdown_run(run, run["command"]), ""]
    path.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
