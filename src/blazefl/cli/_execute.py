"""From a resolved configuration to an exit code: the run folder, the build,
the display, the async `Runner`, and the summary at the end.

Exit codes: 0 when the run completed (or already had), 1 when a round failed
(the checkpoint of the last committed round is kept), 74 (EX_IOERR) when a
checkpoint or a log line could not be written (the previous checkpoint is
kept; this wins over a signal or a round's error that came with it), 128 +
the signal number after SIGINT (130) or SIGTERM (143).
"""

from __future__ import annotations

import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio

from blazefl._exceptions import MissingDependencyError
from blazefl.cli._build import Built, build, recorded
from blazefl.cli._checks import FILE_DATASETS
from blazefl.cli._client_eval import COLUMNS
from blazefl.cli._config import RunConfig, config_digest
from blazefl.cli._files import (
    CHECKPOINT,
    METRICS,
    PLOT,
    SUMMARY,
    claim_folder,
    create_folder,
    default_out,
    load_resume_state,
    truncate_logs,
    write_config,
    write_json,
)
from blazefl.cli._fits import check_run_memory
from blazefl.cli._info import git_commit, versions
from blazefl.cli._plot import plot_metrics, read_metrics
from blazefl.cli._progress import Display, make_display
from blazefl.cli._robust import robust_summary
from blazefl.cli._run import AfterRound, Runner, RunOutcome
from blazefl.cli._track import open_tracking
from blazefl.cli._user_errors import user_path
from blazefl.sim import configure_logging

__all__ = ["EXIT_CHECKPOINT_WRITE", "execute"]

#: ``sysexits.h``'s EX_IOERR: the run stopped because its checkpoint (or a line
#: of its logs) could not be written.
EXIT_CHECKPOINT_WRITE = 74


def _interrupt_message(outcome: RunOutcome, folder: Path) -> str:
    name = signal.Signals(outcome.signal or signal.SIGINT).name
    k = outcome.checkpoint_round
    if k is None:
        return (
            f"{name}: interrupted before any checkpoint was written; continue "
            f"with: blazefl run --resume {folder}"
        )
    return (
        f"{name}: interrupted after round {k}; the run folder holds the checkpoint "
        f"of round {k}; continue with: blazefl run --resume {folder}"
    )


def _write_error_message(outcome: RunOutcome, folder: Path) -> str:
    exc = outcome.checkpoint_error or outcome.log_error
    assert exc is not None
    reason = exc.strerror or str(exc)
    path = exc.filename or folder / CHECKPOINT
    what = "checkpoint" if exc is outcome.checkpoint_error else "log file"
    k = outcome.checkpoint_round
    held = (
        f"the run folder still holds the checkpoint of round {k}"
        if k is not None
        else "the run folder holds no checkpoint yet (--resume starts afresh)"
    )
    why = ""
    if outcome.signal is not None:
        why = f" ({signal.Signals(outcome.signal).name})"
    elif outcome.error is not None and outcome.error is not exc:
        why = f" ({outcome.error})"
    return (
        f"error: could not write {what} {path}: {reason}\n"
        f"the run stopped after round {outcome.rounds_done}{why}; {held}; free "
        f"space or make the folder writable, then continue with: blazefl run "
        f"--resume {folder}"
    )


