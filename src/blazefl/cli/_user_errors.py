"""How a mistake in what the user gave reaches them: one line, a known exit code.

`blazefl run` sorts what goes wrong before the first round into two kinds:

- **the user's input** (a value, a file, a folder they named): a
  `ConfigurationError`, shown by click as ``Error: ...`` with exit status 2.
  `user_path` turns the `OSError` of a path the user named (``--out``,
  ``--resume``, ``--data-dir``) into one, naming the option, the path and
  the system's reason.
- **the machine** (an `OSError` on some other file, e.g. a full disk while
  ``config.toml`` is written): `IOFailure`, one ``Error: ...`` line and exit
  status 74 (``sysexits.h``'s EX_IOERR, the code of a failed checkpoint).

Anything else is a bug of blazefl's and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from blazefl._exceptions import ConfigurationError

__all__ = ["EXIT_IO", "IOFailure", "describe_os_error", "user_path"]

#: ``sysexits.h``'s EX_IOERR.
EXIT_IO = 74


class IOFailure(click.ClickException):
    """An `OSError` on a file the user did not name: one line, exit 74."""

    exit_code = EXIT_IO

    def __init__(self, exc: OSError) -> None:
        super().__init__(describe_os_error(exc))


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` that is not a folder."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def describe_os_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """``PATH: reason`` for an `OSError`, naming the file in the way for ENOTDIR."""
    where = exc.filename if exc.filename is not None else path
    if where is None:
        return str(exc)
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOTDIR:
        blocker = _file_in_the_way(Path(os.fsdecode(where)))
        if blocker is not None:
            return f"{os.fsdecode(where)}: {blocker} is a file, not a folder"
    return f"{os.fsdecode(where)}: {reason}"


@contextmanager
def user_path(
    option: str, path: str | os.PathLike[str], expected: str
) -> Iterator[None]:
    """Turn an `OSError` inside into a `ConfigurationError` about ``option``.

    ``expected`` says what the option must name, e.g. "a folder blazefl can
    create and write".
    """
    try:
        yield
    except OSError as exc:
        # A data set reader's own FileNotFoundError (no filename) says what
        # it looked for; keep its sentence.
        detail = str(exc) if exc.filename is None else describe_os_error(exc, path)
        raise ConfigurationError(
            f"Invalid value for '{option}': {detail}; {option} must be {expected}"
        ) from exc
