"""`blazefl run --executor ray` gives the same run as the thread executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from blazefl.cli._app import cli
from blazefl.sim import load_checkpoint

pytest.importorskip("ray.exceptions")

pytestmark = pytest.mark.usefixtures("ray_local")

SMALL = ["--clients", "6", "--rounds", "2", "--epochs", "1", "--quiet"]


def _run(out: Path, *extra: str) -> tuple[torch.Tensor, list[dict[str, object]]]:
    result = CliRunner().invoke(
        cli, ["run", *SMALL, "--out", str(out), *extra], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    params = load_checkpoint(out / "checkpoint.ckpt")["sim"]["handler"]["params"]
    rows = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    for row in rows:
        row.pop("seconds")
    return params, rows


def test_cli_ray_executor_matches_threads(tmp_path: Path) -> None:
    """--executor ray ends with the thread executor's model and metrics."""
    ray_params, ray_rows = _run(tmp_path / "ray", "--executor", "ray", "--workers", "2")
    thread_params, thread_rows = _run(tmp_path / "threads", "--executor", "threads")
    assert torch.equal(ray_params, thread_params)
    assert ray_rows == thread_rows
    assert len(ray_rows) == 2
