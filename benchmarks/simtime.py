"""Simulated time: FedBuff against synchronous FedAvg on heavy-tailed devices,
and the coordinator's real-time cost of the virtual clock.

Part 1, accuracy against virtual time. The built-in synthetic data (40
clients, the ``cnn`` model), device profiles from `generate_profiles` with a
heavy tail (compute σ = 1.5: the slowest tenth of devices ~50x slower than the
fastest tenth). Three runs, each with the same number of client updates:

* ``fedavg-sync``: FedAvg, 10 clients a round, each round waits for its
  slowest client;
* ``fedavg-overselect``: FedAvg, 30% over-selection (13 sampled, the first 10
  to finish kept);
* ``fedbuff``: FedBuff, 10 clients in flight, a server update every 5 arrivals
  (twice as many server updates as rounds above, each of half as many
  clients).

Each run evaluates after every round / server update; the table gives the
test accuracy reached within fixed virtual-time budgets and the virtual time
to reach a target accuracy.

Part 2, overhead of the clock. The same synchronous FedAvg, with and without
profiles (no deadline, nothing dropped, so the training is bitwise the same,
which the script asserts), timed round by round on ``ThreadExecutor(2)``,
alternating the two; the ratio is median(timed) / median(plain) over rounds
>= 2 (target <= 1.05).

Run from the repository root (about 2-4 minutes; ``--quick`` < 1 minute)::

    .venv/bin/python benchmarks/simtime.py

Results: ``benchmarks/results/simtime.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import structlog
import torch

from blazefl.algorithms import FedAvg, FedBuff, FederatedClient, FederatedServer
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import Simulation, ThreadExecutor
from blazefl.simtime import SimTime, generate_profiles

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from harness import machine_info  # noqa: E402

SEED = 3
CLIENTS = 40
PER_ROUND = 10
OVERHEAD_TARGET = 1.05


def _quiet_logs() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR)
    )


def _federation(
    algorithm: Any, rounds: int, data: SyntheticPartitionedDataset
) -> tuple[FederatedServer, FederatedClient]:
    zoo = ModelZoo(input_shape=data.input_shape, num_classes=data.num_classes)
    server = FederatedServer(
        algorithm,
        zoo,
        "cnn",
        dataset=data,
        num_clients=CLIENTS,
        rounds=rounds,
        sample_ratio=PER_ROUND / CLIENTS,
        seed=SEED,
    )
    client = FederatedClient(algorithm, zoo, "cnn", data, epochs=1, lr=0.1)
    return server, client


def _curve(
    name: str, algorithm: Any, rounds: int, time_model: SimTime
) -> dict[str, Any]:
    data = SyntheticPartitionedDataset(CLIENTS, seed=SEED)
    server, client = _federation(algorithm, rounds, data)
    sim = Simulation(
        server, client, executor=ThreadExecutor(2), seed=SEED, time=time_model
    )
    start = time.perf_counter()
    results = sim.run_sync()
    wall = time.perf_counter() - start
    points = [(float(r.virtual_time), float(r.summary["server_acc"])) for r in results]
    updates = sum(len(r.cids) for r in results)
    print(
        f"{name}: {updates} client updates, virtual {points[-1][0]:.1f}s, "
        f"acc {points[-1][1]:.3f}, wall {wall:.1f}s",
        flush=True,
    )
    return {"name": name, "points": points, "client_updates": updates, "wall_s": wall}


def _acc_at(points: list[tuple[float, float]], budget: float) -> float | None:
    reached = [acc for t, acc in points if t <= budget]
    return max(reached) if reached else None


def _time_to(points: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, acc in points if acc >= target), None)


def accuracy_vs_time(rounds: int) -> dict[str, Any]:
    def profiles() -> Any:
        return generate_profiles(CLIENTS, SEED, compute_sigma=1.5)

    curves = [
        _curve("fedavg-sync", FedAvg(), rounds, SimTime(profiles())),
        _curve(
            "fedavg-overselect",
            FedAvg(),
            rounds,
            SimTime(profiles(), over_selection=0.3),
        ),
        _curve(
            "fedbuff",
            FedBuff(),
            2 * rounds,
            SimTime(profiles(), mode="async", buffer_size=5, concurrency=PER_ROUND),
        ),
    ]
    horizon = min(c["points"][-1][0] for c in curves)
    budgets = [horizon * f for f in (0.25, 0.5, 1.0)]
    target = 0.9 * max(c["points"][-1][1] for c in curves)
    for c in curves:
        c["acc_at"] = {f"{b:.1f}": _acc_at(c["points"], b) for b in budgets}
        c["time_to_target"] = _time_to(c["points"], target)
    return {"curves": curves, "budgets": budgets, "target_acc": target}


def _timed_rounds(
    time_model: SimTime | None, rounds: int
) -> tuple[list[float], torch.Tensor]:
    data = SyntheticPartitionedDataset(CLIENTS, seed=SEED)
    server, client = _federation(FedAvg(), rounds, data)
    sim = Simulation(
        server,
        client,
        executor=ThreadExecutor(2),
        seed=SEED,
        time=time_model,
        evaluate_every=0,
    )
    results = sim.run_sync()
    return [r.seconds for r in results], server.params.clone()


def overhead(rounds: int, repeats: int) -> dict[str, Any]:
    plain: list[float] = []
    timed: list[float] = []
    for _ in range(repeats):
        seconds, reference = _timed_rounds(None, rounds)
        plain += seconds[1:]
        seconds, params = _timed_rounds(
            SimTime(generate_profiles(CLIENTS, SEED, compute_sigma=1.5)), rounds
        )
        timed += seconds[1:]
        assert torch.equal(params, reference), "timed rounds changed the training"
    ratio = statistics.median(timed) / statistics.median(plain)
    print(
        f"clock overhead: median round {statistics.median(timed) * 1e3:.1f} ms "
        f"timed vs {statistics.median(plain) * 1e3:.1f} ms plain: "
        f"ratio {ratio:.3f}",
        flush=True,
    )
    return {
        "rounds_per_run": rounds,
        "repeats": repeats,
        "plain_median_s": statistics.median(plain),
        "timed_median_s": statistics.median(timed),
        "ratio": ratio,
        "target": OVERHEAD_TARGET,
        "bitwise_equal": True,
    }


def _markdown(report: dict[str, Any]) -> str:
    acc = report["accuracy"]
    budgets = [f"{b:.1f}" for b in acc["budgets"]]
    lines = [
        "# Simulated time: FedBuff vs synchronous FedAvg (`benchmarks/simtime.py`)",
        "",
        f"{CLIENTS} clients of the built-in synthetic data, `cnn`, heavy-tailed "
        "device profiles (log-normal compute, σ = 1.5), seed "
        f"{SEED}; {report['machine']['cpu_model']}, "
        f"{report['machine']['cpu_affinity']} CPUs, torch "
        f"{report['machine']['torch']}.",
        "",
        "## Test accuracy against virtual time",
        "",
        "Every run trains the same number of client updates; FedBuff makes "
        "twice as many server updates of half as many clients each. The "
        "budgets are fractions of the fastest run's end; the target is 90% of "
        "the best final accuracy. Synchronous rounds wait for their slowest "
        "client, so their virtual time is set by the heavy tail.",
        "",
        "| run | client updates | virtual s at end | "
        + " | ".join(f"best acc by {b} s" for b in budgets)
        + f" | virtual s to acc {acc['target_acc']:.3f} |",
        "|---|---|---|" + "---|" * (len(budgets) + 1),
    ]
    for c in acc["curves"]:
        cells = [
            "-" if c["acc_at"][b] is None else f"{c['acc_at'][b]:.3f}" for b in budgets
        ]
        reach = c["time_to_target"]
        lines.append(
            f"| {c['name']} | {c['client_updates']} | {c['points'][-1][0]:.1f} | "
            + " | ".join(cells)
            + f" | {'-' if reach is None else f'{reach:.1f}'} |"
        )
    o = report["overhead"]
    lines += [
        "",
        "![accuracy against virtual time](simtime.png)",
        "",
        "## Real-time overhead of the clock",
        "",
        "Synchronous FedAvg with and without profiles (nothing dropped: the "
        "final models are bitwise equal), `ThreadExecutor(2)`, median round "
        f"time over rounds >= 2 of {o['repeats']} runs of {o['rounds_per_run']} "
        "rounds each:",
        "",
        "| plain | timed | ratio | target |",
        "|---|---|---|---|",
        f"| {o['plain_median_s'] * 1e3:.1f} ms | {o['timed_median_s'] * 1e3:.1f} ms "
        f"| {o['ratio']:.3f} | <= {o['target']} |",
        "",
        f"Generated {report['generated']}; total {report['total_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def _plot(report: dict[str, Any], target: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", flush=True)
        return
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for c in report["accuracy"]["curves"]:
        xs, ys = zip(*c["points"], strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=c["name"])
    ax.set(
        xlabel="virtual time (s)",
        ylabel="test accuracy",
        title="Accuracy against virtual time, heavy-tailed devices",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    _quiet_logs()
    torch.set_num_threads(1)
    start = time.perf_counter()
    rounds = 4 if args.quick else 12
    report: dict[str, Any] = {
        "machine": machine_info(),
        "accuracy": accuracy_vs_time(rounds),
        "overhead": overhead(4 if args.quick else 8, 1 if args.quick else 3),
    }
    report["generated"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report["total_s"] = time.perf_counter() - start
    stem = "simtime-quick" if args.quick else "simtime"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(_markdown(report))
    _plot(report, RESULTS / f"{stem}.png")
    print(f"wrote {RESULTS / stem}.{{json,md,png}} in {report['total_s']:.0f}s")


if __name__ == "__main__":
    main()
