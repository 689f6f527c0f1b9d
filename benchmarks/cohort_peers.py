"""The peer columns of ``cohort.py --peers``: pfl-research, Flower, BlazeFL 3.0.

Each peer runs the same many-light-clients workloads in its own interpreter
and its own subprocess, one after another beside the blazefl variants, so the
ratios come from one run on one machine:

* ``pfl1`` / ``pfl2``: pfl-research 0.6.0 (`pfl_app.py`, ``.venv-pfl`` from
  ``scripts/provision-pfl.sh``), one process, or ``torchrun`` with 2 processes
  (gloo on 127.0.0.1);
* ``flower1`` / ``flower2``: Flower 1.42 simulation, Ray backend, 1 or 2
  actors (`flower_cohort.py`, ``.venv-flower`` from
  ``scripts/provision-flower.sh``);
* ``bfl3-base`` / ``bfl3-threads2`` / ``bfl3-processes2``: BlazeFL 3.0.0 itself
  on Python 3.14 (`blazefl3_cohort.py`, the venv of
  ``scripts/provision-blazefl3.sh``), its sequential, thread-pool and
  process-pool trainers.

A peer whose interpreter is missing is left out with the reason printed. Peak
RSS is that of the whole process tree (torchrun and its workers, Ray's daemons
and actors, the process pool), sampled every 0.1 s; the share of the CPUs that
*other* processes used while the variant ran is recorded beside it. Every
final model is scored on the workload's test set with the same
`blazefl.training.evaluate`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BLAZEFL3_PYTHON = Path(
    os.environ.get(
        "BLAZEFL3_PYTHON",
        Path.home() / ".cache" / "blazefl3" / "venv" / "bin" / "python",
    )
)
PYTHONS = {
    "pfl": ROOT / ".venv-pfl" / "bin" / "python",
    "flower": ROOT / ".venv-flower" / "bin" / "python",
    "bfl3": BLAZEFL3_PYTHON,
}
# variant -> (family, processes or threads it may use)
PEERS = {
    "pfl1": ("pfl", 1),
    "pfl2": ("pfl", 2),
    "flower1": ("flower", 1),
    "flower2": ("flower", 2),
    "bfl3-base": ("bfl3", 1),
    "bfl3-threads2": ("bfl3", 2),
    "bfl3-processes2": ("bfl3", 2),
}
LABELS = {"pfl": "pfl-research", "flower": "Flower", "bfl3": "BlazeFL 3.0"}
PROVISION = {
    "pfl": "scripts/provision-pfl.sh",
    "flower": "scripts/provision-flower.sh",
    "bfl3": "scripts/provision-blazefl3.sh",
}


def available(families: list[str]) -> list[str]:
    """The peer variants of ``families`` whose interpreter exists."""
    out = []
    for family in families:
        if not PYTHONS[family].exists():
            print(
                f"cohort: {LABELS[family]} left out: no {PYTHONS[family]} "
                f"(run {PROVISION[family]})",
                file=sys.stderr,
            )
            continue
        out += [v for v, (f, _) in PEERS.items() if f == family]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(
    variant: str, name: str, rounds: int, files: dict[str, Path], out: Path
) -> list[str]:
    family, workers = PEERS[variant]
    python = str(PYTHONS[family])
    common = ["--rounds", str(rounds), "--out", str(out)]
    if family == "pfl":
        app = [
            str(HERE / "pfl_app.py"),
            "--workload",
            name,
            "--data",
            str(files["data"]),
        ]
        if workers == 1:
            return [python, *app, *common]
        torchrun = str(PYTHONS["pfl"].parent / "torchrun")
        rdzv = ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
        return [
            torchrun,
            "--nnodes",
            "1",
            "--nproc-per-node",
            "2",
            *rdzv,
            *app,
            *common,
        ]
    if family == "flower":
        app = [str(HERE / "flower_cohort.py"), "--workload", name]
        return [
            python,
            *app,
            "--workers",
            str(workers),
            "--data",
            str(files["data"]),
            *common,
        ]
    flavour = variant.split("-")[1].rstrip("0123456789")
    return [
        python,
        str(HERE / "blazefl3_cohort.py"),
        "--run",
        "--blob",
        str(files["blob"]),
        "--flavour",
        flavour,
        "--workers",
        str(workers),
        *common,
    ]


def run_peer(
    variant: str, name: str, rounds: int, files: dict[str, Path], out: Path
) -> dict[str, Any]:
    """Run one peer variant; its round times, tree peak RSS, other load."""
    cmd = command(variant, name, rounds, files, out)
    got = launch(cmd, out, outside_repo=PEERS[variant][0] == "bfl3")
    got.update(workload=name, variant=variant)
    return got


def launch(
    cmd: list[str],
    out: Path,
    *,
    outside_repo: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``cmd`` in its own session; the JSON it wrote to ``out`` plus the
    median of rounds 2+, the tree's peak RSS and the other processes' load.
    ``outside_repo`` runs it from ``out``'s folder (BlazeFL 3.0: the repo's
    ``src/`` must never shadow it)."""
    from harness import LoadMonitor
    from procmon import TreeMonitor

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TQDM_DISABLE="1",
        GLOO_SOCKET_IFNAME="lo",
        PYTHONWARNINGS="ignore::FutureWarning",
    )
    env.update(extra_env or {})
    load = LoadMonitor()
    before = load.sample()
    cwd = out.parent if outside_repo else ROOT
    log = out.with_suffix(".log")
    with log.open("wb") as sink:
        child = subprocess.Popen(
            cmd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        with TreeMonitor(root=child.pid, interval=0.1) as monitor:
            code = child.wait(timeout=3600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # anything the run left behind
    other = load.foreign(before, load.sample())
    if code != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"failed (exit {code}): {cmd}\n{tail}")
    got: dict[str, Any] = json.loads(out.read_text())
    times = got["round_seconds"]
    got.update(
        median_seconds=statistics.median(times[1:] or times),
        peak_rss_mib=monitor.peak_rss_mib,
        other_load=other,
    )
    return got


def accuracy(name: str, data: Any, params: torch.Tensor) -> float:
    """Test accuracy of flat parameters ``params`` on workload ``name``."""
    import cohort

    from blazefl.core import deserialize_model
    from blazefl.training import evaluate

    with torch.random.fork_rng(devices=[]):
        model = cohort.Selector(data.input_shape).select_model(
            cohort.WORKLOADS[name]["model"]
        )
    deserialize_model(model, params)
    return evaluate(model, data.get_dataloader("test", None, 512))[1]


def summarise(
    name: str, got: dict[str, dict[str, Any]], tmp: Path, data: Any
) -> dict[str, Any]:
    """Per peer family: best variant, cohort's speed-up over it, the final
    model against the per-client loop's, test accuracy."""
    ref = torch.load(tmp / f"{name}-bare1.pt")
    cohort_best = min(got[v]["median_seconds"] for v in ("cohort1", "cohort2"))
    row: dict[str, Any] = {
        "workload": name,
        "acc_bare": accuracy(name, data, ref),
        "acc_cohort": accuracy(name, data, torch.load(tmp / f"{name}-cohort1.pt")),
        "other_load": {v: r.get("other_load") for v, r in got.items()},
        "peers": {},
    }
    for family in LABELS:
        mine = [v for v in got if v in PEERS and PEERS[v][0] == family]
        if not mine:
            continue
        best = min(mine, key=lambda v: got[v]["median_seconds"])
        diffs = {}
        for v in mine:
            params = torch.load(tmp / f"{name}-{v}.pt")
            diffs[v] = float((params - ref).abs().max())
        row["peers"][family] = {
            "seconds": {v: got[v]["median_seconds"] for v in mine},
            "best": best,
            "speedup": got[best]["median_seconds"] / cohort_best,
            "peak_rss_mib": {v: got[v]["peak_rss_mib"] for v in mine},
            "max_abs_diff": diffs,
            "bitwise": {v: d == 0.0 for v, d in diffs.items()},
            "accuracy": accuracy(name, data, torch.load(tmp / f"{name}-{best}.pt")),
        }
    if "pfl" in row["peers"]:
        row["pfl_diagnosis"] = pfl_diagnosis(name, tmp / f"{name}.data", tmp)
    return row


def pfl_diagnosis(name: str, data_file: Path, tmp: Path) -> dict[str, Any]:
    """`pfl_app.py --diagnose`: round 1's uploads vs the per-client loop's
    local training, and blazefl's FedAvg of them vs pfl's aggregate."""
    out = tmp / f"{name}-pfl-diagnosis.json"
    cmd = [str(PYTHONS["pfl"]), str(HERE / "pfl_app.py"), "--diagnose"]
    cmd += ["--workload", name, "--data", str(data_file), "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(cmd, check=True, cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"})
    diagnosis: dict[str, Any] = json.loads(out.read_text())
    return diagnosis


