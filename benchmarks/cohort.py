"""Cohort execution against the hand-written per-client loop, many light clients.

Three workloads of the cross-device regime (issue 15), FedAvg, 1 local epoch,
batch 10, every client 20-50 training samples:

* ``logreg``: LEAF Synthetic(1,1) (`LeafSyntheticDataset`), multinomial
  logistic regression (60 → 10), 1,000 clients per round;
* ``mlp``: the same data, the small MLP (60 → 64 → 10), 1,000 clients per round;
* ``cnn``: the small CNN of ``blazefl run`` (`ModelZoo` "cnn", 1x12x12
  synthetic images), 200 clients per round.

Each client keeps the first 20-50 rows (a count drawn from the benchmark's own
seed) of its own partition, so every client still labels its data its own way.

Variants, each in its own subprocess (so its peak RSS is its own):

* ``bare1`` / ``bare2``: the per-client loop written by hand (model cached per
  thread, the client's own RNG suite shuffles its batches, `blazefl.training.
  train`, `serialize_model`, `FederatedServer.load_round`), sequential or on a
  2-thread pool;
* ``cohort1`` / ``cohort2``: `Simulation` + `FederatedClient` on
  `CohortExecutor(1 or 2 workers)` with the automatic ``max_cohort``.

torch runs one intra-op thread everywhere, so ``bare1``/``cohort1`` use one
core and ``bare2``/``cohort2`` two. The speed-up is the best per-client
variant over the best cohort variant, and also stated core for core. Round
times are medians of the rounds after the first (warm-up). The final models
are compared with the per-client loop's (max |difference|).

    python benchmarks/cohort.py            # writes benchmarks/results/cohort.{json,md}
    python benchmarks/cohort.py --rounds 3 --only logreg   # keeps the other rows

With ``--only`` the other workloads' rows of the last results are kept (each
row records the load average around its own run), so a long table can be
measured in several shorter runs.

``--peers pfl --peers flower --peers bfl3`` adds the peer columns, run beside
the variants above in the same invocation (`cohort_peers.py`): pfl-research
(one process and ``torchrun`` with 2), Flower (1 and 2 Ray actors) and BlazeFL
3.0 itself (sequential, 2 threads, 2 processes), each in its own interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import torch

from blazefl.algorithms import ClientUpdate, FedAvg, FederatedClient, FederatedServer
from blazefl.core import deserialize_model, serialize_model
from blazefl.data import (
    LeafSyntheticDataset,
    SyntheticPartitionedDataset,
    TensorPartitionedDataset,
)
from blazefl.models import MLP, ModelZoo
from blazefl.reproducibility import RNGSuite, create_client_rng_suite
from blazefl.sim import CohortExecutor, Simulation, configure_logging
from blazefl.training import train

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SEED = 7
BATCH = 10
LR = 0.05
WORKLOADS = {
    "logreg": {"clients": 1000, "model": "logreg"},
    "mlp": {"clients": 1000, "model": "mlp"},
    "cnn": {"clients": 200, "model": "cnn"},
}
VARIANTS = ("bare1", "bare2", "cohort1", "cohort2")
TARGETS = {"logreg": 5.0, "mlp": 5.0, "cnn": 2.0}


class Selector:
    """Logistic regression, the small MLP, or the zoo's small CNN."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.zoo = ModelZoo(input_shape=input_shape, num_classes=10)

    def select_model(self, name: str) -> torch.nn.Module:
        if name == "logreg":
            return MLP(60, 10, hidden=())
        if name == "mlp":
            return MLP(60, 10, hidden=(64,))
        return self.zoo.select_model(name)


def _capped(base: TensorPartitionedDataset, clients: int) -> TensorPartitionedDataset:
    """Each client's first 20-50 rows of its own partition."""
    gen = torch.Generator().manual_seed(SEED)
    sizes = torch.randint(20, 51, (clients,), generator=gen).tolist()
    parts = []
    for cid, size in enumerate(sizes):
        rows = base.get_dataset("train", cid).indices  # type: ignore[attr-defined]
        parts.append(rows[:size])
    train = base.get_dataset("train", None)
    test = base.get_dataset("test", None)
    return TensorPartitionedDataset(
        train.data,  # type: ignore[attr-defined]
        train.targets,  # type: ignore[attr-defined]
        parts,
        test.data[test.indices],  # type: ignore[attr-defined]
        test.targets[test.indices],  # type: ignore[attr-defined]
        num_classes=10,
    )


_CACHE: dict[str, Path] = {}


def dataset(name: str) -> TensorPartitionedDataset:
    """The workload's data set (generated once; the variants' processes read
    the parent's pickled copy, so generation is not paid four times)."""
    cached = _CACHE.get(name)
    if cached is not None and cached.exists():
        loaded: TensorPartitionedDataset = torch.load(cached, weights_only=False)
        return loaded
    clients = WORKLOADS[name]["clients"]
    if name == "cnn":
        base: TensorPartitionedDataset = SyntheticPartitionedDataset(
            clients, seed=SEED, samples_per_client=50
        )
    else:
        base = LeafSyntheticDataset(clients, seed=SEED, alpha=1.0, beta=1.0)
    return _capped(base, clients)


