"""`blazefl run --device`: where clients compute, checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from blazefl.cli._resolve import resolve
from cli_helpers import SMALL, final_params, invoke


def test_cuda_without_a_gpu_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--device cuda where no GPU is visible: exit 2, saying so, no run folder."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke("run", *SMALL, "--device", "cuda", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert (
        "Invalid value for '--device': 'cuda' asks for a CUDA device, but no CUDA "
        "device is visible" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_index_beyond_the_gpus_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda:1 on a one-GPU machine: the error names the index and what is there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        ValueError,
        match=r"'--device': 'cuda:0,cuda:1': 'cuda:1' is beyond the 1 visible CUDA "
        r"device \(cuda:0\)",
    ):
        resolve({"device": "cuda:0,cuda:1"})


def test_device_does_not_apply_to_ray() -> None:
    """Ray places its actors' GPUs itself: --device with --executor ray is refused."""
    with pytest.raises(ValueError, match=r"'--device' applies to --executor inline"):
        resolve({"device": "cpu", "executor": "ray"})


def test_device_cpu_is_recorded_and_changes_no_number(tmp_path: Path) -> None:
    """--device cpu writes device = "cpu" to config.toml; same model as without."""
    plain = invoke("run", *SMALL, "-q", "--out", tmp_path / "plain")
    placed = invoke(
        "run", *SMALL, "-q", "--device", "cpu", "--out", tmp_path / "placed"
    )
    assert plain.exit_code == 0, plain.output
    assert placed.exit_code == 0, placed.output
    assert 'device = "cpu"' in (tmp_path / "placed" / "config.toml").read_text()
    assert "device =" not in (tmp_path / "plain" / "config.toml").read_text()
    assert torch.equal(
        final_params(tmp_path / "plain"), final_params(tmp_path / "placed")
    )
