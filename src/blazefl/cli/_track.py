"""Experiment tracking (``--track tensorboard,mlflow``): off by default, local only.

Both trackers write into the run folder with the libraries' own writers and
contact no network:

- ``tensorboard``: `torch.utils.tensorboard.SummaryWriter` event files in
  ``RUN/tensorboard/``: the round's scalars (``round/train_loss``,
  ``round/test_loss``, ``round/test_acc``, ``round/seconds``) and per-client
  histograms (``clients/loss``, ``clients/seconds``) at step = round (from 1).
  ``tensorboard --logdir RUN/tensorboard`` shows them.
- ``mlflow``: an MLflow run in a SQLite tracking store ``RUN/mlflow.db``
  (newer MLflow refuses plain file stores), artifacts in ``RUN/mlartifacts``:
  the resolved config as params, the round's metrics per step, and at the end
  ``config.toml`` and ``metrics.png`` as artifacts. ``mlflow ui
  --backend-store-uri sqlite:///RUN/mlflow.db`` shows it.

Resume: the rounds past the last checkpoint run again after a resume, so
TensorBoard purges the steps after the checkpoint's round (``purge_step``), and
MLflow is sent a round's metrics only once its checkpoint is saved (the run id
is kept in ``RUN/mlflow_run_id``); both then hold each round once.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["TRACKERS", "TRACK_HELP", "Tracking", "check_track", "open_tracking"]

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
#: ``--track``'s help line (the `RunConfig` field's).
TRACK_HELP = (
    "Experiment tracking into the run folder: tensorboard, mlflow or "
    "tensorboard,mlflow (needs the 'track' extra; nothing leaves the machine)."
)
_SCALARS = ("train_loss", "test_loss", "test_acc", "seconds")
_RUN_ID = "mlflow_run_id"


def check_track(value: object) -> str:
    """``"tensorboard"``, ``"mlflow"`` or both, comma-separated, installed."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be tensorboard, mlflow or both, got {value!r}")
    names = [v.strip() for v in value.split(",")]
    for name in names:
        if name not in TRACKERS:
            raise ValueError(
                f"{name!r} is not a tracker; use tensorboard, mlflow or "
                "tensorboard,mlflow"
            )
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(
                f"{name} tracking needs the optional package {TRACKERS[name]!r}; "
                "install it with: pip install 'blazefl[track]'"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"{value!r} names a tracker twice")
    return ",".join(names)


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own deprecation warnings and INFO logs (database set-up) are
    not the user's business."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


class _TensorBoard:
    def __init__(self, folder: Path, first_round: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(
            log_dir=str(folder / "tensorboard"),
            purge_step=first_round + 1 if first_round else None,
        )

    def round(
        self, row: Mapping[str, Any], losses: Sequence[float], seconds: Sequence[float]
    ) -> None:
        import torch

        step = int(row["round"])
        for key in _SCALARS:
            if isinstance(row.get(key), float):
                self._writer.add_scalar(f"round/{key}", row[key], step)
        if losses:
            self._writer.add_histogram("clients/loss", torch.tensor(losses), step)
        if seconds:
            self._writer.add_histogram("clients/seconds", torch.tensor(seconds), step)
        self._writer.flush()

    def checkpointed(self) -> None:
        pass

    def close(self, folder: Path, complete: bool) -> None:
        self._writer.close()


class _MLflow:
    def __init__(self, folder: Path, params: Mapping[str, Any]) -> None:
        self._pending: list[Any] = []
        with _quiet():
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient

            root = folder.resolve()
            self._client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
            stored = folder / _RUN_ID
            if stored.is_file():
                self._run_id = stored.read_text(encoding="utf-8").strip()
                self._client.update_run(self._run_id, status="RUNNING")
                return
            found = self._client.get_experiment_by_name("blazefl")
            experiment = (
                found.experiment_id
                if found is not None
                else self._client.create_experiment(
                    "blazefl", artifact_location=(root / "mlartifacts").as_uri()
                )
            )
            run = self._client.create_run(experiment, run_name=folder.name)
            self._run_id = run.info.run_id
            self._client.log_batch(
                self._run_id, params=[Param(k, str(v)) for k, v in params.items()]
            )
            stored.write_text(self._run_id + "\n", encoding="utf-8")

    @property
    def run_id(self) -> str:
        return self._run_id

    def round(
        self, row: Mapping[str, Any], losses: Sequence[float], seconds: Sequence[float]
    ) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        step = int(row["round"])
        self._pending += [
            Metric(key, row[key], stamp, step)
            for key in _SCALARS
            if isinstance(row.get(key), float)
        ]

    def checkpointed(self) -> None:
        if self._pending:
            with _quiet():
                self._client.log_batch(self._run_id, metrics=self._pending)
            self._pending = []

    def close(self, folder: Path, complete: bool) -> None:
        with _quiet():
            if complete:
                for name in ("config.toml", "metrics.png"):
                    if (folder / name).is_file():
                        self._client.log_artifact(self._run_id, str(folder / name))
            self._client.set_terminated(
                self._run_id, "FINISHED" if complete else "KILLED"
            )


class Tracking:
    """The trackers of one run, fed by the run's recorder."""

    def __init__(self, trackers: Sequence[Any]) -> None:
        self._trackers = trackers
        self._losses: list[float] = []
        self._seconds: list[float] = []

    def client(self, loss: object, seconds: float) -> None:
        """One client finished (its training loss, if finite, and its time)."""
        if isinstance(loss, float) and loss == loss and abs(loss) != float("inf"):
            self._losses.append(loss)
        self._seconds.append(seconds)

    def round(self, row: Mapping[str, Any]) -> None:
        """A round was committed; ``row`` is its metrics.jsonl line."""
        for t in self._trackers:
            t.round(row, self._losses, self._seconds)
        self._losses, self._seconds = [], []

    def checkpointed(self) -> None:
        """The checkpoint of the rounds so far was saved."""
        for t in self._trackers:
            t.checkpointed()

    def close(self, folder: Path, complete: bool) -> None:
        for t in self._trackers:
            t.close(folder, complete)


def open_tracking(
    track: str | None, folder: Path, params: Mapping[str, Any], first_round: int
) -> Tracking | None:
    """The run's trackers (None without ``--track``)."""
    if not track:
        return None
    trackers: list[Any] = []
    for name in track.split(","):
        if name == "tensorboard":
            trackers.append(_TensorBoard(folder, first_round))
        else:
            trackers.append(_MLflow(folder, params))
    return Tracking(trackers)
