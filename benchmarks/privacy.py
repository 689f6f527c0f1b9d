"""Privacy: test accuracy against ε, and what DP and secure aggregation cost.

Two questions (issue 16):

1. How much accuracy does central DP-FedAvg (McMahan et al. 2018) give up for
   a given (ε, δ)? FedAvg on the built-in digits (scikit-learn's 1,797 8x8
   images, 200 clients, 50 a round), the zoo's MLP (4,810 parameters), with no
   DP and with three noise multipliers σ at one clip norm C; ε from the RDP
   accountant (sampling without replacement, replace-one), δ = 1e-4 (< 1/n).
2. What does privacy cost per round? The same federation's median round time
   with DP, with secure aggregation, and with both, over plain FedAvg (ratios,
   same executor, rounds >= 2), and secure aggregation's extra bytes a round.

Run from the repository root::

    .venv/bin/python benchmarks/privacy.py            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/privacy.py --quick    # under 8 minutes

Results go to ``benchmarks/results/privacy.{json,md}`` (``privacy-quick.*``
with ``--quick``); ``--update-docs`` also rewrites the table in
``docs/privacy.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from blazefl.algorithms import FedAvg, FederatedClient, FederatedServer  # noqa: E402
from blazefl.data import load_digits_dataset  # noqa: E402
from blazefl.models import ModelZoo  # noqa: E402
from blazefl.privacy import Privacy  # noqa: E402
from blazefl.sim import Simulation, ThreadExecutor  # noqa: E402

CLIENTS = 200
PER_ROUND = 50
CLIP = 1.0
DELTA = 1e-4
NOISES = (1.0, 2.0, 4.0)
DOCS = ROOT / "docs" / "privacy.md"
DOCS_START = "<!-- privacy-table:start -->"
DOCS_END = "<!-- privacy-table:end -->"


def run(privacy: Privacy, rounds: int, seed: int, data: Any) -> dict[str, Any]:
    """One federation; the accuracy after each round and the round times."""
    zoo = ModelZoo(input_shape=data.input_shape, num_classes=data.num_classes)
    algorithm = FedAvg()
    server = FederatedServer(
        algorithm,
        zoo,
        "mlp",
        dataset=data,
        num_clients=CLIENTS,
        rounds=rounds,
        sample_ratio=PER_ROUND / CLIENTS,
        seed=seed,
        privacy=privacy,
    )
    client = FederatedClient(
        algorithm, zoo, "mlp", data, epochs=2, batch_size=8, lr=0.3, privacy=privacy
    )
    sim: Simulation[Any, Any] = Simulation(
        server, client, executor=ThreadExecutor(2), seed=seed
    )
    results = sim.run_sync()
    out: dict[str, Any] = {
        "accuracy": [r.summary["server_acc"] for r in results],
        "seconds": [r.seconds for r in results],
        "epsilon": [r.summary.get("epsilon") for r in results],
    }
    if server.privacy is not None and server.privacy.last_secagg is not None:
        out["secagg_extra_bytes"] = server.privacy.last_secagg.extra_bytes
    return out


def _dp(sigma: float, **kwargs: Any) -> Privacy:
    return Privacy(
        dp="central", noise_multiplier=sigma, clip_norm=CLIP, delta=DELTA, **kwargs
    )


def _median_after_first(seconds: list[float]) -> float:
    return statistics.median(seconds[1:])


def _git() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, one seed")
    parser.add_argument(
        "--update-docs", action="store_true", help="rewrite docs/privacy.md's table"
    )
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    from blazefl.sim import configure_logging

    configure_logging("console", level="warning")
    torch.set_num_threads(1)
    rounds = 20 if args.quick else 40
    seeds = (0,) if args.quick else (0, 1)
    data = load_digits_dataset(CLIENTS, seed=0)

    accuracy_rows = []
    runs: dict[str, list[dict[str, Any]]] = {}
    settings: list[tuple[str, Privacy, float | None]] = [("no DP", Privacy(), None)]
    settings += [(f"sigma={sigma}", _dp(sigma), sigma) for sigma in NOISES]
    for label, privacy, sigma in settings:
        runs[label] = [run(privacy, rounds, seed, data) for seed in seeds]
        finals = [r["accuracy"][-1] for r in runs[label]]
        eps = runs[label][0]["epsilon"][-1]
        accuracy_rows.append(
            {
                "setting": label,
                "noise_multiplier": sigma,
                "clip_norm": CLIP if sigma else None,
                "epsilon": eps,
                "delta": DELTA if sigma else None,
                "final_accuracy_mean": statistics.fmean(finals),
                "final_accuracy_per_seed": finals,
                "best_accuracy_mean": statistics.fmean(
                    max(r["accuracy"]) for r in runs[label]
                ),
            }
        )
        print(label, accuracy_rows[-1], flush=True)

    # Overhead: interleave the variants round by round is overkill here; each
    # variant runs the same rounds back to back, twice, and the ratio uses the
    # median round time from round 2 on.
    overhead_rounds = 8 if args.quick else 15
    variants = {
        "plain FedAvg": Privacy(),
        "central DP": _dp(1.0),
        "secure aggregation": Privacy(secagg=True, secret=1),
        "central DP + secagg": _dp(1.0, secagg=True, secret=1),
    }
    timings: dict[str, list[float]] = {k: [] for k in variants}
    extra_bytes: dict[str, int | None] = {}
    for _ in range(2):
        for label, privacy in variants.items():
            out = run(privacy, overhead_rounds, 7, data)
            timings[label].append(_median_after_first(out["seconds"]))
            extra_bytes[label] = out.get("secagg_extra_bytes")
    base = statistics.median(timings["plain FedAvg"])
    overhead_rows = [
        {
            "variant": label,
            "median_round_seconds": statistics.median(t),
            "ratio_to_plain": statistics.median(t) / base,
            "secagg_extra_bytes_per_round": extra_bytes[label],
        }
        for label, t in timings.items()
    ]
    for row in overhead_rows:
        print(row, flush=True)

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": __import__("os").cpu_count(),
        "quick": args.quick,
        "rounds": rounds,
        "seeds": list(seeds),
        "clients": CLIENTS,
        "per_round": PER_ROUND,
    }
    stem = "privacy-quick" if args.quick else "privacy"
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"{stem}.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "accuracy": accuracy_rows,
                "overhead": overhead_rows,
                "curves": {k: [r["accuracy"] for r in v] for k, v in runs.items()},
            },
            indent=2,
        )
        + "\n"
    )
    table = markdown(meta, accuracy_rows, overhead_rows)
    (results / f"{stem}.md").write_text(table)
    if args.update_docs:
        text = DOCS.read_text()
        head, rest = text.split(DOCS_START, 1)
        _, tail = rest.split(DOCS_END, 1)
        DOCS.write_text(f"{head}{DOCS_START}\n{table}{DOCS_END}{tail}")
    print(f"wrote {results / stem}.{{json,md}}")


def markdown(
    meta: dict[str, Any], accuracy: list[dict[str, Any]], overhead: list[dict[str, Any]]
) -> str:
    """The two tables, as docs/privacy.md shows them."""
    quick = " --quick" if meta["quick"] else ""
    lines = [
        f"FedAvg on digits ({meta['clients']} clients, {meta['per_round']} a round, "
        f"MLP, 2 local epochs), {meta['rounds']} rounds, seeds {meta['seeds']}; "
        f"central DP with C = {CLIP}, RDP accountant, delta = {DELTA}. Machine: "
        f"{meta['cpus']} CPUs, Python {meta['python']}, torch {meta['torch']}, "
        f"blazefl {meta['git']}, {meta['date']}. Reproduce: "
        f"`.venv/bin/python benchmarks/privacy.py{quick}`.",
        "",
        "| setting | noise multiplier | epsilon | final test accuracy "
        "| best test accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in accuracy:
        eps = "-" if row["epsilon"] is None else f"{row['epsilon']:.2f}"
        sigma = row["noise_multiplier"] or "-"
        lines.append(
            f"| {row['setting']} | {sigma} | {eps} | "
            f"{row['final_accuracy_mean']:.3f} | {row['best_accuracy_mean']:.3f} |"
        )
    lines += [
        "",
        "| variant | median round s (rounds >= 2) | ratio to plain FedAvg "
        "| secagg extra bytes a round |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in overhead:
        extra = row["secagg_extra_bytes_per_round"]
        lines.append(
            f"| {row['variant']} | {row['median_round_seconds']:.3f} | "
            f"{row['ratio_to_plain']:.2f} | {'-' if extra is None else f'{extra:,}'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
