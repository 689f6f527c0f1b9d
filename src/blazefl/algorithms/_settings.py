"""Algorithm settings, declared once: on the algorithm's dataclass field.

::

    @dataclass(frozen=True)
    class FedProx(Algorithm):
        mu: float = setting(0.01, check_non_negative, "Proximal strength μ >= 0.")

Each `setting` carries its default (in the dataclass: per algorithm, where
two algorithms share a name such as ``server_lr``), its check (a validator
of `blazefl._validate`), its help line, its command-line name, and whether
``blazefl run --resume`` may change it. `Algorithm.__post_init__` runs the
checks; the command line derives its ``--option``, its config-file key, its
check and its resume rule from the same field, so a new setting touches the
algorithm's module only.

Nothing here imports torch (the command line's ``--help`` reads it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from blazefl._validate import check_fraction, check_int, check_number

__all__ = [
    "Setting",
    "check_settings",
    "check_count",
    "check_fraction",
    "check_non_negative",
    "check_positive",
    "setting",
    "settings_of",
]

#: ``check(name, value) -> value``: raises `ConfigurationError` naming ``name``.
Check = Callable[..., Any]

check_positive: Check = check_number
check_non_negative: Check = partial(check_number, allow_zero=True)
check_count: Check = check_int

_KEY = "blazefl.setting"


@dataclass(frozen=True)
class Setting:
    """One algorithm setting as declared on its field (see `setting`)."""

    name: str
    default: Any
    check: Check
    help: str
    cli: str
    resumable: bool
    federation_size: bool


def setting(
    default: Any,
    check: Check,
    help: str,
    *,
    cli: str | None = None,
    resumable: bool = False,
    federation_size: bool = False,
) -> Any:
    """A dataclass field that is an algorithm setting.

    :param default: the value when none is given (this algorithm's own).
    :param check: a `blazefl._validate` validator, ``check(name, value)``;
        ``functools.partial`` binds its bounds.
    :param help: one line for ``blazefl run --help``.
    :param cli: the command-line option [default: ``--`` + the dashed name].
    :param resumable: whether ``--resume`` may change it (it must not
        change the numbers); otherwise it is part of the config digest.
    :param federation_size: the value is the run's number of clients (set
        by the server's ``num_clients`` and the command line's ``--clients``,
        never an option of its own: SCAFFOLD's N).
    """
    metadata = {
        _KEY: {
            "check": check,
            "help": help,
            "cli": cli,
            "resumable": resumable,
            "federation_size": federation_size,
        }
    }
    return dataclasses.field(default=default, metadata=metadata)


def settings_of(cls: type, *, strict: bool = True) -> tuple[Setting, ...]:
    """The settings an algorithm class declares, in field order.

    With ``strict``, a dataclass field that is not a `setting` raises
    `TypeError` (the command line cannot offer an undeclared field, and a
    forgotten declaration should fail loudly); without, it is skipped (an
    algorithm of your own need not declare its fields).
    """
    if not dataclasses.is_dataclass(cls):
        return ()
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is None:
            if not strict:
                continue
            raise TypeError(
                f"{cls.__name__}.{f.name} is a dataclass field but not a "
                "blazefl.algorithms setting(); declare it with setting(default, "
                "check, help)"
            )
        found.append(
            Setting(
                name=f.name,
                default=f.default,
                check=meta["check"],
                help=meta["help"],
                cli=meta["cli"] or "--" + f.name.replace("_", "-"),
                resumable=meta["resumable"],
                federation_size=meta["federation_size"],
            )
        )
    return tuple(found)


def check_settings(instance: object) -> None:
    """Run every declared setting's check on ``instance``'s values.

    The values are kept as given (an int ``mu`` stays an int), as before the
    checks were declarative.
    """
    for s in settings_of(type(instance), strict=False):
        s.check(s.name, getattr(instance, s.name))
