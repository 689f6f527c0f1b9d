"""Differential check: the same FedAvg through BlazeFL 3.0 itself and through ours.

BlazeFL 3.0.0 needs Python >= 3.14 and this project runs on 3.11, so the two
never share an interpreter: this script runs our side in-process (our
``blazefl.contrib.fedavg``) and BlazeFL 3.0's side in a subprocess on the venv
``scripts/provision-blazefl3.sh`` builds (the same file, ``--side upstream``).
Both load one generated file (data, initial state dict) and the same model
class, so they start from the same weights and see the same data.

What is compared is the arithmetic, not the seeding: BlazeFL 3.0 seeds client
``cid``'s generator with ``seed + cid``, we derive per-client suites from
(seed, cid) differently. The data set here ignores the generator it is handed
(a DataLoader without shuffling), so both sides train every client on the same
batches in the same order; with ``sample_ratio=1`` every round samples every
client (sorted), so the sampling RNGs do not matter either.

It reports, per trainer flavour (sequential, thread pool), whether the final
global models are bitwise equal and the max |diff|, and where a difference
comes from: the round-1 client uploads (same broadcast on both sides, so
local training alone), and BlazeFL 3.0's own ``aggregate`` applied to *our*
uploads of each round against our global model (aggregation alone).

    scripts/provision-blazefl3.sh   # once: ~/.cache/blazefl3 (~5 GB)
    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/blazefl_differential.py

Not part of the test suite. Results: benchmarks/results/blazefl_differential.*
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

FLAVOURS = ("base", "threads")
DEFAULT_PYTHON = Path.home() / ".cache" / "blazefl3" / "venv" / "bin" / "python"


# ------------------------------------------------ shared by both interpreters


class MLP(nn.Module):
    """64 -> 32 -> 10; no dropout, no batch norm: nothing random in training."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class FileModelSelector:
    """Every model either side builds starts from the file's state dict."""

    def __init__(self, init: dict[str, torch.Tensor]) -> None:
        self.init = init

    def select_model(self, model_name: str) -> nn.Module:
        model = MLP()
        model.load_state_dict(self.init)
        return model


class FileDataset:
    """Each client's partition and the test set, read from the generated file.

    ``get_dataloader`` ignores ``generator``: no shuffling, so both sides see
    the same batches whatever their per-client RNGs are.
    """

    def __init__(self, blob: dict[str, Any]) -> None:
        self.train = [
            TensorDataset(x, y) for x, y in zip(blob["x"], blob["y"], strict=True)
        ]
        self.test = TensorDataset(blob["test_x"], blob["test_y"])
        self.num_clients = len(self.train)

    def get_dataset(self, type_: str, cid: int | None) -> TensorDataset:
        if str(type_) == "train":
            assert cid is not None
            return self.train[cid]
        return self.test

    def set_dataset(self, type_: str, cid: int | None, dataset: Any) -> None:
        pass

    def get_dataloader(
        self,
        type_: str,
        cid: int | None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> DataLoader[Any]:
        ds = self.get_dataset(type_, cid)
        return DataLoader(ds, batch_size=batch_size or len(ds), shuffle=False)


def run_federation(blob: dict[str, Any], flavour: str) -> list[dict[str, Any]]:
    """Run FedAvg with whichever ``blazefl`` this interpreter imports.

    Returns one record per round: the uploads (in arrival order, with their
    data sizes) and the global model after the round.
    """
    from blazefl.contrib.fedavg import (
        FedAvgBaseClientTrainer,
        FedAvgBaseServerHandler,
        FedAvgThreadPoolClientTrainer,
    )
    from blazefl.core import serialize_model

    cfg = blob["config"]
    selector = FileModelSelector(blob["init"])
    dataset = FileDataset(blob)
    n = dataset.num_clients
    server = FedAvgBaseServerHandler(
        selector, "mlp", dataset, cfg["rounds"], n, 1.0, "cpu", 64, cfg["seed"]
    )
    common = (selector, "mlp", dataset, "cpu", n, cfg["epochs"], cfg["batch"])
    trainer: Any
    if flavour == "base":
        trainer = FedAvgBaseClientTrainer(*common, cfg["lr"], cfg["seed"])
    else:
        trainer = FedAvgThreadPoolClientTrainer(*common, cfg["lr"], cfg["seed"], 2)
    trainer.progress_fn = lambda it: it  # no tqdm bars
    rounds = []
    while not server.is_stopped():
        sampled = server.sample_clients()
        trainer.local_process(server.downlink_package(), sampled)
        packs = trainer.uplink_package()
        uploads = [(p.cid, p.model_parameters.clone(), p.data_size) for p in packs]
        for pack in packs:
            server.load(pack)
        rounds.append({"uploads": uploads, "global": serialize_model(server.model)})
    return rounds


def upstream_main(workdir: Path) -> None:
    """BlazeFL 3.0's side, in the 3.14 venv: its federation, and its
    ``aggregate`` applied to our side's uploads of every round."""
    import importlib.metadata as md

    from blazefl.contrib.fedavg import FedAvgBaseServerHandler

    torch.set_num_threads(1)
    blob = torch.load(workdir / "input.pt", weights_only=False)
    ours = torch.load(workdir / "ours.pt", weights_only=False)
    out: dict[str, Any] = {
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "blazefl": md.version("blazefl"),
        }
    }
    for flavour in FLAVOURS:
        out[flavour] = run_federation(blob, flavour)
        out[f"{flavour}_aggregate_of_ours"] = [
            FedAvgBaseServerHandler.aggregate(
                [u[1] for u in r["uploads"]], [u[2] for u in r["uploads"]]
            )
            for r in ours[flavour]
        ]
    torch.save(out, workdir / "upstream.pt")


