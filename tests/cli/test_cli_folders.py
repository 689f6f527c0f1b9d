"""Run folders: a fresh run writes only into a new or empty folder, a folder
is claimed while a run uses it, and a resume says which log lines it cut."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

from blazefl.cli._files import claim_folder
from cli_helpers import SMALL, PausedRun, checkpoint, invoke, metrics

ONE_ROUND = ["--clients", "4", "--rounds", "1", "--epochs", "1", "-q"]


def test_a_folder_with_a_users_file_is_refused(tmp_path: Path) -> None:
    """The user's own metrics.png (a name the run writes) is not overwritten;
    nothing is written into the folder, not even the lock file."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "metrics.png").write_bytes(b"my plot")
    result = invoke("run", *ONE_ROUND, "--out", folder)
    assert result.exit_code == 2
    assert (
        f"Invalid value for '--out': {folder} holds files this run did not write "
        "(metrics.png); a run writes only into a new or empty folder, so choose a "
        "fresh --out"
    ) in " ".join(result.stderr.split())
    assert sorted(os.listdir(folder)) == ["metrics.png"]
    assert (folder / "metrics.png").read_bytes() == b"my plot"


def test_the_refusal_names_the_first_files_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    for name in ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt", ".hidden"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    result = invoke("run", *ONE_ROUND, "--out", tmp_path)
    assert result.exit_code == 2
    assert "(.hidden, a.txt, b.txt, c.txt, d.txt and 3 more)" in " ".join(
        result.stderr.split()
    )


def test_an_empty_folder_or_one_left_by_a_killed_start_is_fresh(
    tmp_path: Path,
) -> None:
    """An empty folder, or one holding only the run.lock of an attempt killed
    before it wrote anything, takes a fresh run."""
    empty, left = tmp_path / "empty", tmp_path / "left"
    empty.mkdir()
    left.mkdir()
    (left / "run.lock").write_text('{"pid": 1}\n')
    for folder in (empty, left):
        result = invoke("run", *ONE_ROUND, "--out", folder)
        assert result.exit_code == 0, result.output
        assert checkpoint(folder)["sim"]["round"] == 1


def test_a_folder_held_by_a_run_is_refused_naming_it(tmp_path: Path) -> None:
    """While a claim on the folder is held, neither --resume nor a fresh run
    into it starts, and the logs are left untouched."""
    folder = tmp_path / "run"
    assert invoke("run", *ONE_ROUND, "--out", folder).exit_code == 0
    before = (folder / "metrics.jsonl").read_bytes()
    with claim_folder(folder):
        for args in (["--resume", folder], [*ONE_ROUND, "--out", folder]):
            result = invoke("run", *args)
            assert result.exit_code == 2
            message = " ".join(result.stderr.split())
            assert re.search(
                rf"run folder {re.escape(str(folder))} is in use by another run: "
                rf"this process \(pid {os.getpid()}, through another object\), "
                r"since \S+ \(.*\); one run at a time may use a run folder",
                message,
            ), message
    assert (folder / "metrics.jsonl").read_bytes() == before
    assert invoke("run", "--resume", folder).exit_code == 0  # released


def test_resume_says_which_log_lines_it_drops(tmp_path: Path) -> None:
    """Lines past the checkpoint (a SIGKILL between checkpoints) and a line
    that is not a record are cut, and the run says so on stderr."""
    args = [*SMALL, "--executor", "inline", "--checkpoint-every", "2"]
    run = PausedRun(tmp_path, tmp_path / "run", 3, *args)
    run.send(signal.SIGKILL)
    with (run.out / "metrics.jsonl").open("a") as f:
        f.write('{"round": "3"}\n')
    result = invoke("run", "--resume", run.out)
    assert result.exit_code == 0, result.output
    message = " ".join(result.stderr.split())
    assert (
        "blazefl: metrics.jsonl: dropped 1 line(s) past the checkpoint of round 2 "
        "(those rounds run again) and 1 unreadable line(s) (line 4: not a JSON "
        "object with an integer round"
    ) in message
    assert "blazefl: events.jsonl: dropped " in message
    assert [row["round"] for row in metrics(run.out)] == [1, 2, 3, 4]


def test_resume_without_a_checkpoint_says_it_starts_again(tmp_path: Path) -> None:
    """A folder whose run died before its first checkpoint: the logs' lines
    are dropped, with a word, and the run starts from round 1."""
    folder = tmp_path / "run"
    assert invoke("run", *ONE_ROUND, "--out", folder).exit_code == 0
    (folder / "checkpoint.ckpt").unlink()
    result = invoke("run", "--resume", folder)
    assert result.exit_code == 0, result.output
    message = " ".join(result.stderr.split())
    assert f"blazefl: {folder} holds no checkpoint yet; the run starts" in message
    dropped = "metrics.jsonl: dropped 1 line(s) past the checkpoint of round 0"
    assert f"blazefl: {dropped}" in message
    assert [row["round"] for row in metrics(folder)] == [1]


def test_resume_refuses_a_dangling_checkpoint_link(tmp_path: Path) -> None:
    """A checkpoint.ckpt that links nowhere is refused, not taken for "no
    checkpoint": nothing restarts and no log is cut."""
    folder = tmp_path / "run"
    assert invoke("run", *ONE_ROUND, "--out", folder).exit_code == 0
    shutil.move(folder / "checkpoint.ckpt", tmp_path / "moved.ckpt")
    (folder / "checkpoint.ckpt").symlink_to(tmp_path / "gone.ckpt")
    before = (folder / "metrics.jsonl").read_bytes()
    result = invoke("run", "--resume", folder)
    assert result.exit_code == 2
    assert "is a symbolic link to" in result.stderr
    assert "which does not exist" in result.stderr
    assert (folder / "metrics.jsonl").read_bytes() == before