def _finish(
    config: RunConfig,
    built: Built,
    folder: Path,
    display: Display,
    wall: float,
    resumed_from: int | None,
    budget: str | None = None,
) -> None:
    display.close()
    privacy = built.server.privacy
    rows = read_metrics(folder / METRICS)
    last = rows[-1] if rows else {}
    final_keys = ["train_loss", "test_loss", "test_acc"]
    if config.attack is not None:
        final_keys.append("attack_success_rate")
    summary = {
        "status": "complete" if budget is None else "privacy budget reached",
        "rounds": config.rounds if budget is None else len(rows),
        "final": {k: last.get(k) for k in final_keys},
        "best_test_acc": max(
            (r["test_acc"] for r in rows if r.get("test_acc") is not None),
            default=None,
        ),
        "wall_seconds": round(wall, 3),
        "round_seconds": round(sum(r.get("seconds", 0.0) for r in rows), 3),
        "resumed_from_round": resumed_from,
        **_simulated(rows),
        "algorithm": config.algorithm,
        "dataset": config.dataset,
        "model": config.model,
        "seed": config.seed,
        "executor": config.executor,
        "workers": config.workers,
        "config_digest": config_digest(config),
        **robust_summary(config, built.attackers),
        "versions": versions(),
        "git": git_commit(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if config.evaluate_clients:
        # The spread over clients at the last per-client evaluation.
        summary["client_evaluation"] = {k: last.get(k) for k in COLUMNS if k in last}
    if privacy is not None:
        # (ε, δ) spent, and what the figure assumes (relation, sampling).
        summary["privacy"] = {
            **privacy.describe(),
            "epsilon": privacy.epsilon(config.rounds if budget is None else len(rows)),
            **({"stopped": budget} if budget else {}),
        }
    write_json(folder / SUMMARY, summary)
    try:
        plot_metrics(folder)
    except MissingDependencyError as exc:
        display.note(f"blazefl: {PLOT} not drawn: {exc}")
    acc, loss = last.get("test_acc"), last.get("test_loss")
    scores = (
        f"test accuracy {acc:.3f}, test loss {loss:.4f}"
        if isinstance(acc, float) and isinstance(loss, float)
        else "no test metrics"
    )
    done = config.rounds if budget is None else len(rows)
    spent = privacy.epsilon(done) if privacy is not None else None
    if spent is not None:
        scores += f", epsilon {spent:.3f} at delta {config.delta:g}"
    mean, p10 = last.get("client_acc_mean"), last.get("client_acc_p10")
    if isinstance(mean, float) and isinstance(p10, float):
        scores += f", clients accuracy {mean:.3f} (p10 {p10:.3f})"
    simulated = summary.get("virtual_seconds")
    virtual = "" if simulated is None else f" ({simulated:.1f}s simulated)"
    display.summary(
        f"done: {scores} after {done} rounds in {wall:.1f}s{virtual}; "
        f"run folder: {folder}"
    )


def _simulated(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """With --profiles: the simulated time beside the real time."""
    times = [r["virtual_time"] for r in rows if r.get("virtual_time") is not None]
    return {"virtual_seconds": round(times[-1], 6)} if times else {}


def _header(config: RunConfig, folder: Path, done: int) -> str:
    workers = "" if config.executor == "inline" else f" x{config.workers}"
    text = (
        f"{config.algorithm} on {config.dataset} ({config.model}, {config.partition} "
        f"partition): {config.clients} clients, {config.clients_per_round} per "
        f"round, {config.rounds} rounds, {config.epochs} local epochs; "
        f"{config.executor}{workers}; seed {config.seed}\nrun folder: {folder}"
    )
    return text + (f"\nresuming after round {done}" if done else "")


_RUN_FOLDER = "a blazefl run folder it can read and write"


def _build(config: RunConfig) -> Built:
    """`build`, with a data set folder's OS errors as errors of ``--data-dir``."""
    if config.dataset not in FILE_DATASETS:
        return build(config)
    assert config.data_dir is not None  # _config requires it
    with user_path(
        "--data-dir", config.data_dir, f"a folder holding the {config.dataset} files"
    ):
        return build(config)


def execute(
    config: RunConfig,
    folder: Path | None,
    *,
    resume: bool,
    after_round: AfterRound | None = None,
) -> int:
    """Run (or resume) a federation into its run folder; return the exit code.

    Raises `ConfigurationError` for a bad configuration, folder or checkpoint,
    or a run that cannot fit in memory (unless ``--no-memory-check``), before
    any round runs, and `InUseError` (one of them) for a folder another run
    holds. The folder is claimed from before its checkpoint is read until the
    run ends. ``after_round`` goes to the `Runner` (an observer awaited after
    each committed round; none for ``blazefl run``).
    """
    started = time.perf_counter()
    if config.log_format == "json":
        configure_logging("json", level="info")
    else:
        configure_logging("console", level="warning")
    if not config.no_memory_check:
        check_run_memory(config)
    resumed_from: int | None = None
    notes: list[str] = []
    with ExitStack() as held:
        if resume:
            assert folder is not None
            with user_path("--resume", folder, _RUN_FOLDER):
                held.enter_context(claim_folder(folder))
                state = load_resume_state(folder, config)
            built = _build(config)
            config = recorded(config, built)
            if state is not None:
                built.simulation.load_state_dict(state)
            else:
                notes.append(
                    f"blazefl: {folder} holds no checkpoint yet; the run starts "
                    "again from round 1"
                )
            resumed_from = built.simulation.round
            with user_path("--resume", folder, _RUN_FOLDER):
                cut = truncate_logs(folder, resumed_from)
                write_config(folder, config)  # records a changed executor or workers
            notes += [f"blazefl: {n}" for n in cut]
        else:
            built = _build(config)
            config = recorded(config, built)
            folder = folder or default_out(config.algorithm)
            with user_path("--out", folder, "a folder blazefl can create and write"):
                held.enter_context(create_folder(folder))
                write_config(folder, config)
        return _run(config, folder, built, notes, resumed_from, started, after_round)


def _run(
    config: RunConfig,
    folder: Path,
    built: Built,
    notes: list[str],
    resumed_from: int | None,
    started: float,
    after_round: AfterRound | None,
) -> int:
    done = built.simulation.round
    with make_display(config.rounds, quiet=config.quiet) as display:
        for note in notes:
            display.note(note)
        if done >= config.rounds:
            display.note(f"the run in {folder} is complete ({done} rounds)")
            _finish(config, built, folder, display, 0.0, resumed_from)
            return 0
        display.header(_header(config, folder, done), done)
        tracking = open_tracking(config.track, folder, config.saved, done)
        code: int | None = None
        complete = False
        try:
            runner = Runner(
                config,
                built,
                folder,
                display,
                after_round=after_round,
                tracking=tracking,
            )
            outcome = anyio.run(runner.run)
            code = _report(outcome, folder, display)
            if code is None:
                wall = time.perf_counter() - started
                if outcome.budget is not None:
                    display.note(outcome.budget)
                _finish(
                    config, built, folder, display, wall, resumed_from, outcome.budget
                )
                complete = True
        finally:
            if tracking is not None:
                tracking.close(folder, complete)
    return code or 0


def _report(outcome: RunOutcome, folder: Path, display: Display) -> int | None:
    """The exit code of a run that did not complete (and its message), or None."""
    if outcome.checkpoint_error is not None or outcome.log_error is not None:
        display.note(_write_error_message(outcome, folder))
        return EXIT_CHECKPOINT_WRITE
    if outcome.signal is not None:
        display.note(_interrupt_message(outcome, folder))
        return 128 + outcome.signal
    if outcome.error is not None:
        k = outcome.checkpoint_round
        display.note(
            f"error: {outcome.error}\nthe run stopped after round {k}; the run "
            f"folder holds its checkpoint; continue with: blazefl run --resume "
            f"{folder}"
        )
        return 1
    return None
