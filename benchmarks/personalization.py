"""Does personalization do what the papers say? Per-client test accuracy on
strongly non-IID splits, FedAvg against the personalized algorithms.

Label skew: the built-in synthetic images (10 classes), pooled and dealt as
label shards, 2 classes per client (`blazefl.data.shard_partition`); a
quarter of each client's rows is held out as that client's own test set
(same classes as its training data). FedAvg, FedAvg + local fine-tuning,
Ditto, FedPer, FedRep and APFL each train the reference CNN with the same
seed, clients, rounds and local training.

Feature shift: the same images, split IID, each client's images (training
and its own test share) shifted by its own contrast and brightness
(`blazefl.data.feature_shift`, ``"contrast"``), on the zoo's CNN with
BatchNorm (``cnn_bn``): FedAvg against FedBN.

The figure per run is each client's test accuracy after the last round, of
the model that client would use: the global model for FedAvg, its own for a
personalized algorithm, measured by `Simulation.evaluate_clients` (each
client's `FederatedClient.evaluate_client` on the run's executor). The table
gives their mean, the 10th percentile and the mean of the worst 10% of
clients (`client_acc_mean`, `_p10`, `_worst10`), and the global model's mean
on the same clients for reference. Every algorithm uses its
declared defaults.

Reproduce (a few minutes on 2 cores)::

    .venv/bin/python benchmarks/personalization.py
    # -> results/personalization.{json,md}, the table in docs/personalization.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import torch

from blazefl.algorithms import (
    ALGORITHMS,
    APFL,
    Algorithm,
    Ditto,
    FedAvg,
    FedBN,
    FederatedClient,
    FederatedServer,
    FedPer,
    FedRep,
    Finetune,
)
from blazefl.algorithms._settings import settings_of
from blazefl.data import (
    SyntheticPartitionedDataset,
    TensorPartitionedDataset,
    feature_shift,
    iid_partition,
    shard_partition,
)
from blazefl.models import ModelZoo
from blazefl.sim import (
    ClientEvaluation,
    Simulation,
    ThreadExecutor,
    configure_logging,
)

RESULTS = Path(__file__).with_name("results")
DOC = Path(__file__).parents[1] / "docs" / "personalization.md"
SEED = 0
CLIENTS = 20
SAMPLES = 160  # per client: 120 to train on, 40 to test on
HOLDOUT = 0.25


def holdout_split(
    base: TensorPartitionedDataset, parts: list[Any], seed: int
) -> TensorPartitionedDataset:
    """``parts`` of ``base``'s pooled training rows, a ``HOLDOUT`` share of
    each client's rows held out as that client's own test partition."""
    train = base.get_dataset("train", None)
    x, y = train.data[train.indices], train.targets[train.indices]  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    train_parts, test_rows = [], []
    for part in parts:
        rows = rng.permutation(np.asarray(part))
        cut = max(1, round(HOLDOUT * rows.size))
        test_rows.append(rows[:cut])
        train_parts.append(rows[cut:])
    test_idx = np.concatenate(test_rows)
    ends = np.cumsum([0, *(r.size for r in test_rows)])
    return TensorPartitionedDataset(
        x,
        y,
        train_parts,
        x[test_idx],
        y[test_idx],
        num_classes=base.num_classes,
        client_test_indices=[np.arange(a, b) for a, b in itertools.pairwise(ends)],
    )


def label_skew() -> TensorPartitionedDataset:
    base = SyntheticPartitionedDataset(CLIENTS, seed=SEED, samples_per_client=SAMPLES)
    train = base.get_dataset("train", None)
    labels = train.targets[train.indices]  # type: ignore[attr-defined]
    parts = shard_partition(labels, CLIENTS, shards_per_client=2, seed=SEED)
    return holdout_split(base, list(parts), SEED)


def shifted() -> TensorPartitionedDataset:
    base = SyntheticPartitionedDataset(
        CLIENTS, seed=SEED, samples_per_client=120, test_samples=CLIENTS * 40
    )
    train = base.get_dataset("train", None)
    parts = iid_partition(int(train.indices.shape[0]), CLIENTS, seed=SEED)  # type: ignore[attr-defined]
    iid = TensorPartitionedDataset(
        train.data[train.indices],  # type: ignore[attr-defined]
        train.targets[train.indices],  # type: ignore[attr-defined]
        parts,
        *(lambda t: (t.data, t.targets))(base.get_dataset("test", None)),
        num_classes=base.num_classes,
    )
    return feature_shift(iid, "contrast", seed=SEED)


def run(
    label: str,
    algorithm: Algorithm,
    model: str,
    data: TensorPartitionedDataset,
    args: argparse.Namespace,
) -> dict[str, Any]:
    zoo = ModelZoo(data.input_shape, data.num_classes)
    server = FederatedServer(
        algorithm,
        zoo,
        model,
        dataset=data,
        num_clients=CLIENTS,
        rounds=args.rounds,
        sample_ratio=0.5,
        seed=SEED,
    )
    client = FederatedClient(
        algorithm, zoo, model, data, epochs=args.epochs, batch_size=16, lr=0.1
    )
    started = time.perf_counter()
    sim = Simulation(server, client, executor=ThreadExecutor(2), seed=SEED)

    async def train_and_evaluate() -> ClientEvaluation:
        async with sim:
            await sim.run()
            return await sim.evaluate_clients()

    evaluation = anyio.run(train_and_evaluate)
    seconds = time.perf_counter() - started
    assert evaluation.failed == 0, evaluation.failures
    stats = evaluation.stats()
    row = {
        "label": label,
        "algorithm": algorithm.name,
        "model": model,
        "settings": {
            s.name: getattr(algorithm, s.name) for s in settings_of(type(algorithm))
        },
        "client_acc": {k: stats[f"client_acc_{k}"] for k in ("mean", "p10", "worst10")},
        "global_acc_mean": stats["client_global_acc_mean"],
        "stats": stats,
        "server_acc": server.get_summary()["server_acc"],
        "per_client": dict(
            zip(evaluation.cids, evaluation.own_accuracies(), strict=True)
        ),
        "seconds": seconds,
    }
    print(
        f"{label}: mean {row['client_acc']['mean']:.3f} worst10 "
        f"{row['client_acc']['worst10']:.3f} ({seconds:.0f} s)",
        flush=True,
    )
    return row


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| split | algorithm | model | client acc mean | p10 | worst 10% "
        "| global model, mean |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        c = r["client_acc"]
        lines.append(
            f"| {r['split']} | {r['label']} | {r['model']} | {c['mean']:.3f} | "
            f"{c['p10']:.3f} | {c['worst10']:.3f} | {r['global_acc_mean']:.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    configure_logging("console", level="warning")
    started = time.time()
    load_before = os.getloadavg()[0]
    skew = label_skew()
    runs: list[tuple[str, str, Algorithm, str, TensorPartitionedDataset]] = [
        ("shards, 2 classes per client", "FedAvg", FedAvg(), "cnn", skew),
        (
            "shards, 2 classes per client",
            "FedAvg + fine-tuning",
            Finetune(),
            "cnn",
            skew,
        ),
        ("shards, 2 classes per client", "Ditto", Ditto(), "cnn", skew),
        ("shards, 2 classes per client", "FedPer", FedPer(), "cnn", skew),
        ("shards, 2 classes per client", "FedRep", FedRep(), "cnn", skew),
        ("shards, 2 classes per client", "APFL", APFL(), "cnn", skew),
    ]
    shift = shifted()
    runs += [
        ("contrast shift, IID labels", "FedAvg", FedAvg(), "cnn_bn", shift),
        ("contrast shift, IID labels", "FedBN", FedBN(), "cnn_bn", shift),
    ]
    assert {a.name for *_, a, _m, _d in runs} <= set(ALGORITHMS)
    rows = []
    for split, label, algorithm, model, data in runs:
        row = run(label, algorithm, model, data, args)
        rows.append({"split": split, **row})
    load_after = os.getloadavg()[0]
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
        f"{load_before:.1f} before, {load_after:.1f} after"
    )
    setup = (
        f"{CLIENTS} clients, 10 a round, {args.rounds} rounds, {args.epochs} "
        f"local epochs, batch 16, lr 0.1, seed {SEED}, thread executor; each "
        "algorithm with its declared defaults"
    )
    doc = {"machine": machine, "setup": setup, "runs": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "personalization.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [
        "Per-client test accuracy after the last round (each client's own test "
        "set; the model it would use: its personalized one, the global one for "
        f"FedAvg). {setup}. {machine}; "
        f"{(time.time() - started) / 60:.1f} min.",
        "",
        *table(rows),
    ]
    (RESULTS / "personalization.md").write_text("\n".join(md) + "\n")
    if DOC.exists():
        text = DOC.read_text()
        begin, end = "<!-- personalization table -->", "<!-- end -->"
        block = "\n".join([begin, "", *md, "", end])
        DOC.write_text(
            re.sub(
                re.escape(begin) + r".*?" + re.escape(end),
                lambda _: block,
                text,
                flags=re.S,
            )
        )


if __name__ == "__main__":
    main()
