"""Per-client evaluation memory: 10,000 clients never mean 10,000 models.

`Simulation.evaluate_clients` fine-tunes and measures every client's own
model on the run's workers, a bounded chunk at a time, keeping only each
client's small metric dict. This measures the peak RSS of the whole process
tree (coordinator and workers) while 1,000 and 10,000 clients are evaluated,
for several executors, worker counts and chunk sizes: if evaluation held a
model (or a job with its copied state) per client, the 10,000-client peak
would be about 10 x 68 KB x 9,000 = 600 MB above the 1,000-client one.

The workload: an MLP (256 -> 64 -> 10, 17,098 parameters, 68 KB) over 4
training and 2 test samples per client; the algorithm personalizes (one
epoch of fine-tuning from the global model at evaluation, as
``tests/sim/client_eval_fakes.Personal``); one training round of 10 clients
first, so some clients have committed state. Each case runs in its own
process; a `procmon.TreeMonitor` samples the tree every 20 ms during the
evaluation only, and the baseline is the tree's RSS just before it.

Run from the repository root::

    .venv/bin/python benchmarks/client_eval_memory.py          # a few minutes
    .venv/bin/python benchmarks/client_eval_memory.py --quick  # 2,000 clients

Results go to ``benchmarks/results/client_eval_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "sim"), str(ROOT / "tests")]

from procmon import TreeMonitor, tree_sample  # noqa: E402

PARAMS = 256 * 64 + 64 + 64 * 10 + 10
MODEL_KB = PARAMS * 4 / 1024


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Build the federation here, train one round, evaluate every client."""
    import anyio
    import structlog
    import torch
    from client_eval_fakes import Personal

    from blazefl.algorithms import FederatedClient, FederatedServer
    from blazefl.data import TensorPartitionedDataset
    from blazefl.models import ModelZoo
    from blazefl.sim import InlineExecutor, Simulation, ThreadExecutor
    from fakes import quick_processes

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    n = case["clients"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4 * n, 256, generator=g)
    y = torch.randint(0, 10, (4 * n,), generator=g)
    tx = torch.randn(2 * n, 256, generator=g)
    ty = torch.randint(0, 10, (2 * n,), generator=g)
    rows = torch.arange(4 * n).view(n, 4)
    test_rows = torch.arange(2 * n).view(n, 2)
    data = TensorPartitionedDataset(
        x,
        y,
        list(rows),
        tx,
        ty,
        num_classes=10,
        client_test_indices=list(test_rows),
    )
    zoo = ModelZoo(input_shape=(256,), num_classes=10)
    server = FederatedServer(
        Personal(),
        zoo,
        "mlp",
        dataset=data,
        num_clients=n,
        rounds=1,
        sample_ratio=10 / n,
        seed=1,
    )
    work = FederatedClient(Personal(), zoo, "mlp", data, epochs=1, batch_size=4)
    executor = {
        "inline": InlineExecutor,
        "threads": lambda: ThreadExecutor(case["workers"]),
        "processes": lambda: quick_processes(case["workers"]),
    }[case["executor"]]()
    sim = Simulation(server, work, executor=executor, seed=1, evaluate_every=0)
    out: dict[str, Any] = {}

    async def main() -> None:
        async with sim:
            await sim.run_round()
            before = tree_sample(os.getpid())
            out["baseline_mib"] = before.rss_mib if before else None
            out["baseline_shmem_mib"] = before.shmem_mib if before else None
            start = time.perf_counter()
            with TreeMonitor(interval=0.02) as monitor:
                evaluation = await sim.evaluate_clients(chunk_size=case["chunk"])
            out["seconds"] = time.perf_counter() - start
            out["peak_mib"] = monitor.peak_rss_mib
            peak = monitor.peak
            out["peak_shmem_mib"] = peak.shmem_mib if peak else None
            out["evaluated"] = len(evaluation.metrics)
            out["failed"] = evaluation.failed
            out["client_acc_mean"] = evaluation.stats()["client_acc_mean"]

    anyio.run(main)
    return out


