"""`blazefl run --resume`: an interrupted run ends bit for bit like an undisturbed."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import torch

from cli_helpers import (
    SMALL,
    Interrupted,
    PausedRun,
    checkpoint,
    final_params,
    invoke,
    metrics,
)

EXECUTORS = ["threads", "processes"]


def _assert_same_run(folder: Path, reference: Path) -> None:
    assert checkpoint(folder)["sim"]["round"] == 4
    assert torch.equal(final_params(folder), final_params(reference))
    assert metrics(folder) == metrics(reference)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_resume_after_sigkill_between_checkpoints_is_bitwise(
    tmp_path: Path, reference: Path, executor: str
) -> None:
    """Killed in round 3 with checkpoints every 2 rounds: resume from 2, same end.

    One worker: a spawned process costs seconds, and the worker count does not
    change the numbers (the reference ran on two threads).
    """
    workers = ["--executor", executor, "--workers", "1"]
    run = PausedRun(
        tmp_path, tmp_path / "run", 3, *SMALL, *workers, "--checkpoint-every", "2"
    )
    run.send(signal.SIGKILL)
    run.reap_orphans()
    assert checkpoint(run.out)["sim"]["round"] == 2
    assert len(metrics(run.out)) == 3  # round 3's line is past the checkpoint

    result = invoke("run", "--resume", run.out, *workers)

    assert result.exit_code == 0, result.output
    assert "resuming after round 2" in result.stdout
    _assert_same_run(run.out, reference)
    events = (run.out / "events.jsonl").read_text()
    assert events.count('"event": "round_finished"') == 4


def test_resume_after_sigint_on_threads_is_bitwise(
    tmp_path: Path, reference: Path
) -> None:
    """Stopped by SIGINT after round 2 on threads: resume ends like the reference."""
    run = PausedRun(tmp_path, tmp_path / "run", 2, *SMALL)
    assert run.send(signal.SIGINT) < 15
    assert run.process.returncode == 130, run.stderr

    result = invoke("run", "--resume", run.out)

    assert result.exit_code == 0, result.output
    _assert_same_run(run.out, reference)


def test_resume_after_sigint_on_processes_is_bitwise(
    tmp_path: Path, reference: Path, sigint_processes: Interrupted
) -> None:
    """Stopped by SIGINT after round 2 on processes, resumed on threads (the
    executor may change on resume): it ends like the reference."""
    folder = tmp_path / "run"
    shutil.copytree(sigint_processes.run.out, folder)

    result = invoke("run", "--resume", folder, "--executor", "threads")

    assert result.exit_code == 0, result.output
    _assert_same_run(folder, reference)
    assert 'executor = "threads"' in (folder / "config.toml").read_text()


def test_resume_on_another_executor_drops_the_ray_address(
    tmp_path: Path, reference: Path
) -> None:
    """A run made on a Ray cluster resumes on threads: its address goes with Ray."""
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    config = folder / "config.toml"
    text = config.read_text()
    lines = [line for line in text.splitlines() if not line.startswith("executor")]
    lines += ['executor = "ray"', 'ray_address = "10.0.0.1:6379"']
    config.write_text("\n".join(lines) + "\n")

    result = invoke("run", "--resume", folder, "--executor", "threads")

    assert result.exit_code == 0, result.output
    assert "ray_address" not in config.read_text()


def test_resume_refuses_a_changed_option(tmp_path: Path, reference: Path) -> None:
    """An option that changes the numbers must match the run's config.toml."""
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    result = invoke("run", "--resume", folder, "--lr", "0.2")
    assert result.exit_code == 2
    assert "--lr 0.2 does not match lr = 0.1" in result.stderr


def test_resume_accepts_the_same_options(tmp_path: Path, reference: Path) -> None:
    """Repeating the original options with --resume is allowed."""
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    result = invoke("run", "--resume", folder, *SMALL, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "is complete (4 rounds)" in result.stderr


def test_resume_refuses_out(tmp_path: Path, reference: Path) -> None:
    """--out names a new run folder; with --resume the folder is given."""
    result = invoke("run", "--resume", reference, "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "--out cannot be used with --resume" in result.stderr


def test_checkpoint_of_another_configuration_is_refused(
    tmp_path: Path, reference: Path
) -> None:
    """A config.toml edited after the checkpoint no longer matches its digest."""
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    config = folder / "config.toml"
    config.write_text(config.read_text().replace("lr = 0.1", "lr = 0.2"))
    result = invoke("run", "--resume", folder)
    assert result.exit_code == 2
    assert "was written by another configuration" in result.stderr
    assert "lr: checkpoint 0.1, config.toml 0.2" in result.stderr


def test_tampered_checkpoint_is_refused(tmp_path: Path, reference: Path) -> None:
    """A checkpoint altered on disk fails its digest before anything is loaded."""
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    path = folder / "checkpoint.ckpt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = invoke("run", "--resume", folder)
    assert result.exit_code == 2
    assert "fails its SHA-256 check" in result.stderr


def test_resume_of_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    """--resume needs a run folder."""
    result = invoke("run", "--resume", tmp_path)
    assert result.exit_code == 2
    assert "holds no config.toml" in result.stderr