def _server(name: str, data: TensorPartitionedDataset, rounds: int) -> Any:
    spec = WORKLOADS[name]
    selector = Selector(data.input_shape)
    server = FederatedServer(
        FedAvg(),
        selector,
        spec["model"],
        dataset=data,
        num_clients=spec["clients"],
        rounds=rounds,
        seed=SEED,
    )
    return server, selector


def run_bare(name: str, threads: int, rounds: int) -> tuple[list[float], torch.Tensor]:
    """The per-client loop by hand (sequential, or a thread pool)."""
    data = dataset(name)
    server, selector = _server(name, data, rounds)
    model_name = WORKLOADS[name]["model"]
    suites: dict[int, RNGSuite] = {}
    local = threading.local()

    def client(cid: int, params: torch.Tensor) -> ClientUpdate:
        model = getattr(local, "model", None)
        if model is None:
            with torch.random.fork_rng(devices=[]):
                model = local.model = selector.select_model(model_name)
        deserialize_model(model, params)
        loader = data.get_dataloader("train", cid, BATCH, suites[cid].torch_cpu)
        result = train(model, loader, epochs=1, lr=LR)
        size = len(data.get_dataset("train", cid))
        return ClientUpdate(
            cid, serialize_model(model), size, metrics={"loss": result.loss}
        )

    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    times = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            cids = server.sample_clients()
            params = server.downlink_package().params
            for cid in cids:
                if cid not in suites:
                    suites[cid] = create_client_rng_suite(SEED, cid)
            if pool is None:
                updates = [client(cid, params) for cid in cids]
            else:
                updates = list(pool.map(client, cids, [params] * len(cids)))
            server.load_round(updates)
            times.append(time.perf_counter() - start)
    finally:
        if pool is not None:
            pool.shutdown()
    return times, server.params


def run_cohort(
    name: str, workers: int, rounds: int
) -> tuple[list[float], torch.Tensor, int]:
    data = dataset(name)
    server, selector = _server(name, data, rounds)
    client = FederatedClient(
        FedAvg(), selector, WORKLOADS[name]["model"], data, batch_size=BATCH, lr=LR
    )
    executor = CohortExecutor(workers)
    sim = Simulation(server, client, executor=executor, seed=SEED, evaluate_every=0)
    times: list[float] = []

    async def go() -> None:
        async with sim:
            for _ in range(rounds):
                start = time.perf_counter()
                result = await sim.run_round()
                times.append(time.perf_counter() - start)
                assert not result.failures, result.failures

    anyio.run(go)
    size = executor.max_cohort
    assert size is not None
    return times, server.params, size


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux keeps
    that across ``exec``, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(name: str, variant: str, rounds: int, out: Path) -> None:
    """Run one variant in this process; write its numbers to ``out``."""
    configure_logging("console", level="warning")
    torch.set_num_threads(1)
    workers = int(variant[-1])
    record: dict[str, Any] = {"workload": name, "variant": variant}
    if variant.startswith("bare"):
        times, params = run_bare(name, workers, rounds)
    else:
        times, params, size = run_cohort(name, workers, rounds)
        record["max_cohort"] = size
    torch.save(params, out.with_suffix(".pt"))
    record["round_seconds"] = times
    record["median_seconds"] = statistics.median(times[1:] or times)
    record["peak_rss_mib"] = _peak_rss_mib()
    out.write_text(json.dumps(record))


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | clients/round | per-client loop, 1 / 2 threads (s/round) | "
        "cohort, 1 / 2 workers (s/round) | max_cohort | speed-up best/best "
        "(1 core, 2 cores) | target | peak RSS MiB per-client / cohort | "
        "max abs diff vs per-client |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['workload']} | {r['clients']} | {r['bare1']:.3f} / "
        f"{r['bare2']:.3f} | {r['cohort1']:.3f} / {r['cohort2']:.3f} | "
        f"{r['max_cohort']} | **{r['speedup']:.1f}x** ({r['speedup_1core']:.1f}x, "
        f"{r['speedup_2cores']:.1f}x) | >= {r['target']:.0f}x | "
        f"{r['rss_bare']:.0f} / {r['rss_cohort']:.0f} | {r['max_abs_diff']:.2e} |"
        for r in rows
    )
    return "\n".join(lines)


def _command(args: argparse.Namespace, name: str) -> str:
    peers = "".join(f" --peers {p}" for p in args.peers)
    return f"python benchmarks/cohort.py --rounds {args.rounds} --only {name}{peers}"


