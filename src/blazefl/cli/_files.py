"""The run folder: its files, creating it, and making it consistent on resume.

::

    runs/20250101-120000-fedavg/
        config.toml       the resolved configuration (flat TOML)
        metrics.jsonl     one line per committed round
        events.jsonl      every coordinator event, as Event.to_json()
        checkpoint.ckpt   the latest checkpoint (blazefl.sim.save_checkpoint)
        summary.json      final metrics, versions, timings (when the run ends)
        metrics.png       loss and accuracy per round
        run.lock          claimed (flock) while a run uses the folder; names it

A fresh run writes only into a new or empty folder (a ``run.lock`` left by a
killed attempt counts as empty), so it never overwrites a file of the
user's; a folder in use by another run (a ``--resume`` of it, say) is
refused naming that run (`blazefl._claims`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blazefl._claims import Claim, claim
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
    "LOCK",
    "METRICS",
    "PLOT",
    "CLIENT_ACCURACY",
    "SUMMARY",
    "claim_folder",
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
#: With --evaluate-clients: each client's accuracy at the latest evaluation.
CLIENT_ACCURACY = "client_accuracy.json"
LOCK = "run.lock"
_RUN_FILES = (CONFIG, METRICS, EVENTS, CHECKPOINT, SUMMARY)
_SHOWN = 5  # foreign files named in an error, at most


def default_out(algorithm: str, root: Path = Path("runs")) -> Path:
    """``runs/<timestamp>-<algorithm>``, with a suffix if that already exists."""
    base = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{algorithm}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def claim_folder(folder: Path) -> Claim:
    """Claim ``folder`` for this run (until the claim is released or the
    process ends); `InUseError` names the run that holds it."""
    return claim(
        folder / LOCK,
        f"run folder {folder}",
        "one run at a time may use a run folder: wait for that run to end or "
        "stop it (Ctrl-C, or kill its pid), then continue with `blazefl run "
        f"--resume {folder}`",
    )


def create_folder(folder: Path) -> Claim:
    """Make (or take) a fresh run folder and claim it.

    Refuses a folder that already holds a run (naming the run that uses it,
    if one does) and one that holds any file this run did not write.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"Invalid value for '--out': {folder} is a file")
    if folder.is_dir():
        _check_fresh(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"Invalid value for '--out': cannot create {folder}: {exc.strerror or exc}"
        ) from None
    held = claim_folder(folder)
    try:
        _check_fresh(folder)  # again, under the claim: a run may have raced us
    except BaseException:
        held.release()
        raise
    return held


def _check_fresh(folder: Path) -> None:
    try:
        names = sorted(p.name for p in folder.iterdir() if p.name != LOCK)
    except OSError as exc:
        raise ConfigurationError(
            f"Invalid value for '--out': cannot list {folder}: {exc.strerror or exc}"
        ) from None
    held = [name for name in _RUN_FILES if name in names]
    if held:
        claim_folder(folder).release()  # a run in it now is named, not guessed
        raise ConfigurationError(
            f"Invalid value for '--out': {folder} already holds a run ({held[0]}); "
            f"continue it with `blazefl run --resume {folder}` or choose another "
            "--out"
        )
    if names:
        shown = ", ".join(names[:_SHOWN])
        if len(names) > _SHOWN:
            shown += f" and {len(names) - _SHOWN} more"
        raise ConfigurationError(
            f"Invalid value for '--out': {folder} holds files this run did not "
            f"write ({shown}); a run writes only into a new or empty folder, so "
            "choose a fresh --out (or leave it out for runs/<time>-<algorithm>)"
        )


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
    can another cohort size, on a GPU or for a model that is not
    chunk-invariant.
    """
    before = theirs.get("executor") if isinstance(theirs, dict) else None
    if not isinstance(before, str):
        return
    size = theirs.get("max_cohort") if isinstance(theirs, dict) else None
    if before == config.executor == "cohort" and config.max_cohort not in (0, size):
        # On the CPU the built-in models give the same bits with any chunk
        # size, but a GPU's kernels depend on the shape: keep the chunking.
        raise ConfigurationError(
            f"{path} was written with --max-cohort {size}; another cohort size "
            "can change the numbers (on a GPU, or for a model whose batched "
            f"step depends on the chunk): resume with --max-cohort {size} (or "
            "leave it out)"
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
    if not os.path.lexists(path):  # a dangling link is refused, not "none"
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


class _Dropped:
    """Lines cut from a log on resume: past the checkpoint, or unreadable."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.past = 0
        self.unreadable: list[int] = []  # 1-based line numbers

    def __bool__(self) -> bool:
        return bool(self.past or self.unreadable)

    def describe(self, rounds_done: int) -> str:
        parts = []
        if self.past:
            parts.append(
                f"{self.past} line(s) past the checkpoint of round {rounds_done} "
                "(those rounds run again)"
            )
        if self.unreadable:
            lines = ", ".join(map(str, self.unreadable[:_SHOWN]))
            more = len(self.unreadable) - _SHOWN
            lines += f" and {more} more" if more > 0 else ""
            parts.append(
                f"{len(self.unreadable)} line(s) torn by a kill (line {lines})"
            )
        return f"{self.name}: dropped " + " and ".join(parts)


def _keep_lines(path: Path, check: Check, keep: Callable[[int], bool]) -> _Dropped:
    """Keep the lines `keep` accepts; a line blazefl did not write is refused."""
    dropped = _Dropped(path.name)
    if not path.exists():
        return dropped
    whole = sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
    records = read_records(path, check)  # drops only a torn last line
    if len(records) < whole:
        dropped.unreadable.append(whole)
    kept = []
    for line, record in records:
        if keep(record["round"]):
            kept.append(line + "\n")
        else:
            dropped.past += 1
    if dropped:
        _atomic_write(path, "".join(kept))
    return dropped


def truncate_logs(folder: Path, rounds_done: int) -> list[str]:
    """Cut metrics.jsonl and events.jsonl back to the checkpoint's round.

    metrics.jsonl rounds count from 1 (keep ``round <= rounds_done``); events
    carry the coordinator's 0-based round index (keep ``round < rounds_done``).
    A line torn by a kill (the last, without its newline) is dropped; a line
    blazefl did not write is refused (`blazefl.cli._jsonl`). Returns one
    sentence per log that lost lines, for the user: a log is never cut without
    saying so. A log that loses nothing is not rewritten.
    """
    cut = [
        _keep_lines(folder / METRICS, metrics_problem, lambda r: r <= rounds_done),
        _keep_lines(folder / EVENTS, events_problem, lambda r: r < rounds_done),
    ]
    return [d.describe(rounds_done) for d in cut if d]
