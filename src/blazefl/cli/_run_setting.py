"""How one run setting is declared: `run_setting`, a `RunConfig` field
carrying its check, help line and ``--resume`` rule (`RunSetting`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from blazefl.cli._checks import choice

__all__ = ["Resume", "RunSetting", "run_setting"]

#: ``fixed``: decides the numbers (in the digest; --resume must repeat it);
#: ``free``: saved, but --resume may change it (the executors are bitwise
#: equal); ``invocation``: one command's, never saved.
Resume = Literal["fixed", "free", "invocation"]


@dataclass(frozen=True)
class RunSetting:
    """How one `RunConfig` field is offered, checked and resumed."""

    check: Callable[[object], Any]
    help: str
    resume: Resume
    kind: type
    choices: tuple[str, ...] | None
    metavar: str | None


def run_setting(
    default: Any,
    check: Callable[[object], Any] | None,
    help: str,
    *,
    resume: Resume = "fixed",
    kind: type | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
) -> Any:
    """A `RunConfig` field: a library validator (worded for the command line
    by `cli_check`) or, with ``choices``, one of them."""
    metadata = {
        "run": RunSetting(
            check=choice(choices) if choices else _required(check),
            help=help,
            resume=resume,
            kind=kind or type(default),
            choices=choices,
            metavar=metavar,
        )
    }
    return field(default=default, metadata=metadata)


def _required(check: Callable[[object], Any] | None) -> Callable[[object], Any]:
    if check is None:
        raise TypeError("a run setting needs a check or choices")
    return check