def table(rows: list[dict[str, Any]], targets: dict[str, float]) -> str:
    lines = [
        "| workload | peer | s/round per variant (processes or threads) | "
        "cohort speed-up vs best peer variant | target | peak RSS MiB (tree) | "
        "max abs diff vs per-client loop | test acc peer / per-client / cohort |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for family, p in r["peers"].items():
            secs = ", ".join(f"{v} {s:.3f}" for v, s in p["seconds"].items())
            rss = ", ".join(f"{m:.0f}" for m in p["peak_rss_mib"].values())
            diff = ", ".join(
                "0 (bitwise)" if d == 0 else f"{d:.2e}"
                for d in p["max_abs_diff"].values()
            )
            lines.append(
                f"| {r['workload']} | {LABELS[family]} | {secs} | "
                f"**{p['speedup']:.1f}x** (vs {p['best']}) | >= "
                f"{targets[r['workload']]:.0f}x | {rss} | {diff} | "
                f"{p['accuracy']:.4f} / {r['acc_bare']:.4f} / {r['acc_cohort']:.4f} |"
            )
    for r in rows:
        d = r.get("pfl_diagnosis")
        if d:
            lines.append(
                f"\npfl, {r['workload']}, round 1 (`pfl_app.py --diagnose`): "
                f"{d['uploads_bitwise_equal']}/{d['clients']} client uploads bitwise "
                "equal to `blazefl.training.train` on the same batches (max abs diff "
                f"{d['uploads_max_abs_diff']:.2e}); blazefl's FedAvg of those very "
                "uploads vs pfl's aggregate: max abs diff "
                f"{d['fedavg_of_pfl_uploads_vs_pfl_model_max_abs_diff']:.2e}."
            )
    return "\n".join(lines)


NOTES = """\
Cores: every variant runs torch with one intra-op thread per process or
thread, so `pfl1`, `flower1` and `bfl3-base` use one core, `pfl2` (torchrun, 2
processes), `flower2` (2 Ray actors), `bfl3-threads2` and `bfl3-processes2`
two, like `bare2` and `cohort2`; the speed-up is the best cohort variant over
the best variant of the peer (both on at most the machine's 2 cores). Peer
round times: pfl's `after_central_iteration` callback (rank 0), the Flower
ServerApp around each round (node discovery and Ray start-up excluded),
BlazeFL 3.0's own loop around `sample_clients` .. `load`.

Final models: Flower runs the per-client loop's arithmetic (same server, same
per-client RNG suites, `blazefl.training.train`) and is bitwise equal to it.
pfl trains every client on the same batches (its `make_dataset_fn` hands pfl
each client's rows in the order the loop's DataLoader draws them) with the
same SGD step, but aggregates differently: the float32 sum of n_k * (x_k - x)
(all-reduced across processes under torchrun), divided by sum n_k and added to
x, where blazefl's FedAvg sums n_k * x_k in float32, in slot order, and
divides by sum n_k; hence differences of float32 rounding size. BlazeFL 3.0
draws batch orders from its own generators (seed + cid, or one generator for
all clients in its sequential trainer), so its model differs by more than
rounding; the test accuracies show that all of them learn the same thing."""
