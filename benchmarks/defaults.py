"""Do the algorithms' CLI defaults train? `blazefl run --rounds 5` for each one.

The question (issue "defaults that train"): with nothing but ``--algorithm
NAME --rounds 5`` on the built-in data, does every algorithm learn? The
script runs exactly that for every algorithm in `blazefl.algorithms.ALGORITHMS`
and, with ``--search``, also a small grid over one setting per algorithm
(``--server-lr`` for the FedOpt family, ``--mu`` for FedProx, ``--momentum``
for FedAvgM), so the chosen defaults can be checked against their neighbours.
Each run is a real `blazefl run` in its own process (the README's default
data set, model, clients and executor); the figure is the final test
accuracy from its ``metrics.jsonl``.

FedBN runs where it applies: the CNN with BatchNorm on contrast-shifted
clients (``--model cnn_bn --feature-shift contrast``). For the personalized
algorithms the test accuracy is the *global* model's, on the server's test
set: for FedPer and FedRep (whose global head never trains) and FedBN (whose
global BatchNorm never trains) it is low by design; their per-client
accuracy is in results/personalization.md.

Per-client evaluation is off in a default run (it holds out a share of each
client's training rows, which would change the run's numbers), so the
default run never reports ``client_acc_mean``. For the algorithms that
personalize (``Algorithm.personalized``: Ditto, FedPer, FedRep, FedBN, APFL,
fine-tuning) the script makes a second run of the same command with
``--evaluate-clients`` and shows its ``client_acc_mean`` and
``client_global_acc_mean``: the mean over clients of each client's own model,
and of the global model, on the client's held-out 20% (the default
``--client-test-fraction``). That run trains on the other 80%, so the two
columns compare with each other, not with the default run's test accuracy.

Reproduce (about 1 minute per run on 2 idle cores)::

    .venv/bin/python benchmarks/defaults.py             # results/defaults.{json,md}
    .venv/bin/python benchmarks/defaults.py --search    # ... and the grids
    .venv/bin/python benchmarks/defaults.py --only ditto fedbn  # rerun some
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from blazefl.algorithms import ALGORITHMS
from blazefl.algorithms._settings import settings_of

RESULTS = Path(__file__).with_name("results")

# One setting per algorithm to search around its default, with the values.
GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "fedavgm": ("momentum", (0.0, 0.5, 0.9)),
    "fedprox": ("mu", (0.001, 0.01, 0.1)),
    "fedadam": ("server_lr", (0.003, 0.01, 0.03, 0.1)),
    "fedyogi": ("server_lr", (0.003, 0.01, 0.03, 0.1)),
    "fedadagrad": ("server_lr", (0.01, 0.03, 0.1, 0.3)),
}
# Options an algorithm needs to apply at all.
NEEDS: dict[str, list[str]] = {
    "fedbn": ["--model", "cnn_bn", "--feature-shift", "contrast"],
}


def run_metrics(algorithm: str, rounds: int, extra: list[str]) -> dict[str, Any]:
    """The last ``metrics.jsonl`` row of ``blazefl run --algorithm ALGORITHM
    --rounds R``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "blazefl.cli", "run", "--algorithm", algorithm]
        cmd += ["--rounds", str(rounds), "--out", str(out), "--quiet"]
        cmd += [*NEEDS.get(algorithm, []), *extra]
        subprocess.run(cmd, check=True, capture_output=True, timeout=900)
        last = (out / "metrics.jsonl").read_text().splitlines()[-1]
        row: dict[str, Any] = json.loads(last)
        return row


def run(algorithm: str, rounds: int, extra: list[str]) -> float:
    """Final test accuracy of ``blazefl run --algorithm ALGORITHM --rounds R``."""
    return float(run_metrics(algorithm, rounds, extra)["test_acc"])


