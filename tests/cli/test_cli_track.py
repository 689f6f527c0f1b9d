"""`--track tensorboard,mlflow`: the libraries' readers see metrics.jsonl's numbers."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import SMALL, PausedRun, invoke

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def _rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(
        str(folder / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0}
    )
    events.Reload()
    return events


def _mlflow(folder: Path) -> tuple[Any, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder.resolve() / 'mlflow.db'}")
    return client, (folder / "mlflow_run_id").read_text().strip()


def _assert_tracked(folder: Path) -> None:
    rows = _rows(folder)
    events = _tensorboard(folder)
    for key in ("train_loss", "test_loss", "test_acc"):
        scalars = events.Scalars(f"round/{key}")
        assert [s.step for s in scalars] == [r["round"] for r in rows]
        assert [s.value for s in scalars] == pytest.approx(
            [r[key] for r in rows], rel=1e-6
        )  # TensorBoard stores float32
    histograms = events.Histograms("clients/loss")
    assert [h.step for h in histograms] == [r["round"] for r in rows]
    assert [h.histogram_value.num for h in histograms] == [r["clients"] for r in rows]

    client, run_id = _mlflow(folder)
    for key in ("train_loss", "test_loss", "test_acc"):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [
            (r["round"], r[key]) for r in rows
        ]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.1"
    assert run.data.params["seed"] == "42"
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.toml", "metrics.png"} <= names


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tracked_run_reads_back_as_its_metrics(tmp_path: Path) -> None:
    """TensorBoard's event reader and MLflow's client give metrics.jsonl's numbers."""
    out = tmp_path / "run"
    result = invoke("run", *SMALL, "--track", "tensorboard,mlflow", "--out", out)
    assert result.exit_code == 0, result.output
    _assert_tracked(out)
    assert "track" in (out / "config.toml").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tracked_run_killed_and_resumed_holds_each_round_once(tmp_path: Path) -> None:
    """kill -9 past a checkpoint, then --resume: every round tracked exactly once."""
    run = PausedRun(
        tmp_path, tmp_path / "run", 3, *SMALL, "--track", "tensorboard,mlflow",
        "--checkpoint-every", "2", "--executor", "inline",
    )  # fmt: skip
    run.send(signal.SIGKILL)
    result = invoke("run", "--resume", run.out)
    assert result.exit_code == 0, result.output
    assert [r["round"] for r in _rows(run.out)] == [1, 2, 3, 4]
    _assert_tracked(run.out)


def test_unknown_tracker_is_refused(tmp_path: Path) -> None:
    """--track wandb names the trackers there are."""
    result = invoke("run", *SMALL, "--track", "wandb", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "'wandb' is not a tracker; use tensorboard, mlflow" in result.stderr
