"""Quickstart: FedAvg on blazefl's built-in synthetic data set, on threads.

Runs anywhere without a download::

    python examples/quickstart-fedavg/main.py            # defaults below
    python examples/quickstart-fedavg/main.py --help

Two ways to drive the same engine are shown: the async coordinator
(`Simulation`, the default) and the BlazeFL 3.0 loop (``--blazefl-loop``).
Both give bit-for-bit the same model for the same seed.
"""

from __future__ import annotations

import argparse
import time

from blazefl.contrib import (
    FedAvgBaseServerHandler,
    FedAvgThreadPoolClientTrainer,
)
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.sim import RoundResult, Simulation, ThreadExecutor, configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sample-ratio", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--blazefl-loop",
        action="store_true",
        help="drive the run with the BlazeFL 3.0 while-loop instead of Simulation",
    )
    return parser.parse_args(argv)


def build(
    args: argparse.Namespace,
) -> tuple[FedAvgBaseServerHandler, FedAvgThreadPoolClientTrainer]:
    dataset = SyntheticPartitionedDataset(args.clients, seed=args.seed)
    zoo = ModelZoo(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    handler = FedAvgBaseServerHandler(
        model_selector=zoo,
        model_name=args.model,
        dataset=dataset,
        global_round=args.rounds,
        num_clients=args.clients,
        sample_ratio=args.sample_ratio,
        device="cpu",
        batch_size=256,
        seed=args.seed,
    )
    trainer = FedAvgThreadPoolClientTrainer(
        model_selector=zoo,
        model_name=args.model,
        dataset=dataset,
        device="cpu",
        num_clients=args.clients,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        num_parallels=args.workers,
    )
    return handler, trainer


def print_round(
    index: int, seconds: float, summary: dict[str, float], loss: float | None
) -> None:
    train = f"{loss:.4f}" if loss is not None else "   -  "
    print(
        f"round {index + 1:3d} | train loss {train} | test loss "
        f"{summary['server_loss']:.4f} | test acc {summary['server_acc']:.3f} | "
        f"{seconds:.2f}s",
        flush=True,
    )


def run_simulation(args: argparse.Namespace) -> float:
    handler, trainer = build(args)
    sim = Simulation(
        handler, trainer, executor=ThreadExecutor(args.workers), seed=args.seed
    )
    results: list[RoundResult] = sim.run_sync()
    for r in results:
        print_round(r.round, r.seconds, dict(r.summary), r.metrics.get("loss"))
    return float(results[-1].summary["server_acc"])


def run_blazefl_loop(args: argparse.Namespace) -> float:
    handler, trainer = build(args)
    trainer.progress_fn = lambda it: it  # type: ignore[method-assign]  # no bars
    while not handler.is_stopped():
        start = time.perf_counter()
        sampled = handler.sample_clients()
        broadcast = handler.downlink_package()
        trainer.local_process(broadcast, sampled)
        for package in trainer.uplink_package():
            handler.load(package)
        print_round(
            handler.round - 1, time.perf_counter() - start, handler.get_summary(), None
        )
    return handler.get_summary()["server_acc"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(level="warning")  # per-client log lines off; see --help
    print(
        f"FedAvg: {args.clients} clients, {args.rounds} rounds, "
        f"{int(args.clients * args.sample_ratio)} clients/round, model {args.model}, "
        f"{args.workers} worker threads, seed {args.seed}"
    )
    start = time.perf_counter()
    accuracy = run_blazefl_loop(args) if args.blazefl_loop else run_simulation(args)
    print(f"final test accuracy {accuracy:.3f} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
