"""DS-FL on blazefl's built-in synthetic data set: soft labels instead of models.

Runs anywhere without a download::

    python examples/step-by-step-dsfl/main.py               # defaults below
    python examples/step-by-step-dsfl/main.py --executor processes
    python examples/step-by-step-dsfl/main.py --fedavg      # the FedAvg baseline

See README.md in this directory for the step-by-step walk-through.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

# `dsfl` is imported by its plain name so that process workers (spawned
# interpreters) can unpickle `DSFLClientWork` by reference.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dsfl

from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.core import serialize_model
from blazefl.models import ModelZoo, build_model
from blazefl.sim import (
    ClientFinished,
    EventStream,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    RoundFinished,
    RoundResult,
    Simulation,
    ThreadExecutor,
    configure_logging,
)

FLOAT32_BYTES = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--sample-ratio", type=float, default=0.5)
    parser.add_argument(
        "--open-size", type=int, default=500, help="open-set rows labelled per round"
    )
    parser.add_argument(
        "--open-samples", type=int, default=2000, help="size of the whole open set"
    )
    parser.add_argument("--epochs", type=int, default=2, help="private-data epochs")
    parser.add_argument(
        "--distill-epochs", type=int, default=2, help="soft-label epochs (both sides)"
    )
    parser.add_argument(
        "--temperature", type=float, default=0.1, help="ERA temperature (< 1 sharpens)"
    )
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    parser.add_argument(
        "--executor", choices=["threads", "processes", "inline"], default="threads"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fedavg",
        action="store_true",
        help="run FedAvg (blazefl.algorithms) on the same data instead of DS-FL",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="drive the run with async code and print every client as it finishes",
    )
    return parser.parse_args(argv)


def make_executor(args: argparse.Namespace) -> Executor:
    if args.executor == "processes":
        return ProcessExecutor(args.workers)
    if args.executor == "inline":
        return InlineExecutor()
    return ThreadExecutor(args.workers)


def build(args: argparse.Namespace) -> tuple[dsfl.DSFLServer, dsfl.DSFLClientWork]:
    """The DS-FL server handler and client work for these settings."""
    data, open_x = dsfl.make_data(
        args.clients, seed=args.seed, open_samples=args.open_samples
    )
    zoo = ModelZoo(data.input_shape, data.num_classes)
    server = dsfl.DSFLServer(
        zoo,
        args.model,
        dataset=data,
        open_x=open_x,
        num_clients=args.clients,
        rounds=args.rounds,
        sample_ratio=args.sample_ratio,
        open_size=args.open_size,
        temperature=args.temperature,
        distill_epochs=args.distill_epochs,
        distill_lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    work = dsfl.DSFLClientWork(
        zoo,
        args.model,
        data,
        open_x,
        epochs=args.epochs,
        distill_epochs=args.distill_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        distill_lr=args.lr,
    )
    return server, work


def build_fedavg(args: argparse.Namespace) -> tuple[FederatedServer, FederatedClient]:
    """FedAvg on exactly the same private data, for comparison."""
    data, _ = dsfl.make_data(
        args.clients, seed=args.seed, open_samples=args.open_samples
    )
    zoo = ModelZoo(data.input_shape, data.num_classes)
    server = FederatedServer(
        FedAvg(),
        zoo,
        args.model,
        dataset=data,
        num_clients=args.clients,
        rounds=args.rounds,
        sample_ratio=args.sample_ratio,
        seed=args.seed,
    )
    client = FederatedClient(
        FedAvg(), zoo, args.model, data, args.epochs, args.batch_size, args.lr
    )
    return server, client


def upload_bytes(args: argparse.Namespace) -> tuple[int, int]:
    """Bytes one client uploads per round: (DS-FL soft labels, FedAvg model)."""
    zoo = ModelZoo()
    params = serialize_model(build_model(zoo, args.model, 0))
    soft = args.open_size * zoo.num_classes * FLOAT32_BYTES
    return soft, params.numel() * params.element_size()


def print_round(
    index: int, seconds: float, metrics: Mapping[str, float], summary: Mapping[str, Any]
) -> None:
    distill_loss = metrics.get("distill_loss")
    distilled = f"{distill_loss:.3f}" if distill_loss is not None else "  -  "
    print(
        f"round {index + 1:3d} | train loss {metrics.get('loss', 0.0):.3f} | "
        f"distill loss {distilled} | server acc {summary['server_acc']:.3f} | "
        f"{seconds:.2f}s",
        flush=True,
    )


async def show_events(events: EventStream) -> None:
    """Print clients as they finish and rounds as they commit, live."""
    async with events:
        async for event in events:
            if isinstance(event, ClientFinished):
                print(
                    f"  client {event.cid:3d} (slot {event.slot}) finished on "
                    f"{event.worker} in {event.seconds:.2f}s",
                    flush=True,
                )
            elif isinstance(event, RoundFinished):
                print_round(event.round, event.seconds, event.metrics, event.summary)


async def run_streaming(sim: Simulation[Any, Any]) -> list[RoundResult]:
    """`sim.run()` with an event printer beside it; it ends when the sim closes."""
    async with anyio.create_task_group() as tg, sim:
        tg.start_soon(show_events, sim.events())
        results = await sim.run()
    return results


def main(argv: list[str] | None = None) -> float:
    """Run the simulation; return the final server accuracy."""
    args = parse_args(argv)
    configure_logging(level="warning")  # per-client log lines off
    per_round = max(1, int(args.clients * args.sample_ratio))
    soft, params = upload_bytes(args)
    algorithm = "FedAvg" if args.fedavg else "DS-FL"
    executor = make_executor(args)
    print(
        f"{algorithm}: {args.clients} clients, {per_round} a round, {args.rounds} "
        f"rounds, model {args.model}, {args.executor} x{executor.max_workers}, "
        f"seed {args.seed}"
    )
    sent = params if args.fedavg else soft
    print(
        f"upload per client per round: {sent:,} bytes "
        f"(DS-FL soft labels {soft:,} B = {args.open_size} x 10 float32; "
        f"FedAvg model {params:,} B); per round: {sent * per_round:,} bytes"
    )
    handler, work = build_fedavg(args) if args.fedavg else build(args)
    start = time.perf_counter()
    sim: Simulation[Any, Any] = Simulation(
        handler, work, executor=executor, seed=args.seed
    )
    if args.stream:
        results = anyio.run(run_streaming, sim)
    else:
        results = sim.run_sync()
        for r in results:
            print_round(r.round, r.seconds, r.metrics, r.summary)
    accuracy = float(results[-1].summary["server_acc"])
    # A fingerprint of the final server model: equal digests, equal bits.
    digest = hashlib.sha256(serialize_model(handler.model).numpy().tobytes())
    print(f"final server model sha256 {digest.hexdigest()[:16]}")
    print(f"final server accuracy {accuracy:.3f} in {time.perf_counter() - start:.1f}s")
    return accuracy


if __name__ == "__main__":
    main()
