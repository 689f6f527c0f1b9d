"""SIGINT and SIGTERM during `blazefl run`: a prompt, clean, resumable stop."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from blazefl.cli import main
from cli_helpers import (
    SMALL,
    Interrupted,
    PausedRun,
    checkpoint,
    metrics,
    wait_until,
)
from leaks import pid_alive, shm_entries


def test_sigint_exits_promptly_with_130_and_the_message(
    sigint_processes: Interrupted,
) -> None:
    """SIGINT ends the run within seconds, exit code 130, saying how to resume."""
    run = sigint_processes.run
    assert sigint_processes.returncode == 130, run.stderr
    assert sigint_processes.seconds < 15
    assert (
        "interrupted after round 2; the run folder holds the checkpoint of round 2; "
        f"continue with: blazefl run --resume {run.out}"
    ) in run.stderr


def test_sigint_saves_the_checkpoint_of_the_last_round(
    sigint_processes: Interrupted,
) -> None:
    """The interrupt writes a valid checkpoint of round 2, though none was due."""
    state = checkpoint(sigint_processes.run.out)
    assert state["sim"]["round"] == 2
    assert [row["round"] for row in metrics(sigint_processes.run.out)] == [1, 2]
    assert not (sigint_processes.run.out / "summary.json").exists()


def test_sigint_leaves_no_worker_process(sigint_processes: Interrupted) -> None:
    """Every worker process (and the resource tracker) is gone after the exit."""
    children = sigint_processes.run.children
    assert len(children) >= 2  # the two workers, at least
    assert wait_until(lambda: not any(map(pid_alive, children)), 10), [
        pid for pid in children if pid_alive(pid)
    ]


def test_sigint_leaves_no_shared_memory(sigint_processes: Interrupted) -> None:
    """No /dev/shm entry the run mapped, nor any new one it named, survives it.

    torch names a segment after the process that made it (torch_<pid>_...), so
    a new entry is the run's when it carries one of the run's pids; entries
    other programs on the machine make meanwhile are not counted.
    """
    run = sigint_processes.run
    assert wait_until(lambda: not (run.shm & shm_entries()), 10), run.shm
    prefixes = tuple(f"torch_{pid}_" for pid in {run.process.pid, *run.children})

    def made_by_the_run() -> set[str]:
        new = shm_entries() - sigint_processes.shm_before
        return {name for name in new if name.startswith(prefixes)}

    assert wait_until(lambda: not made_by_the_run(), 10), made_by_the_run()


def test_sigterm_exits_with_143(tmp_path: Path) -> None:
    """SIGTERM stops the run like SIGINT, with exit code 143."""
    run = PausedRun(tmp_path, tmp_path / "run", 1, *SMALL)
    run.send(signal.SIGTERM)
    assert run.process.returncode == 143, run.stderr
    assert "SIGTERM: interrupted after round 1" in run.stderr
    assert checkpoint(run.out)["sim"]["round"] == 1


def test_after_round_sees_each_committed_round_and_its_checkpoint(
    tmp_path: Path,
) -> None:
    """main(after_round=...) is awaited once per round, after its checkpoint."""
    out = tmp_path / "run"
    seen: list[tuple[int, int | None]] = []

    async def after_round(rounds_done: int) -> None:
        saved = (out / "checkpoint.ckpt").exists()
        seen.append((rounds_done, checkpoint(out)["sim"]["round"] if saved else None))

    with pytest.raises(SystemExit) as info:
        main(
            ["run", *SMALL, "--checkpoint-every", "2", "--quiet", "--out", str(out)],
            after_round=after_round,
        )
    assert info.value.code == 0
    assert seen == [(1, None), (2, 2), (3, 2), (4, 4)]
