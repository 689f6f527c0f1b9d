"""benchmarks/gpu.py's logic on the CPU (``--device cpu --quick``): variants,
determinism checks, the budget guard and the files it writes. The GPU run
itself is a prepared step on a GPU machine (benchmarks/gpu_run.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
IN_PROCESS = "threads-1,threads-4,cohort-auto,cohort-4x2,cohort-4x1,cohort-auto-again"


def _run(
    out: Path, *args: str, device: str = "cpu"
) -> tuple[subprocess.CompletedProcess[str], Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", device, "--quick", "--out", str(out),
         *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    report = None
    if (out / "gpu-quick.json").exists():
        report = json.loads((out / "gpu-quick.json").read_text())
    return done, report


def test_in_process_variants_pass_their_promised_checks(tmp_path: Path) -> None:
    """Threads and cohort variants on the CPU: promised checks pass, others measured."""
    done, report = _run(tmp_path, "--variants", IN_PROCESS)
    assert done.returncode == 0, done.stderr
    assert list(report["variants"]) == IN_PROCESS.split(",")
    assert all(
        v["complete"] and v["rounds_done"] == 2 for v in report["variants"].values()
    )
    results = {c["check"]: c for c in report["checks"]}
    promised = [c for c in results.values() if c["promised_bitwise"]]
    cohort = [c for c in promised if c["check"].startswith("cohort")]
    assert [c["result"] for c in cohort] == ["pass", "pass"]
    per_client = promised[0]
    assert per_client["variants"] == ["threads-1", "threads-4"]
    assert per_client["result"] == "pass"
    assert per_client["missing"] == ["processes-2", "processes-4", "threads-4-again"]
    measured = [c for c in results.values() if not c["promised_bitwise"]]
    assert all(c["result"] == "measured" for c in measured)
    assert all(c["max_abs_diff"] < 1e-4 for c in measured)
    text = (tmp_path / "gpu-quick.md").read_text()
    assert "| threads-4 | threads | 4 |" in text
    assert "load average" in text


def test_the_budget_guard_skips_and_says_so(tmp_path: Path) -> None:
    """A spent budget: every variant is skipped with why, checks skipped, exit 0."""
    done, report = _run(tmp_path, "--budget-s", "0", "--variants", "threads-1")
    assert done.returncode == 0, done.stderr
    assert report["variants"] == {}
    assert report["skipped"]["threads-1"].startswith("budget: ")
    assert all(c["result"].startswith("skipped") for c in report["checks"])
    assert "| threads-1 | skipped |" in (tmp_path / "gpu-quick.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_a_failing_variant_is_recorded_and_fails_the_run(tmp_path: Path) -> None:
    """--device cuda without a GPU: each variant fails with why; exit code 1."""
    done, report = _run(tmp_path, "--variants", "threads-1", device="cuda")
    assert done.returncode == 1
    assert "no CUDA device is visible" in report["failed"]["threads-1"]
    assert "FAILED: variant threads-1" in done.stderr
    assert "| threads-1 | FAILED |" in (tmp_path / "gpu-quick.md").read_text()


@pytest.mark.slow
def test_every_variant_with_processes(tmp_path: Path) -> None:
    """The whole quick run, process workers included: every promised check passes."""
    done, report = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(report["variants"]) == 9
    promised = [c for c in report["checks"] if c["promised_bitwise"]]
    assert [c["result"] for c in promised] == ["pass", "pass", "pass"]
    assert len(promised[0]["variants"]) == 5
