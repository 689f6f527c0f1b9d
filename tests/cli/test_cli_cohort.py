"""`blazefl run --executor cohort`: every algorithm, refusals, resume rules."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import torch

from blazefl.algorithms import ALGORITHMS
from cli_helpers import SMALL, PausedRun, checkpoint, final_params, invoke, metrics

COHORT = ["--executor", "cohort", "--workers", "2", "--max-cohort", "2"]
ONE_ROUND = ["--clients", "4", "--rounds", "1", "--epochs", "1"]


@pytest.fixture(scope="module")
def cohort_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small federation on the cohort executor, undisturbed."""
    out = tmp_path_factory.mktemp("cohort") / "run"
    result = invoke("run", *SMALL, *COHORT, "--out", out)
    assert result.exit_code == 0, result.output
    return out


# Personalized algorithms train what a client keeps in their own Python client
# update: the cohort executor refuses them (below).
# Fine-tuning trains as FedAvg does (it personalizes at evaluation only).
PERSONALIZED = sorted(
    n for n, a in ALGORITHMS.items() if a.personalized and n != "finetune"
)
BATCHED = sorted(set(ALGORITHMS) - set(PERSONALIZED))


@pytest.mark.parametrize("algorithm", BATCHED)
def test_every_algorithm_runs_on_cohort(tmp_path: Path, algorithm: str) -> None:
    """Each built-in algorithm's client update batches: the run completes."""
    out = tmp_path / "run"
    result = invoke(
        "run", *ONE_ROUND, "--algorithm", algorithm, "--executor", "cohort",
        "--out", out, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert checkpoint(out)["sim"]["round"] == 1


def test_automatic_cohort_size_is_recorded(tmp_path: Path) -> None:
    """Without --max-cohort, config.toml holds the size the executor chose."""
    out = tmp_path / "run"
    result = invoke("run", *ONE_ROUND, "--executor", "cohort", "--out", out)
    assert result.exit_code == 0, result.output
    config = (out / "config.toml").read_text()
    assert 'executor = "cohort"' in config
    assert "max_cohort = 0" not in config
    assert "max_cohort = " in config


def test_a_model_with_batchnorm_is_refused(tmp_path: Path) -> None:
    """ResNet-18's BatchNorm cannot be batched: exit 2, the other executors named."""
    result = invoke(
        "run", *ONE_ROUND, "--dataset", "synthetic-cifar10", "--model", "resnet18",
        "--executor", "cohort", "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "BatchNorm2d) keeps running statistics" in result.stderr
    assert "--executor inline, threads, processes or ray" in result.stderr
    assert "Traceback" not in result.output


def test_resume_refuses_switching_to_per_client(
    tmp_path: Path, cohort_reference: Path
) -> None:
    """Cohort and per-client agree to rounding only: --resume keeps the family."""
    folder = tmp_path / "run"
    shutil.copytree(cohort_reference, folder)
    result = invoke("run", "--resume", folder, "--executor", "threads")
    assert result.exit_code == 2
    assert "written with --executor cohort" in result.stderr
    again = invoke("run", "--resume", folder, "--max-cohort", "3")
    assert again.exit_code == 2
    assert "resume with --max-cohort 2" in again.stderr


def test_resume_after_sigkill_on_cohort_is_bitwise(
    tmp_path: Path, cohort_reference: Path
) -> None:
    """Killed after round 3 with checkpoints every 2 rounds: resume ends bitwise
    like the undisturbed cohort run (on one worker: workers do not matter)."""
    run = PausedRun(
        tmp_path, tmp_path / "run", 3, *SMALL, *COHORT, "--checkpoint-every", "2"
    )
    run.send(signal.SIGKILL)
    assert checkpoint(run.out)["sim"]["round"] == 2

    result = invoke("run", "--resume", run.out, "--workers", "1")

    assert result.exit_code == 0, result.output
    assert torch.equal(final_params(run.out), final_params(cohort_reference))
    assert metrics(run.out) == metrics(cohort_reference)


@pytest.mark.parametrize("algorithm", PERSONALIZED)
def test_a_personalized_algorithm_is_refused(tmp_path: Path, algorithm: str) -> None:
    """Exit 2 in one line naming the per-client executors that run it."""
    model = ["--model", "cnn_bn"] if algorithm == "fedbn" else []  # FedBN needs BN
    result = invoke(
        "run", *ONE_ROUND, "--algorithm", algorithm, *model, "--executor", "cohort",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--executor inline, threads, processes or ray" in result.stderr
    assert "Traceback" not in result.output