def _merge(
    rows: list[dict[str, Any]],
    peer_rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """This run's rows over the last results' rows of the other workloads."""
    path = RESULTS / "cohort.json"
    if not path.exists():
        return rows, peer_rows, records
    old = json.loads(path.read_text())
    done = {r["workload"] for r in rows}

    def merged(new: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        keep = [r for r in old.get(key, []) if r["workload"] not in done]
        out = keep + new
        return sorted(out, key=lambda r: list(WORKLOADS).index(r["workload"]))

    return merged(rows, "rows"), merged(peer_rows, "peers"), merged(records, "runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=tuple(WORKLOADS), action="append")
    parser.add_argument("--one", nargs=3, metavar=("WORKLOAD", "VARIANT", "OUT"))
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--peers",
        choices=("pfl", "flower", "bfl3"),
        action="append",
        default=[],
        help="add a peer column (cohort_peers.py); repeat for several",
    )
    args = parser.parse_args()
    if args.one:
        if args.data is not None:
            _CACHE[args.one[0]] = args.data
        one(args.one[0], args.one[1], args.rounds, Path(args.one[2]))
        return
    sys.path.insert(0, str(HERE))
    import blazefl3_cohort
    import cohort_peers
    from harness import LoadMonitor, machine_info

    peers = cohort_peers.available(args.peers)
    load_start = os.getloadavg()
    rows = []
    records = []
    peer_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or tuple(WORKLOADS):
            got: dict[str, dict[str, Any]] = {}
            load_before = os.getloadavg()
            data_file = Path(tmp) / f"{name}.data"
            torch.save(dataset(name), data_file)
            files = {"data": data_file, "blob": Path(tmp) / f"{name}.blob"}
            if any(v.startswith("bfl3") for v in peers):
                init = _server(name, dataset(name), args.rounds)[0].params
                blazefl3_cohort.export(name, dataset(name), init, files["blob"])
            for variant in (*VARIANTS, *peers):
                out = Path(tmp) / f"{name}-{variant}.json"
                if variant in peers:
                    got[variant] = cohort_peers.run_peer(
                        variant, name, args.rounds, files, out
                    )
                else:
                    load = LoadMonitor()
                    before = load.sample()
                    cmd = [sys.executable, __file__, "--rounds", str(args.rounds)]
                    cmd += ["--data", str(data_file), "--one", name, variant, str(out)]
                    subprocess.run(cmd, check=True)
                    got[variant] = json.loads(out.read_text())
                    got[variant]["other_load"] = load.foreign(before, load.sample())
                records.append(got[variant])
                print(f"{name} {variant}: {got[variant]['median_seconds']:.3f}s/round")
            ref = torch.load(Path(tmp) / f"{name}-bare1.pt")
            diff = max(
                float((torch.load(Path(tmp) / f"{name}-{v}.pt") - ref).abs().max())
                for v in VARIANTS
            )
            med = {v: got[v]["median_seconds"] for v in VARIANTS}
            rows.append(
                {
                    "workload": name,
                    "clients": WORKLOADS[name]["clients"],
                    **med,
                    "max_cohort": got["cohort1"]["max_cohort"],
                    "speedup": min(med["bare1"], med["bare2"])
                    / min(med["cohort1"], med["cohort2"]),
                    "speedup_1core": med["bare1"] / med["cohort1"],
                    "speedup_2cores": med["bare2"] / med["cohort2"],
                    "target": TARGETS[name],
                    "rss_bare": max(got[v]["peak_rss_mib"] for v in ("bare1", "bare2")),
                    "rss_cohort": max(
                        got[v]["peak_rss_mib"] for v in ("cohort1", "cohort2")
                    ),
                    "max_abs_diff": diff,
                    "loadavg": [load_before[0], os.getloadavg()[0]],
                    "command": _command(args, name),
                }
            )
            if peers:
                peer_rows.append(
                    cohort_peers.summarise(name, got, Path(tmp), dataset(name))
                )
    RESULTS.mkdir(exist_ok=True)
    info = {**machine_info(), "loadavg_start": load_start}
    if args.only:
        rows, peer_rows, records = _merge(rows, peer_rows, records)
    (RESULTS / "cohort.json").write_text(
        json.dumps(
            {"machine": info, "rows": rows, "peers": peer_rows, "runs": records},
            indent=2,
        )
        + "\n"
    )
    commands = "; ".join(
        f"`{r.get('command', 'python benchmarks/cohort.py')}`" for r in rows
    )
    loads = ", ".join(
        f"{r['workload']} {r['loadavg'][0]:.1f} -> {r['loadavg'][1]:.1f}"
        for r in rows
        if "loadavg" in r
    )
    text = (
        "# Cohort execution vs the hand-written per-client loop\n\n"
        f"{commands}; FedAvg, batch "
        f"{BATCH}, 1 epoch, 20-50 samples per client, torch 1 intra-op thread; "
        "median s/round of rounds 2+; each variant in its own process. "
        f"Machine: {info['cpu_count']} CPUs ({info['cpu_model']}); 1-minute load "
        f"average before -> after each workload's run: {loads}.\n\n"
        + _table(rows)
        + "\n"
    )
    if peer_rows:
        text += (
            "\n## Peers, same workloads, same run\n\n"
            + cohort_peers.table(peer_rows, TARGETS)
            + "\n\n"
            + cohort_peers.NOTES
            + "\n"
        )
    (RESULTS / "cohort.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
