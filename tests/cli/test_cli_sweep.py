"""`blazefl sweep`: a grid over seeds, its summary, resume after kill -9, failures."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from cli_helpers import SMALL, final_params, invoke, metrics, wait_until
from leaks import children_of, pid_alive

GRID = ["--grid", "lr=0.05,0.1", "--grid", "algorithm=fedavg,fedprox"]
TARGET = 0.2


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 x 2 grid x 3 seeds of tiny runs, two at a time."""
    out = tmp_path_factory.mktemp("sweep") / "study"
    result = invoke(
        "sweep", *SMALL, *GRID, "--seeds", "0-2", "--parallel", "2",
        "--target-acc", str(TARGET), "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def _expected(values: list[float]) -> tuple[float, float, float, float]:
    """mean, std, CI bounds by numpy and scipy, independently of blazefl."""
    a = np.asarray(values, dtype=np.float64)
    low, high = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    return float(a.mean()), float(a.std(ddof=1)), float(low), float(high)


def _run_statistics(folder: Path) -> dict[str, float | None]:
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    accs = [r["test_acc"] for r in rows]
    reached = [r["round"] for r in rows if r["test_acc"] >= TARGET]
    return {
        "final_acc": accs[-1],
        "best_acc": max(accs),
        "final_loss": rows[-1]["test_loss"],
        "rounds_to_target": float(reached[0]) if reached else None,
        "seconds": math.fsum(r["seconds"] for r in rows),
    }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sweep_summary_matches_the_runs_metrics(sweep: Path) -> None:
    """Every summary.csv cell is the mean/std/t-interval of the runs' own metrics."""
    manifest = _manifest(sweep)
    assert len(manifest["runs"]) == 12
    assert {e["status"] for e in manifest["runs"]} == {"complete"}
    rows = _rows(sweep / "summary.csv")
    assert len(rows) == 4
    assert list(rows[0])[:4] == ["lr", "algorithm", "n_seeds", "n_failed"]
    for row in rows:
        runs = [
            sweep / e["folder"]
            for e in manifest["runs"]
            if str(e["point"]["lr"]) == row["lr"]
            and e["point"]["algorithm"] == row["algorithm"]
        ]
        assert row["n_seeds"] == "3"
        assert len(runs) == 3
        per_run = [_run_statistics(run) for run in runs]
        for name in ("final_acc", "best_acc", "final_loss", "seconds"):
            got = [float(row[f"{name}_{m}"]) for m in ("mean", "std")]
            got += [float(row[f"{name}_ci95_{b}"]) for b in ("low", "high")]
            want = _expected([float(v[name]) for v in per_run])  # type: ignore[arg-type]
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), name
        reached = [v["rounds_to_target"] for v in per_run if v["rounds_to_target"]]
        if reached:
            assert float(row["rounds_to_target_mean"]) == pytest.approx(
                sum(reached) / len(reached)
            )
    for name in ("summary.md", "accuracy.png", "final_acc.png"):
        assert (sweep / name).stat().st_size > 0
    assert "Student's t" in (sweep / "summary.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_sweep_run_is_an_ordinary_run_that_its_config_reproduces(
    sweep: Path, tmp_path: Path
) -> None:
    """`blazefl run --config RUN/config.toml` gives the run again, bit for bit."""
    entry = _manifest(sweep)["runs"][7]
    run = sweep / entry["folder"]
    config = (run / "config.toml").read_text()
    assert f"seed = {entry['seed']}" in config
    assert f'algorithm = "{entry["point"]["algorithm"]}"' in config
    summary = json.loads((run / "summary.json").read_text())
    assert {"python", "torch", "blazefl"} <= set(summary["versions"])
    assert "git" in summary

    again = tmp_path / "again"
    result = invoke("run", "--config", run / "config.toml", "--out", again)

    assert result.exit_code == 0, result.output
    assert torch.equal(final_params(again), final_params(run))
    assert metrics(again) == metrics(run)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compare_draws_the_same_summary_from_the_folders(
    sweep: Path, tmp_path: Path
) -> None:
    """`blazefl compare SWEEP` groups by the settings that differ: same numbers."""
    result = invoke("compare", sweep, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    ours = {(r["lr"], r["algorithm"]): r for r in _rows(sweep / "summary.csv")}
    theirs = _rows(tmp_path / "cmp" / "summary.csv")
    assert len(theirs) == 4
    for row in theirs:
        same = ours[(row["lr"], row["algorithm"])]
        assert row["final_acc_mean"] == same["final_acc_mean"]
        assert row["final_acc_ci95_low"] == same["final_acc_ci95_low"]
    assert "rounds_to_target_mean" not in theirs[0]  # no --target-acc
    assert (tmp_path / "cmp" / "accuracy.png").is_file()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compare_of_two_run_folders(sweep: Path, tmp_path: Path) -> None:
    """Two runs differing in the algorithm: two rows of one seed each."""
    runs = [sweep / e["folder"] for e in _manifest(sweep)["runs"][:4:3]]
    result = invoke("compare", *runs, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "cmp" / "summary.csv")
    assert [r["algorithm"] for r in rows] == ["fedavg", "fedprox"]
    assert [r["n_seeds"] for r in rows] == ["1", "1"]
    assert rows[0]["final_acc_std"] == ""  # one sample: no spread, no interval


KILL_ARGS = [
    "--clients", "6", "--rounds", "8", "--sample-ratio", "0.5", "--epochs", "1",
    "--grid", "lr=0.05,0.1", "--seeds", "0-1",
]  # fmt: skip


def _without_time(path: Path) -> list[dict[str, str]]:
    return [
        {k: v for k, v in row.items() if not k.startswith("seconds")}
        for row in _rows(path)
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_after_kill_9_gives_the_uninterrupted_summary(tmp_path: Path) -> None:
    """kill -9 in the middle of a run, then --resume: the same summary and models."""
    reference = tmp_path / "reference"
    result = invoke("sweep", *KILL_ARGS, "--out", reference, "--quiet")
    assert result.exit_code == 0, result.output

    killed = tmp_path / "killed"
    with (tmp_path / "sweep.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "blazefl.cli", "sweep", *KILL_ARGS, "--out",
             str(killed), "--quiet"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    second = killed / "runs" / "001-lr=0.05-seed1"

    def mid_second_run() -> bool:
        # the checkpoint of round k is saved after round k's metrics line
        return (second / "checkpoint.ckpt").exists()

    try:
        assert wait_until(mid_second_run, 300), (tmp_path / "sweep.log").read_text()
        workers = children_of(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        assert wait_until(lambda: not any(map(pid_alive, workers)), 30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not (second / "summary.json").exists()  # killed inside the run
    assert not (killed / "summary.csv").exists()

    result = invoke("sweep", "--resume", killed, "--quiet")

    assert result.exit_code == 0, result.output
    assert _without_time(killed / "summary.csv") == _without_time(
        reference / "summary.csv"
    )
    for entry in _manifest(reference)["runs"]:
        assert torch.equal(
            final_params(killed / entry["folder"]),
            final_params(reference / entry["folder"]),
        )
        assert metrics(killed / entry["folder"]) == metrics(reference / entry["folder"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigint_stops_the_sweep_with_checkpoints_and_resume_finishes(
    tmp_path: Path,
) -> None:
    """SIGINT to the sweep: its run saves a checkpoint, exit 130, --resume ends it."""
    out = tmp_path / "sweep"
    args = [*SMALL, "--rounds", "8", "--seeds", "0-1", "--out", str(out), "--quiet"]
    with (tmp_path / "sweep.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "blazefl.cli", "sweep", *args],
            stdout=log,
            stderr=log,
        )
    first = out / "runs" / "000-seed0"
    try:
        assert wait_until(lambda: (first / "checkpoint.ckpt").exists(), 300)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130, (tmp_path / "sweep.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    runs = _manifest(out)["runs"]
    assert runs[0]["status"] in ("interrupted", "complete")
    assert runs[1]["status"] in ("pending", "interrupted")
    assert "blazefl sweep --resume" in (tmp_path / "sweep.log").read_text()

    result = invoke("sweep", "--resume", out, "--quiet")

    assert result.exit_code == 0, result.output
    assert {e["status"] for e in _manifest(out)["runs"]} == {"complete"}
    assert len(_rows(out / "summary.csv")) == 1
