"""benchmarks/profile_round.py on its tiny workload: the categories of every
role add up to that role's sampled time, the roles to the total, training is
found where the executor trains, and a second invocation keeps the runs of the
first. No time is asserted: only that the accounting adds up."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "profile_round.py"


def _profile(out: Path, *runs: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = [a for run in runs for a in ("--run", run)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--no-cprofile", "--label", "t",
         "--out", str(out), *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads((out / "profile_round-t.json").read_text())
    return report


def _check_adds_up(run: dict[str, Any]) -> None:
    per_round = run["per_round"]
    categories = per_round["categories"]
    for role in per_round["roles"]:
        by_category = sum(c["by_role"][role] for c in categories.values())
        assert math.isclose(by_category, per_round["role_total_ms"][role], rel_tol=1e-9)
    assert math.isclose(
        sum(c["total_ms"] for c in categories.values()), per_round["total_ms"]
    )
    assert math.isclose(
        sum(per_round["role_total_ms"].values()), per_round["total_ms"], rel_tol=1e-9
    )
    idle = categories["idle (waiting for work or results)"]["total_ms"]
    assert math.isclose(per_round["busy_ms"], per_round["total_ms"] - idle)
    # The main thread is watched for the whole sampled round.
    assert per_round["role_total_ms"]["main thread"] > 0


def test_threads_and_inline_add_up_and_find_training(tmp_path: Path) -> None:
    report = _profile(tmp_path, "exchange:threads:2", "exchange:inline")
    runs = {r["name"]: r for r in report["runs"]}
    assert list(runs) == ["exchange/threads(2)", "exchange/inline"]
    for run in runs.values():
        _check_adds_up(run)
        assert run["worker_processes"] == 0
        assert run["config"]["clients_per_round"] == 4
    threads = runs["exchange/threads(2)"]["per_round"]
    assert threads["roles"] == ["main thread", "worker threads"]
    assert threads["categories"]["local training"]["by_role"]["worker threads"] > 0
    inline = runs["exchange/inline"]["per_round"]
    assert inline["categories"]["local training"]["by_role"]["main thread"] > 0
    text = (tmp_path / "profile_round-t.md").read_text()
    assert "### exchange/threads(2)" in text
    assert "| category | main thread ms | worker threads ms | total ms |" in text
    assert "| **all** |" in text
    summary = subprocess.run(
        [sys.executable, str(SCRIPT), "--summary", "--label", "t", "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout.splitlines()  # fmt: skip
    assert summary[0] == "| category | exchange/threads(2) | exchange/inline |"
    assert summary[-4].startswith("| **busy thread time** |")


@pytest.mark.slow
def test_processes_profile_their_workers_and_runs_are_kept(tmp_path: Path) -> None:
    _profile(tmp_path, "exchange:inline")
    report = _profile(tmp_path, "exchange:processes:2")
    runs = {r["name"]: r for r in report["runs"]}
    assert list(runs) == ["exchange/inline", "exchange/processes(2)"]
    run = runs["exchange/processes(2)"]
    _check_adds_up(run)
    assert run["worker_processes"] == 2
    categories = run["per_round"]["categories"]
    assert categories["local training"]["by_role"]["worker processes"] > 0
    assert categories["serialisation / payload transport"]["total_ms"] > 0
