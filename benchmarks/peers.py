"""pfl-research and BlazeFL 3.0 on the matrix's ``cnn`` workload, beside the bare loop.

`matrix.py` carries the Flower column of its ``cnn`` workload (30 clients, 10
per round, 128 samples each, batch 16, the server evaluates every round);
this script adds the two other peers on exactly that workload, without
rerunning the whole matrix (17+ minutes):

* ``bare1`` / ``bare2``: `harness.Bare`, the hand-written loop the matrix
  compares everything with (sequential, 2 threads);
* ``pfl1`` / ``pfl2``: pfl-research 0.6.0 (`pfl_app.py --matrix-config`), one
  process or ``torchrun`` with 2 (``.venv-pfl``);
* ``bfl3-base`` / ``bfl3-threads2`` / ``bfl3-processes2``: BlazeFL 3.0.0 itself
  (`blazefl3_cohort.py`, Python 3.14), its three trainers.

Each run is its own subprocess (so its process tree's peak RSS is its own),
``--repeats`` times with the order rotated; per run the median of rounds 2+,
then the median over runs. ``x bare(p)`` divides by the bare loop at the same
parallelism measured in the same repetitions. Final models are compared with
``bare1``'s and scored on the test set::

    PYTHONPATH=src .venv/bin/python benchmarks/peers.py   # results/peers.{json,md}
    PYTHONPATH=src .venv/bin/python benchmarks/peers.py --repeats 1 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import blazefl3_cohort
import cohort_peers
import torch
from harness import Bare, Workload, config_from_json, machine_info
from matrix_workloads import WORKLOADS, workload_config

from blazefl.core import deserialize_model, serialize_model
from blazefl.reproducibility import set_torch_threads
from blazefl.training import evaluate

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PEER_VARIANTS = ("pfl1", "pfl2", "bfl3-base", "bfl3-threads2", "bfl3-processes2")


def bare_main(cfg_json: str, parallelism: int, out: Path) -> None:
    """One `harness.Bare` run (in its own process, like the peers)."""
    set_torch_threads(1)
    wl = Workload(config_from_json(cfg_json))
    bare = Bare(wl, parallelism)
    bare.start()
    try:
        times = [bare.round() for _ in range(wl.cfg.rounds)]
    finally:
        bare.close()
    torch.save(serialize_model(bare.handler.model), out.with_suffix(".pt"))
    out.write_text(json.dumps({"round_seconds": times}))


def command(variant: str, cfg_json: str, blob: Path, out: Path) -> list[str]:
    rounds = str(config_from_json(cfg_json).rounds)
    if variant.startswith("bare"):
        bare = ["--bare", variant[-1], "--config-json", cfg_json, "--out", str(out)]
        return [sys.executable, __file__, *bare]
    if variant.startswith("pfl"):
        app = [str(HERE / "pfl_app.py"), "--matrix-config", cfg_json, "--out", str(out)]
        if variant == "pfl1":
            return [str(cohort_peers.PYTHONS["pfl"]), *app]
        torchrun = str(cohort_peers.PYTHONS["pfl"].parent / "torchrun")
        port = str(cohort_peers._free_port())
        rdzv = ["--master-addr", "127.0.0.1", "--master-port", port]
        return [torchrun, "--nnodes", "1", "--nproc-per-node", "2", *rdzv, *app]
    flavour = variant.split("-")[1].rstrip("0123456789")
    workers = "2" if variant.endswith("2") else "1"
    return [
        str(cohort_peers.PYTHONS["bfl3"]),
        str(HERE / "blazefl3_cohort.py"),
        "--run",
        "--blob",
        str(blob),
        "--flavour",
        flavour,
        "--workers",
        workers,
        "--rounds",
        rounds,
        "--out",
        str(out),
    ]


def run_variant(variant: str, cfg_json: str, blob: Path, out: Path) -> dict[str, Any]:
    cmd = command(variant, cfg_json, blob, out)
    src = str(HERE.parent / "src")
    return cohort_peers.launch(
        cmd,
        out,
        outside_repo=variant.startswith("bfl3"),
        extra_env={"PYTHONPATH": src} if variant.startswith("bare") else None,
    )


def analyse(
    runs: list[dict[str, Any]], wl: Workload, tmp: Path
) -> list[dict[str, Any]]:
    ref = torch.load(tmp / "bare1-0.pt")
    with torch.random.fork_rng(devices=[]):
        model = wl.zoo.select_model(wl.cfg.model)
    test = wl.dataset.get_dataloader("test", None, 500)
    names = list(dict.fromkeys(r["variant"] for r in runs))
    med = {
        v: statistics.median(r["median_seconds"] for r in runs if r["variant"] == v)
        for v in names
    }
    rows = []
    for v in names:
        mine = [r for r in runs if r["variant"] == v]
        params = torch.load(tmp / f"{v}-0.pt")
        deserialize_model(model, params)
        p = 2 if v.endswith("2") else 1
        rows.append(
            {
                "variant": v,
                "ms_per_round": med[v] * 1e3,
                "ms_range": [
                    min(r["median_seconds"] for r in mine) * 1e3,
                    max(r["median_seconds"] for r in mine) * 1e3,
                ],
                "x_bare": med[v] / med[f"bare{p}"],
                "peak_rss_mib": max(r["peak_rss_mib"] or 0 for r in mine),
                "other_load": [r["other_load"] for r in mine],
                "max_abs_diff": float((params - ref).abs().max()),
                "test_acc": evaluate(model, test)[1],
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    info, cfg = result["machine"], result["config"]
    lines = [
        "# Peers on the matrix's cnn workload: pfl-research and BlazeFL 3.0",
        "",
        f"`{result['command']}`; {WORKLOADS['cnn']['about']}: {cfg['clients']} "
        f"clients, {cfg['sampled']} per round, {cfg['samples_per_client']} samples "
        f"each, batch {cfg['batch_size']}, {cfg['epochs']} epoch, lr {cfg['lr']}, "
        f"the server evaluates {cfg['test_samples']} samples every round; "
        f"{cfg['rounds']} rounds x {cfg['repeats']} repetitions (order rotated), "
        "each run its own process tree, torch 1 intra-op thread per process or "
        f"thread. Machine: {info['cpu_count']} CPUs ({info['cpu_model']}); load "
        f"average at start {info['loadavg_start']}, at end {result['loadavg_end']}. "
        "Flower on this workload: `matrix.md`.",
        "",
        "| variant | ms/round, median (range over runs) | x bare(p) | peak RSS MiB "
        "(tree) | max abs diff vs bare1 | test acc |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lo, hi = r["ms_range"]
        diff = "0 (bitwise)" if r["max_abs_diff"] == 0 else f"{r['max_abs_diff']:.2e}"
        lines.append(
            f"| {r['variant']} | {r['ms_per_round']:.0f} ({lo:.0f}-{hi:.0f}) | "
            f"{r['x_bare']:.2f} | {r['peak_rss_mib']:.0f} | {diff} | "
            f"{r['test_acc']:.4f} |"
        )
    lines += ["", result["notes"], ""]
    return "\n".join(lines)


NOTES = (
    "pfl trains every sampled client on the bare loop's batches (its "
    "`make_dataset_fn` replays each client's RNG suite), so its differences are "
    "those of its aggregation (float32 sum of weighted deltas, all-reduced "
    "under torchrun). BlazeFL 3.0 shuffles with its own generators (seed + cid), "
    "so its model is a different draw of the same training. The bare loop's "
    "server is this project's BlazeFL-compatible `FedAvgBaseServerHandler`, "
    "whose aggregation is BlazeFL 3.0's (float32, in buffer order)."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_main(args.config_json, args.bare, args.out)
        return
    set_torch_threads(1)
    cfg = workload_config("cnn", [1, 2], False, args.rounds, args.repeats)
    cfg_json = json.dumps(asdict(cfg))
    wl = Workload(cfg)
    families = [f for f in ("pfl", "bfl3") if cohort_peers.available([f])]
    variants = ["bare1", "bare2"]
    variants += [v for v in PEER_VARIANTS if cohort_peers.PEERS[v][0] in families]
    info = machine_info()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bfl-peers-") as tmp_name:
        tmp = Path(tmp_name)
        blob = tmp / "cnn.blob"
        with torch.random.fork_rng(devices=[]):
            model = wl.zoo.select_model(cfg.model)
        spec = {
            "seed": cfg.seed,
            "batch": cfg.batch_size,
            "lr": cfg.lr,
            "epochs": cfg.epochs,
            "sampled": cfg.sampled,
            "eval_batch": cfg.eval_batch_size or cfg.batch_size,
        }
        init = serialize_model(wl.handler().model)
        blazefl3_cohort.write_blob(wl.dataset, model, init, cfg.model, spec, blob)
        for repeat in range(cfg.repeats):
            k = repeat % len(variants)
            turn = variants[k:] + variants[:k]
            for v in turn:
                out = tmp / f"{v}-{repeat}.json"
                got = run_variant(v, cfg_json, blob, out)
                got.update(variant=v, repeat=repeat)
                runs.append(got)
                print(f"rep {repeat} {v}: {got['median_seconds'] * 1e3:.0f} ms/round")
        rows = analyse(runs, wl, tmp)
    result = {
        "command": "python benchmarks/peers.py"
        + (f" --rounds {args.rounds}" if args.rounds else "")
        + f" --repeats {cfg.repeats}",
        "machine": info,
        "loadavg_end": os.getloadavg(),
        "config": asdict(cfg),
        "rows": rows,
        "runs": runs,
        "notes": NOTES,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "peers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