def defaults_of(name: str) -> dict[str, object]:
    return {
        s.name: s.default
        for s in settings_of(ALGORITHMS[name])
        if not s.federation_size
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--search", action="store_true")
    parser.add_argument(
        "--only", nargs="+", choices=list(ALGORITHMS), help="rerun these; keep the rest"
    )
    args = parser.parse_args()
    started = time.time()
    previous = RESULTS / "defaults.json"
    kept: dict[str, dict[str, Any]] = {}
    if args.only and previous.exists():
        kept = {r["algorithm"]: r for r in json.loads(previous.read_text())["defaults"]}
    rows = []
    for name in ALGORITHMS:
        if args.only and name not in args.only and name in kept:
            rows.append(kept[name])
            continue
        last = run_metrics(name, args.rounds, [])
        acc = float(last["test_acc"])
        row = {"algorithm": name, "defaults": defaults_of(name), "test_acc": acc}
        if NEEDS.get(name):
            row["options"] = " ".join(NEEDS[name])
        if ALGORITHMS[name].personalized:
            # A separate run: per-client evaluation takes rows from training.
            own = run_metrics(name, args.rounds, ["--evaluate-clients"])
            row["client_acc_mean"] = float(own["client_acc_mean"])
            row["client_global_acc_mean"] = float(own["client_global_acc_mean"])
        rows.append(row)
        print(f"{name}: {acc:.3f}", flush=True)
    grids: list[dict[str, object]] = []
    if not args.search and previous.exists():
        # Keep the grids of an earlier --search run, with when they were run.
        old = json.loads(previous.read_text())
        grids = old.get("grids", [])
        grids_machine = old.get("grids_machine", old.get("machine"))
    if args.search:
        for name, (key, values) in GRIDS.items():
            for value in values:
                flag = "--" + key.replace("_", "-")
                acc = run(name, args.rounds, [flag, str(value)])
                grids.append({"algorithm": name, key: value, "test_acc": acc})
                print(f"{name} {key}={value}: {acc:.3f}", flush=True)
    machine = (
        f"{platform.machine()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    RESULTS.mkdir(exist_ok=True)
    if args.search:
        grids_machine = machine
    doc = {
        "rounds": args.rounds,
        "machine": machine,
        "defaults": rows,
        "grids": grids,
        "grids_machine": grids_machine if grids else None,
    }
    (RESULTS / "defaults.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"`blazefl run --algorithm NAME --rounds {args.rounds}` on the built-in "
        f"data (synthetic, cnn, 20 clients, 10 per round). {machine}; "
        f"{(time.time() - started) / 60:.1f} min.",
        "",
        "| algorithm | defaults | test acc | per-client acc: own model "
        "| per-client acc: global model |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        shown = ", ".join(f"{k}={v}" for k, v in row["defaults"].items())
        if row.get("options"):
            shown = f"{shown}; {row['options']}" if shown else row["options"]
        own, glob = row.get("client_acc_mean"), row.get("client_global_acc_mean")
        own_text = "-" if own is None else f"{own:.3f}"
        glob_text = "-" if glob is None else f"{glob:.3f}"
        lines.append(
            f"| {row['algorithm']} | {shown or '-'} | {row['test_acc']:.3f} "
            f"| {own_text} | {glob_text} |"
        )
    lines += [
        "",
        "Test acc: the global model on the server's test set. FedPer, FedRep and "
        "FedBN never train the global head or BatchNorm, so theirs is low by "
        "design. Per-client acc, for the algorithms that personalize: a second "
        "run of the same command with --evaluate-clients, the mean over clients "
        "of each client's own model (client_acc_mean) and of the global model "
        "(client_global_acc_mean) on the client's held-out 20% of its training "
        "rows; that run trains on the other 80%, so compare these two columns "
        "with each other, not with test acc. results/personalization.md has "
        "the longer study (20 rounds).",
    ]
    if grids:
        lines += [
            "",
            f"Grids around the defaults ({grids_machine}):",
            "",
            "| algorithm | setting | test acc |",
            "| --- | --- | ---: |",
        ]
        for g in grids:
            key = next(k for k in g if k not in ("algorithm", "test_acc"))
            lines.append(f"| {g['algorithm']} | {key}={g[key]} | {g['test_acc']:.3f} |")
    (RESULTS / "defaults.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
