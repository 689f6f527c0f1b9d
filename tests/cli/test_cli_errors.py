"""How `blazefl run` reports what goes wrong outside the rounds: one line and a
documented exit code (the hostile-input catalogue covers exit 2)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from blazefl.cli import _execute
from blazefl.cli._app import cli
from blazefl.cli._user_errors import EXIT_IO

TINY = ["--clients", "4", "--rounds", "1", "--epochs", "1", "--executor", "inline"]


def test_an_os_error_on_a_file_the_user_did_not_name_exits_74(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """summary.json cannot be written (a full disk): exit 74, one line naming
    the file and the reason, no traceback."""
    summary = tmp_path / "run" / "summary.json"

    def full_disk(path: Path, data: dict[str, Any]) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(summary))

    monkeypatch.setattr(_execute, "write_json", full_disk)
    result = CliRunner().invoke(
        cli, ["run", *TINY, "-q", "--out", str(tmp_path / "run")], prog_name="blazefl"
    )
    assert result.exit_code == EXIT_IO
    assert isinstance(result.exception, SystemExit)
    assert result.stderr == f"Error: {summary}: No space left on device\n"


def test_an_os_error_without_a_file_is_a_bug_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError that names no file is not the user's: it is not hidden."""

    def broken(path: Path, data: dict[str, Any]) -> None:
        raise OSError("something internal")

    monkeypatch.setattr(_execute, "write_json", broken)
    result = CliRunner().invoke(
        cli, ["run", *TINY, "-q", "--out", str(tmp_path / "run")], prog_name="blazefl"
    )
    assert isinstance(result.exception, OSError)
    assert str(result.exception) == "something internal"