# ---------------------------------------------------- our side and the report


def make_input(args: argparse.Namespace) -> dict[str, Any]:
    """Data and initial weights from ``args.seed``; client sizes differ so the
    weights n_k / n are not all equal (and not all exact in binary)."""
    g = torch.Generator().manual_seed(args.seed)
    centres = torch.randn(10, 64, generator=g)
    sizes = [args.samples + 8 * k for k in range(args.clients)]

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (m,), generator=g)
        x = centres[y] + 1.5 * torch.randn(m, 64, generator=g)
        return x, y

    parts = [draw(m) for m in sizes]
    test_x, test_y = draw(200)
    torch.manual_seed(args.seed)
    init = MLP().state_dict()
    return {
        "x": [p[0] for p in parts],
        "y": [p[1] for p in parts],
        "test_x": test_x,
        "test_y": test_y,
        "init": init,
        "config": {
            "rounds": args.rounds,
            "clients": args.clients,
            "client_sizes": sizes,
            "epochs": args.epochs,
            "batch": args.batch,
            "lr": args.lr,
            "seed": args.seed,
        },
    }


def diff(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    d = (a.double() - b.double()).abs()
    return {
        "bitwise_equal": bool(torch.equal(a, b)),
        "max_abs_diff": float(d.max()),
        "elements_differing": int((a != b).sum()),
        "elements": a.numel(),
    }


def compare(ours: dict[str, Any], up: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for flavour in FLAVOURS:
        o, u = ours[flavour], up[flavour]
        first = [
            diff(ou[1], uu[1])
            for ou, uu in zip(o[0]["uploads"], u[0]["uploads"], strict=True)
        ]
        report[flavour] = {
            "final_global": diff(o[-1]["global"], u[-1]["global"]),
            "per_round_global": [
                diff(a["global"], b["global"]) for a, b in zip(o, u, strict=True)
            ],
            "round1_uploads_bitwise_equal": all(f["bitwise_equal"] for f in first),
            "round1_uploads_max_abs_diff": max(f["max_abs_diff"] for f in first),
            "upload_cids_ours": [c for c, _, _ in o[0]["uploads"]],
            "upload_cids_upstream": [c for c, _, _ in u[0]["uploads"]],
            "upstream_aggregate_vs_our_aggregate_per_round": [
                diff(r["global"], agg)
                for r, agg in zip(o, up[f"{flavour}_aggregate_of_ours"], strict=True)
            ],
        }
    report["ours_base_vs_ours_threads"] = diff(
        ours["base"][-1]["global"], ours["threads"][-1]["global"]
    )
    report["upstream_base_vs_upstream_threads"] = diff(
        up["base"][-1]["global"], up["threads"][-1]["global"]
    )
    return report


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    c, r = result["config"], result["report"]
    lines = [
        "# Differential check: FedAvg through BlazeFL 3.0.0 itself vs ours",
        "",
        f"FedAvg, MLP 64-32-10, {c['clients']} clients (sizes {c['client_sizes']}), "
        f"all sampled every round, {c['rounds']} rounds, {c['epochs']} local "
        f"epoch(s), batch {c['batch']}, lr {c['lr']}, no shuffling (both sides "
        "see the same batches), CPU, torch threads 1, seed "
        f"{c['seed']}. Ours: {result['ours_env']}. BlazeFL 3.0: "
        f"{result['upstream_env']}. {result['machine']}, {result['date']}.",
        "",
        "| trainer | bitwise equal | max abs diff | elements differing | "
        "round-1 uploads equal (local training) | upstream aggregate of our "
        "uploads vs our global, max abs diff over rounds |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    for flavour in FLAVOURS:
        f = r[flavour]
        fg = f["final_global"]
        agg = max(
            a["max_abs_diff"]
            for a in f["upstream_aggregate_vs_our_aggregate_per_round"]
        )
        lines.append(
            f"| {flavour} | {'yes' if fg['bitwise_equal'] else 'no'} | "
            f"{fg['max_abs_diff']:.3g} | {fg['elements_differing']}/{fg['elements']} | "
            f"{'yes' if f['round1_uploads_bitwise_equal'] else 'no'} "
            f"(max {f['round1_uploads_max_abs_diff']:.3g}) | {agg:.3g} |"
        )
    lines += [
        "",
        "Per round, max abs diff of the global model (sequential trainer): "
        + ", ".join(f"{d['max_abs_diff']:.3g}" for d in r["base"]["per_round_global"]),
        "",
        f"Verdict: {result['verdict']}",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def verdict(report: dict[str, Any]) -> str:
    fg = report["base"]["final_global"]
    if fg["bitwise_equal"] and report["threads"]["final_global"]["bitwise_equal"]:
        return "bitwise equal: the same arithmetic on both sides."
    f = report["base"]
    agg = max(
        a["max_abs_diff"] for a in f["upstream_aggregate_vs_our_aggregate_per_round"]
    )
    local = (
        "local training is bitwise the same (round-1 uploads equal)"
        if f["round1_uploads_bitwise_equal"]
        else "local training already differs in round 1"
    )
    where = (
        "the aggregation differs (BlazeFL 3.0's aggregate of our own uploads is "
        f"not our global model, max {agg:.3g})"
        if agg > 0
        else "the aggregation of identical uploads is bitwise the same"
    )
    return f"not bitwise equal; {local}; {where}."


def machine() -> str:
    # Our side only: harness imports this interpreter's (our) blazefl.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import cpu_model

    model = cpu_model(platform.machine())
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", choices=["both", "upstream"], default="both")
    p.add_argument("--workdir", type=Path)
    p.add_argument(
        "--python",
        type=Path,
        default=DEFAULT_PYTHON,
        help="the 3.14 venv's python with blazefl 3.0.0",
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()
    if args.side == "upstream":
        upstream_main(args.workdir)
        return

    import blazefl

    if not args.python.exists():
        sys.exit(
            f"no BlazeFL 3.0 interpreter at {args.python}: run "
            "scripts/provision-blazefl3.sh first, or pass --python"
        )
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="blazefl-diff-") as tmp:
        workdir = Path(tmp)
        blob = make_input(args)
        torch.save(blob, workdir / "input.pt")
        # Ours from the saved file too, so both sides read the same bytes.
        blob = torch.load(workdir / "input.pt", weights_only=False)
        ours = {flavour: run_federation(blob, flavour) for flavour in FLAVOURS}
        torch.save(ours, workdir / "ours.pt")
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")
        }
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
        # Run from the temp dir so the repo's src/ can never shadow BlazeFL 3.0.
        subprocess.run(
            [
                str(args.python),
                str(Path(__file__).resolve()),
                "--side",
                "upstream",
                "--workdir",
                str(workdir),
            ],
            check=True,
            env=env,
            cwd=workdir,
        )
        up = torch.load(workdir / "upstream.pt", weights_only=False)
    report = compare(ours, up)
    ours_env = (
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"blazefl {blazefl.__version__} ({Path(blazefl.__file__).parent})"
    )
    ue = up["env"]
    result = {
        "config": blob["config"],
        "ours_env": ours_env,
        "upstream_env": f"Python {ue['python']}, torch {ue['torch']}, "
        f"blazefl {ue['blazefl']}",
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "report": report,
        "verdict": verdict(report),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "blazefl_differential.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8"
    )
    write_markdown(args.out / "blazefl_differential.md", result)
    for flavour in FLAVOURS:
        fg = report[flavour]["final_global"]
        print(
            f"{flavour}: bitwise equal: {'yes' if fg['bitwise_equal'] else 'no'}; "
            f"max |diff|: {fg['max_abs_diff']:.6g}"
        )
    print(result["verdict"])


if __name__ == "__main__":
    main()