def measure(case: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(case)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    growth = (
        None
        if result["peak_mib"] is None or result["baseline_mib"] is None
        else result["peak_mib"] - result["baseline_mib"]
    )
    shmem = (
        None
        if growth is None or result["peak_shmem_mib"] is None
        else result["peak_shmem_mib"] - result["baseline_shmem_mib"]
    )
    return {**case, **result, "growth_mib": growth, "shmem_growth_mib": shmem}


def cases(quick: bool) -> list[dict[str, Any]]:
    big = 2_000 if quick else 10_000
    grid = [
        ("threads", 2, None),
        ("threads", 1, None),
        ("threads", 2, 8),
        ("threads", 2, 1024),
        ("processes", 2, None),
    ]
    return [
        {"executor": executor, "workers": workers, "chunk": chunk, "clients": clients}
        for executor, workers, chunk in grid
        for clients in (1_000, big)
    ]


def _private(row: dict[str, Any]) -> str:
    """The growth not counting shared-memory pages ('-' where unmeasured)."""
    if row["growth_mib"] is None or row.get("shmem_growth_mib") is None:
        return "-"
    return f"{row['growth_mib'] - row['shmem_growth_mib']:.1f}"


def markdown(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        "# Per-client evaluation: peak memory against the number of clients",
        "",
        f"{info['when']}, {info['cpus']} CPUs (load average "
        f"{', '.join(map(str, info['load_average']))} at the start; other jobs "
        f"shared the machine), Python {info['python']}, torch {info['torch']}, "
        f"blazefl {info['blazefl']} ({info['commit'][:10]}).",
        "",
        f"Model: MLP 256-64-10, {PARAMS:,} parameters ({MODEL_KB:.0f} KB); "
        "personalized (one epoch of fine-tuning per client at evaluation). "
        "Peak and baseline are the RSS of the whole process tree (coordinator "
        "and workers); growth = peak during the evaluation - RSS just before; "
        "of which shared memory: the growth of the tree's shared-memory pages "
        "(RssShmem), which count once in every process that maps them (a "
        "process worker reading the data set's shared tensors). "
        "Chunk '-' is the default (16 per worker).",
        "",
        "| executor | workers | chunk | clients | baseline MiB | peak MiB | "
        "growth MiB | of which shared memory MiB | seconds | evaluated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['executor']} | {r['workers']} | {num(r['chunk'], 'd')} | "
        f"{r['clients']:,} | {num(r['baseline_mib'], '.0f')} | "
        f"{num(r['peak_mib'], '.0f')} | {num(r['growth_mib'], '.1f')} | "
        f"{num(r.get('shmem_growth_mib'), '.1f')} | "
        f"{r['seconds']:.1f} | {r['evaluated']:,} |"
        for r in rows
    ]
    lines += ["", "Growth from 1,000 to the larger federation, same settings:", ""]
    pairs: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}
    for r in rows:
        pairs.setdefault((r["executor"], r["workers"], r["chunk"]), {})[
            r["clients"]
        ] = r
    for key, by_size in pairs.items():
        small, large = by_size[min(by_size)], by_size[max(by_size)]
        held = max(by_size) * MODEL_KB / 1024
        lines.append(
            f"- {key[0]} x{key[1]}, chunk {num(key[2], 'd')}: growth during the "
            f"evaluation {num(small['growth_mib'], '.1f')} MiB at "
            f"{min(by_size):,} clients, {num(large['growth_mib'], '.1f')} MiB at "
            f"{max(by_size):,}; without shared memory {_private(small)} and "
            f"{_private(large)} MiB (every client's model at once would be "
            f"{held:.0f} MiB)"
        )
    for size in sorted({r["clients"] for r in rows}):
        means = {r["client_acc_mean"] for r in rows if r["clients"] == size}
        same = "the same" if len(means) == 1 else f"NOT the same ({sorted(means)})"
        lines.append(
            f"- {size:,} clients: client_acc_mean is {same} in every case above "
            "(bitwise across executors, workers and chunk sizes)"
        )
    lines += [
        "",
        "The baseline itself grows with the federation (the data set's 6 samples "
        "and one index view per client, the clients' committed states); the "
        "evaluation adds a few MiB (one metric dict per client) whatever the "
        "number of clients, workers or chunk size. With process workers the "
        "tree's RSS also grows by the shared-memory pages each worker maps "
        "while its clients read the data set's shared tensors: those pages "
        "exist once (the coordinator's), but the RSS of every process that "
        "reads them counts them again, up to the data set's size per worker.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--markdown", action="store_true", help="rewrite the .md from the .json"
    )
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    name = "client_eval_memory" + ("-quick" if args.quick else "")
    out = HERE / "results"
    if args.markdown:
        saved = json.loads((out / f"{name}.json").read_text())
        (out / f"{name}.md").write_text(markdown(saved["machine"], saved["rows"]))
        return
    from harness import run_info  # imports torch: the parent only

    info = run_info(load_average=True)
    rows = []
    for case in cases(args.quick):
        row = measure(case)
        print(json.dumps(row), flush=True)
        rows.append(row)
    (out / f"{name}.json").write_text(
        json.dumps({"machine": info, "rows": rows}, indent=2) + "\n"
    )
    (out / f"{name}.md").write_text(markdown(info, rows))
    print(f"wrote {out / name}.{{json,md}}")


if __name__ == "__main__":
    main()
