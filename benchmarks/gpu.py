"""GPUs shared by many clients: threads, processes and cohort execution on one
GPU, with determinism checks (issue 15, item 4).

The workload is the shape of the BlazeFL paper's CIFAR-10 runs (Azuma and
Nishio, "BlazeFL: Fast and Deterministic Federated Learning Simulation",
arXiv:2604.03606, 2026): FedAvg, 100 clients, all sampled every round, the
small CNN (`CifarCNN`, 62,006 parameters) on CIFAR-shaped synthetic data
(`SyntheticCIFAR10`, 500 images per client), 5 rounds x 5 local epochs,
batch 50, lr 0.1. The server aggregates and evaluates on the CPU; clients
train on ``--device`` (all workers share it: ``devices=`` of each executor).

Variants, in priority order (the budget guard drops the tail, saying so):
``threads-1``, ``threads-4`` (worker threads sharing the GPU, one CUDA
stream each), ``cohort-auto`` (`CohortExecutor`, automatic ``max_cohort``),
``processes-2`` (worker processes pinned to the GPU), ``cohort-25x2`` /
``cohort-25x1`` (chunks of 25 on 2 or 1 worker threads), then repeats for
run-to-run checks (``threads-4-again``, ``cohort-auto-again``) and
``processes-4``.

Checks: final parameters bitwise equal where blazefl promises it (per-client
executors on one device; cohort with one chunk size, any worker count, run to
run); the largest absolute difference where it does not (cohort against
per-client, across chunk sizes). A variant that raises is recorded as failed
and the others still run; the exit code is 1 if a promised check or a
variant failed.

    bash benchmarks/gpu_run.sh --out "$OUT"   # a bare GPU machine (wheels)
    python benchmarks/gpu.py                  # writes results/gpu.{json,md}
    python benchmarks/gpu.py --device cpu --quick --out /tmp/gpu
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Before torch starts CUDA in this process (cuBLAS reads it once).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import anyio
import torch

from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer
from blazefl.data import SyntheticCIFAR10
from blazefl.models import ModelZoo
from blazefl.sim import (
    CohortExecutor,
    Executor,
    ProcessExecutor,
    Simulation,
    ThreadExecutor,
    configure_logging,
)

HERE = Path(__file__).resolve().parent
SEED = 7
FULL = {"clients": 100, "samples": 500, "test": 1000, "rounds": 5, "epochs": 5,
        "batch": 50, "lr": 0.1, "chunk": 25}  # fmt: skip
QUICK = {"clients": 8, "samples": 40, "test": 50, "rounds": 2, "epochs": 1,
         "batch": 10, "lr": 0.1, "chunk": 4}  # fmt: skip
MODEL = "cifar_cnn"


def variants(chunk: int) -> list[tuple[str, str, int, int | None]]:
    """(name, executor kind, workers, max_cohort), in priority order."""
    return [
        ("threads-1", "threads", 1, None),
        ("threads-4", "threads", 4, None),
        ("cohort-auto", "cohort", 1, None),
        ("processes-2", "processes", 2, None),
        (f"cohort-{chunk}x2", "cohort", 2, chunk),
        (f"cohort-{chunk}x1", "cohort", 1, chunk),
        ("threads-4-again", "threads", 4, None),
        ("cohort-auto-again", "cohort", 1, None),
        ("processes-4", "processes", 4, None),
    ]


def checks(chunk: int) -> list[tuple[str, bool, list[str]]]:
    """(what, promised bitwise?, variants: the first is the reference)."""
    return [
        ("per-client executors on one device (threads 1/4, processes 2/4, "
         "run to run)", True,
         ["threads-1", "threads-4", "threads-4-again", "processes-2",
          "processes-4"]),
        (f"cohort, max_cohort={chunk}: 1 vs 2 workers", True,
         [f"cohort-{chunk}x1", f"cohort-{chunk}x2"]),
        ("cohort, automatic max_cohort: run to run", True,
         ["cohort-auto", "cohort-auto-again"]),
        ("cohort (automatic) vs per-client", False, ["threads-1", "cohort-auto"]),
        (f"cohort: automatic vs max_cohort={chunk}", False,
         ["cohort-auto", f"cohort-{chunk}x2"]),
    ]  # fmt: skip


def build_executor(kind: str, workers: int, chunk: int | None, device: str) -> Executor:
    if kind == "threads":
        return ThreadExecutor(workers, devices=device)
    if kind == "processes":
        return ProcessExecutor(workers, devices=device)
    return CohortExecutor(workers, max_cohort=chunk, devices=device)


async def run_variant(
    spec: dict[str, Any], data: Any, executor: Executor, deadline: float
) -> dict[str, Any]:
    """One federation on ``executor``; stops after a round past ``deadline``."""
    zoo = ModelZoo(input_shape=data.input_shape, num_classes=10)
    server = FederatedServer(
        FedAvg(), zoo, MODEL, dataset=data, num_clients=spec["clients"],
        rounds=spec["rounds"], seed=SEED,
    )  # fmt: skip
    client = FederatedClient(
        FedAvg(), zoo, MODEL, data, epochs=spec["epochs"],
        batch_size=spec["batch"], lr=spec["lr"],
    )  # fmt: skip
    sim = Simulation(server, client, executor=executor, seed=SEED, evaluate_every=0)
    rounds: list[float] = []
    begin = time.perf_counter()
    async with sim:
        started = time.perf_counter() - begin
        for _ in range(spec["rounds"]):
            t0 = time.perf_counter()
            await sim.run_round()
            rounds.append(time.perf_counter() - t0)
            if time.perf_counter() > deadline:
                break
    total = time.perf_counter() - begin
    summary = server.get_summary()
    params = server.params.detach().clone()
    steps = spec["clients"] * spec["epochs"] * -(-spec["samples"] // spec["batch"])
    later = rounds[1:] or rounds
    return {
        "rounds_done": len(rounds),
        "complete": len(rounds) == spec["rounds"],
        "start_s": round(started, 3),
        "round_s": [round(r, 3) for r in rounds],
        "median_round_s": round(statistics.median(later), 3),
        "total_s": round(total, 3),
        "client_steps_per_s": round(steps / statistics.median(later), 1),
        "test_accuracy": summary.get("server_acc"),
        "summary": {k: float(v) for k, v in summary.items()},
        "max_cohort": getattr(executor, "max_cohort", None),
        "params_sha256": hashlib.sha256(params.numpy().tobytes()).hexdigest(),
        "params": params,
    }


def compare(results: dict[str, dict[str, Any]], chunk: int) -> list[dict[str, Any]]:
    out = []
    for what, promised, names in checks(chunk):
        done = [n for n in names if n in results and results[n]["complete"]]
        row: dict[str, Any] = {
            "check": what,
            "promised_bitwise": promised,
            "variants": done,
            "missing": sorted(set(names) - set(done)),
        }
        if len(done) < 2:
            row["result"] = "skipped (fewer than two complete variants)"
        else:
            ref = results[done[0]]["params"]
            diffs = [(results[n]["params"] - ref).abs().max().item() for n in done[1:]]
            equal = all(torch.equal(results[n]["params"], ref) for n in done[1:])
            row["max_abs_diff"] = max(diffs)
            row["bitwise_equal"] = equal
            row["result"] = ("pass" if equal else "FAIL") if promised else "measured"
        out.append(row)
    return out


def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "cpus": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["multiprocessors"] = props.multi_processor_count
    return info


def determinism_flags() -> dict[str, Any]:
    return {
        "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    begin = time.perf_counter()
    deadline = begin + args.budget_s
    spec = dict(QUICK if args.quick else FULL)
    chunk = spec["chunk"]
    info = machine(args.device)
    data = SyntheticCIFAR10(
        spec["clients"], seed=SEED, samples_per_client=spec["samples"],
        test_samples=spec["test"],
    )  # fmt: skip
    data_s = time.perf_counter() - begin
    wanted = set(args.variants.split(",")) if args.variants else None
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    took: dict[str, float] = {}  # the last measured duration per executor kind
    for name, kind, workers, size in variants(chunk):
        if wanted is not None and name not in wanted:
            continue
        elapsed = time.perf_counter() - begin
        estimate = took.get(kind, 0.0)
        if elapsed + estimate > args.budget_s:
            skipped[name] = (
                f"budget: {elapsed:.0f} s spent, about {estimate:.0f} s more "
                f"needed, --budget-s {args.budget_s:g}"
            )
            print(f"skip {name}: {skipped[name]}", flush=True)
            continue
        try:
            executor = build_executor(kind, workers, size, args.device)
            result = await run_variant(spec, data, executor, deadline)
        except Exception as exc:  # one broken variant must not cost the others
            failed[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name} failed: {failed[name]}", file=sys.stderr, flush=True)
            continue
        result.update(kind=kind, workers=workers)
        took[kind] = result["total_s"]
        results[name] = result
        print(
            f"{name}: {result['total_s']:.1f} s, {result['rounds_done']} rounds, "
            f"median round {result['median_round_s']:.2f} s, "
            f"acc {result['test_accuracy']}",
            flush=True,
        )
    info["load_average_end"] = list(os.getloadavg())
    return {
        "workload": {**spec, "model": MODEL, "algorithm": "fedavg",
                     "sample_ratio": 1.0, "seed": SEED, "server_device": "cpu"},
        "quick": args.quick,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "budget_s": args.budget_s,
        "data_build_s": round(data_s, 2),
        "wall_s": round(time.perf_counter() - begin, 1),
        "machine": info,
        "determinism": determinism_flags(),
        "variants": results,
        "skipped": skipped,
        "failed": failed,
        "checks": compare(results, chunk),
    }  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    w, m = report["workload"], report["machine"]
    gpu = m.get("gpu", "none (CPU)")
    lines = [
        "# GPUs shared by many clients: threads, processes, cohort",
        "",
        f"`python benchmarks/{report['command']}`; FedAvg, {w['clients']} clients "
        f"(all sampled), `{w['model']}` on CIFAR-shaped synthetic data "
        f"({w['samples']} images per client), {w['rounds']} rounds x "
        f"{w['epochs']} local epochs, batch {w['batch']}, lr {w['lr']}; server "
        f"on the CPU; every executor's workers on `{m['device']}`.",
        "",
        f"Machine: {gpu}, torch {m['torch']} (CUDA {m['cuda']}, cuDNN "
        f"{m['cudnn']}), Python {m['python']}, {m['cpus']} CPUs, load average "
        f"{m['load_average_start']} at start, {m['load_average_end']} at end. "
        f"Data built in {report['data_build_s']} s; whole run "
        f"{report['wall_s']} s (budget {report['budget_s']:g} s).",
        "",
        "Determinism settings in force: "
        + ", ".join(f"`{k}={v}`" for k, v in report["determinism"].items()),
        "",
        "| variant | executor | workers | max_cohort | start s | median round s "
        "| total s | client steps/s | rounds | test accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["variants"].items():
        acc = r["test_accuracy"]
        lines.append(
            f"| {name} | {r['kind']} | {r['workers']} | {r['max_cohort'] or '-'} | "
            f"{r['start_s']} | {r['median_round_s']} | {r['total_s']} | "
            f"{r['client_steps_per_s']} | {r['rounds_done']}"
            f"{'' if r['complete'] else ' (stopped: budget)'} | "
            f"{'-' if acc is None else f'{acc:.3f}'} |"
        )
    for name, why in report["skipped"].items():
        lines.append(f"| {name} | skipped | | | | | | | | {why} |")
    for name, why in report["failed"].items():
        lines.append(f"| {name} | FAILED | | | | | | | | {why} |")
    lines += [
        "",
        "| check | bitwise promised | variants | result | max abs diff |",
        "|---|---|---|---|---|",
    ]
    for c in report["checks"]:
        diff = c.get("max_abs_diff")
        lines.append(
            f"| {c['check']} | {'yes' if c['promised_bitwise'] else 'no'} | "
            f"{', '.join(c['variants']) or '-'} | {c['result']} | "
            f"{'-' if diff is None else f'{diff:.3g}'} |"
        )
    lines += [
        "",
        "Bitwise promises hold for one device kind and software stack (GPU "
        "model, driver, CUDA, cuDNN, torch); other GPU models, or the CPU, "
        "give other last bits. See docs/gpu.md.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0", help="cuda:N, cuda or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=210.0,
        help="seconds for the whole run, data included: later variants are "
        "skipped, a running one stops after its round",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--variants", default="", help="comma-separated subset")
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    report = anyio.run(main_async, args)
    name = "gpu-quick" if args.quick else "gpu"
    args.out.mkdir(parents=True, exist_ok=True)
    for result in report["variants"].values():
        del result["params"]
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    failed = [c["check"] for c in report["checks"] if c["result"] == "FAIL"]
    failed += [f"variant {name}" for name in report["failed"]]
    for what in failed:
        print(f"FAILED: {what}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
