"""The run folder: its files, creating it, and making it consistent on resume.

::

    runs/20250101-120000-fedavg/
        config.toml       the resolved configuration (flat TOML)
        metrics.jsonl     one line per committed round
        events.jsonl      every coordinator event, as Event.to_json()
        checkpoint.ckpt   the latest checkpoint (blazefl.sim.save_checkpoint)
        summary.json      final metrics, versions, timings (when the run ends)
        metrics.png       loss and accuracy per round
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.cli._config import (
    OPERATIONAL_KEYS,
    RunConfig,
    config_digest,
)
from blazefl.cli._jsonl import Check, events_problem, metrics_problem, read_records
from blazefl.cli._toml import dump_toml
from blazefl.sim import load_checkpoint

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "EVENTS",
    "METRICS",
    "PLOT",
    "SUMMARY",
    "create_folder",
    "default_out",
    "load_resume_state",
    "truncate_logs",
    "write_config",
    "write_json",
]

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
EVENTS = "events.jsonl"
CHECKPOINT = "checkpoint.ckpt"
SUMMARY = "summary.json"
PLOT = "metrics.png"
_RUN_FILES = (CONFIG, METRICS, EVENTS, CHECKPOINT, SUMMARY)


def default_out(algorithm: str, root: Path = Path("runs")) -> Path:
    """``runs/<timestamp>-<algorithm>``, with a suffix if that already exists."""
    base = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{algorithm}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def create_folder(folder: Path) -> None:
    """Make a fresh run folder; refuse one that already holds a run."""
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"Invalid value for '--out': {folder} is a file")
    held = [name for name in _RUN_FILES if (folder / name).exists()]
    if held:
        raise ConfigurationError(
            f"Invalid value for '--out': {folder} already holds a run ({held[0]}); "
            f"continue it with `blazefl run --resume {folder}` or choose another "
            "--out"
        )
    folder.mkdir(parents=True, exist_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_config(folder: Path, config: RunConfig) -> None:
    """``config.toml``: the resolved configuration, flat keys."""
    header = (
        "blazefl run configuration (resolved: defaults < --config file < options).\n"
        f"Continue this run with: blazefl run --resume {folder}"
    )
    _atomic_write(folder / CONFIG, dump_toml(config.saved, header))


def write_json(path: Path, data: dict[str, Any]) -> None:
    _atomic_write(path, json.dumps(data, indent=2) + "\n")


def _check_executor_family(path: Path, theirs: Any, config: RunConfig) -> None:
    """Refuse to switch between cohort and per-client training on resume.

    The per-client executors are bitwise equal to each other, so --resume may
    swap them; cohort training agrees with them only to rounding (see
    docs/performance.md), so a switch would change the run's numbers; so
    can another cohort size, for models with convolutions.
    """
    before = theirs.get("executor") if isinstance(theirs, dict) else None
    if not isinstance(before, str):
        return
    size = theirs.get("max_cohort") if isinstance(theirs, dict) else None
    if before == config.executor == "cohort" and config.max_cohort not in (0, size):
        # Convolutions round differently with another number of clients per
        # grouped convolution (docs/performance.md): keep the chunking.
        raise ConfigurationError(
            f"{path} was written with --max-cohort {size}; another cohort size "
            "can change the numbers of models with convolutions: resume with "
            f"--max-cohort {size} (or leave it out)"
        )
    if (before == "cohort") != (config.executor == "cohort"):
        raise ConfigurationError(
            f"{path} was written with --executor {before}; resuming with "
            f"--executor {config.executor} would change the run's numbers "
            "(cohort and per-client training agree to rounding, not bit for "
            f"bit): resume with --executor {before}"
            + ("" if before == "cohort" else " (or inline, threads, processes, ray)")
        )


def load_resume_state(folder: Path, config: RunConfig) -> dict[str, Any] | None:
    """The simulation state of ``folder/checkpoint.ckpt`` (None if there is none).

    Verifies the file (`load_checkpoint`: safe, tamper-evident) and that it
    was written under this configuration (its config digest).
    """
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    state = load_checkpoint(path)
    sim_state = state.get("sim")
    if not isinstance(sim_state, dict) or "config_digest" not in state:
        raise ConfigurationError(f"{path} is not a blazefl run checkpoint")
    _check_executor_family(path, state.get("config"), config)
    if state["config_digest"] != config_digest(config):
        theirs = state.get("config")
        theirs = theirs if isinstance(theirs, dict) else {}
        ours = config.saved
        differ = sorted(
            k
            for k in set(theirs) | set(ours)
            if k not in OPERATIONAL_KEYS and theirs.get(k) != ours.get(k)
        )
        detail = ", ".join(
            f"{k}: checkpoint {theirs.get(k)!r}, config.toml {ours.get(k)!r}"
            for k in differ
        )
        raise ConfigurationError(
            f"{path} was written by another configuration than "
            f"{folder / CONFIG} ({detail or 'digest differs'}); a checkpoint only "
            "resumes the run it came from"
        )
    return sim_state


def _keep_lines(path: Path, check: Check, keep: Callable[[int], bool]) -> None:
    if not path.exists():
        return
    kept = [line + "\n" for line, r in read_records(path, check) if keep(r["round"])]
    _atomic_write(path, "".join(kept))


def truncate_logs(folder: Path, rounds_done: int) -> None:
    """Cut metrics.jsonl and events.jsonl back to the checkpoint's round.

    metrics.jsonl rounds count from 1 (keep ``round <= rounds_done``); events
    carry the coordinator's 0-based round index (keep ``round < rounds_done``).
    A line torn by a kill (the last, without its newline) is dropped; a line
    blazefl did not write is refused (`blazefl.cli._jsonl`).
    """
    _keep_lines(folder / METRICS, metrics_problem, lambda r: r <= rounds_done)
    _keep_lines(folder / EVENTS, events_problem, lambda r: r < rounds_done)
