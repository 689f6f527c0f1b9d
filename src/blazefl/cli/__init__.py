"""The `blazefl` command line: ``blazefl run``, ``sweep``, ``compare``, ``info``,
``plot``.

Installed as a console script by ``pip install 'blazefl[cli]'`` (click, rich,
matplotlib). See docs/cli.md.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["main"]

_MISSING = (
    "blazefl: the command line needs the 'cli' extra (click, rich, matplotlib); "
    "install it with: pip install 'blazefl[cli]'"
)


def main(
    argv: Sequence[str] | None = None,
    *,
    after_round: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Run the command line (the ``blazefl`` console script).

    ``after_round`` is awaited by ``blazefl run`` after each committed round
    with the number of rounds done (its checkpoint, if due, saved): the seam
    for observers such as the tests' "pause after round k" launcher. The
    console script passes none.
    """
    try:
        import click
    except ImportError:
        print(_MISSING, file=sys.stderr)
        raise SystemExit(1) from None
    from blazefl.cli._app import cli

    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="blazefl",
            standalone_mode=False,
            obj=after_round,
        )
    except click.exceptions.Abort:
        # Ctrl-C before a run installed its own signal handling (while it
        # reads or generates the data); a running run exits with 130 itself.
        print("blazefl: interrupted before the run started", file=sys.stderr)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)
