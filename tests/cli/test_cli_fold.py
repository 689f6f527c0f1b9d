"""``--aggregate-dtype``: recorded in config.toml, kept on --resume (a run
folder from before it resumes with float64, the arithmetic it ran), and the
folded default resumes bit for bit after kill -9."""

from __future__ import annotations

import signal
import tomllib
from pathlib import Path

import pytest
import torch

from cli_helpers import SMALL, PausedRun, checkpoint, final_params, invoke, metrics


@pytest.fixture(scope="module")
def float64_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small federation with the float64 mean, undisturbed."""
    out = tmp_path_factory.mktemp("float64") / "run"
    result = invoke("run", *SMALL, "--aggregate-dtype", "float64", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _config(folder: Path) -> dict[str, object]:
    return tomllib.loads((folder / "config.toml").read_text())


def test_the_dtype_is_recorded(reference: Path, float64_reference: Path) -> None:
    """config.toml records it (the default: model); the two differ in numbers."""
    assert _config(reference)["aggregate_dtype"] == "model"
    assert _config(float64_reference)["aggregate_dtype"] == "float64"
    assert not torch.equal(final_params(reference), final_params(float64_reference))


def test_it_applies_to_the_weighted_mean_only(tmp_path: Path) -> None:
    result = invoke(
        "run", *SMALL, "--aggregator", "median", "--aggregate-dtype", "model",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "'--aggregate-dtype' applies only with the weighted mean" in result.output


def _killed_after_3(tmp: Path, *args: str) -> Path:
    run = PausedRun(
        tmp, tmp / "run", 3, *SMALL, *args, "--checkpoint-every", "2"
    )  # fmt: skip
    run.send(signal.SIGKILL)
    run.reap_orphans()
    assert checkpoint(run.out)["sim"]["round"] == 2
    return run.out


def test_a_run_folder_without_the_setting_resumes_with_float64(
    tmp_path: Path, float64_reference: Path
) -> None:
    """A folder whose config.toml has no aggregate_dtype (written before the
    setting existed, here by removing it) resumes with float64: its checkpoint's
    digest still matches, and the run ends on the float64 reference's bits."""
    out = _killed_after_3(tmp_path, "--aggregate-dtype", "float64")
    config = out / "config.toml"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(x for x in lines if "aggregate_dtype" not in x))

    result = invoke("run", "--resume", out)

    assert result.exit_code == 0, result.output
    assert "resuming after round 2" in result.stdout
    assert torch.equal(final_params(out), final_params(float64_reference))
    assert metrics(out) == metrics(float64_reference)


def test_resume_refuses_another_dtype(tmp_path: Path, reference: Path) -> None:
    folder = tmp_path / "run"
    result = invoke("run", *SMALL, "--rounds", "1", "--out", folder)
    assert result.exit_code == 0, result.output
    result = invoke("run", "--resume", folder, "--aggregate-dtype", "float64")
    assert result.exit_code == 2
    assert "--aggregate-dtype 'float64' does not match" in result.output


def test_the_folded_default_resumes_bitwise_after_sigkill_on_two_threads(
    tmp_path: Path, reference: Path
) -> None:
    """Killed in round 3 on two threads (folding, clients finishing in any
    order), resumed on processes: the reference's bits."""
    out = _killed_after_3(tmp_path, "--executor", "threads", "--workers", "2")

    result = invoke("run", "--resume", out, "--executor", "processes")

    assert result.exit_code == 0, result.output
    assert torch.equal(final_params(out), final_params(reference))
    assert metrics(out) == metrics(reference)
