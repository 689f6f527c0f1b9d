"""The values every `blazefl run` option allows, as checks shared by the command
line and the config file.

A check takes a raw value (typed by click, or as TOML parsed it) and returns
it normalised (ints for integer options, floats for real ones) or raises
`ValueError` with a message saying what is allowed; `_config.resolve` adds
the option's name.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "ALGORITHM_NAMES",
    "CHECKS",
    "DATASETS",
    "DATASET_MODELS",
    "EXECUTORS",
    "FILE_DATASETS",
    "KNOBS",
    "LOG_FORMATS",
    "MODELS",
    "PARTITIONS",
]

# Kept literal so `blazefl --help` needs no torch import; a test checks them
# against blazefl.algorithms.ALGORITHMS and blazefl.models.MODEL_NAMES.
ALGORITHM_NAMES = (
    "fedavg",
    "fedavgm",
    "fedprox",
    "scaffold",
    "fedadam",
    "fedyogi",
    "fedadagrad",
)
MODELS = ("cnn", "mlp", "cifar_cnn", "resnet18")
DATASETS = (
    "synthetic",
    "synthetic-cifar10",
    "leaf-synthetic",
    "digits",
    "mnist",
    "cifar10",
)
PARTITIONS = ("natural", "iid", "dirichlet", "shards", "label-skew", "unbalanced")
EXECUTORS = ("inline", "threads", "processes", "ray")
LOG_FORMATS = ("console", "json")

# Models that fit each data set's inputs, the first being its default.
DATASET_MODELS = {
    "synthetic": ("cnn", "mlp"),  # 1x12x12
    "synthetic-cifar10": ("cifar_cnn", "cnn", "mlp", "resnet18"),  # 3x32x32
    "leaf-synthetic": ("mlp",),  # 60 features
    "digits": ("cnn", "mlp"),  # 1x8x8
    "mnist": ("cnn", "mlp", "cifar_cnn", "resnet18"),  # 1x28x28
    "cifar10": ("cifar_cnn", "cnn", "mlp", "resnet18"),
}
FILE_DATASETS = ("mnist", "cifar10")

_SEED_LIMIT = 2**63  # TOML integers are signed 64-bit


def _choice(allowed: tuple[str, ...]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or value not in allowed:
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


def _integer(minimum: int, limit: int | None = None) -> Callable[[object], int]:
    def check(value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (limit is not None and value >= limit)
        ):
            bound = f"in [{minimum}, 2**63)" if limit else f">= {minimum}"
            raise ValueError(f"must be an integer {bound}, got {value!r}")
        return value

    return check


def _number(
    low: float, high: float = math.inf, *, low_open: bool, high_open: bool = True
) -> Callable[[object], float]:
    def check(value: object) -> float:
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not ok:
            if high == math.inf:
                span = f"> {low:g}" if low_open else f">= {low:g}"
            else:
                left = "(" if low_open else "["
                right = ")" if high_open else "]"
                span = f"in {left}{low:g}, {high:g}{right}"
            raise ValueError(f"must be a finite number {span}, got {value!r}")
        return float(value)  # type: ignore[arg-type]

    return check


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty path, got {value!r}")
    return value


_POSITIVE = _number(0, low_open=True)
_FRACTION = _number(0, 1, low_open=False)

#: Algorithm knobs: option checks; which algorithms take each comes from
#: the algorithms' own dataclass fields (`algorithm_knobs`).
KNOBS: dict[str, Callable[[object], float]] = {
    "mu": _number(0, low_open=False),
    "server_lr": _POSITIVE,
    "momentum": _FRACTION,
    "beta1": _FRACTION,
    "beta2": _FRACTION,
    "tau": _POSITIVE,
}

CHECKS: dict[str, Callable[[object], Any]] = {
    "algorithm": _choice(ALGORITHM_NAMES),
    "dataset": _choice(DATASETS),
    "model": _choice(MODELS),
    "partition": _choice(PARTITIONS),
    "alpha": _POSITIVE,
    "shards_per_client": _integer(1),
    "classes_per_client": _integer(1),
    "unbalance_sigma": _number(0, low_open=False),
    "clients": _integer(1),
    "rounds": _integer(1),
    "sample_ratio": _number(0, 1, low_open=True, high_open=False),
    "epochs": _integer(1),
    "batch_size": _integer(1),
    "lr": _POSITIVE,
    "seed": _integer(0, _SEED_LIMIT),
    **KNOBS,
    "executor": _choice(EXECUTORS),
    "workers": _integer(1),
    "checkpoint_every": _integer(1),
    "data_dir": _text,
    "ray_address": _text,
    "out": _text,
    "quiet": _flag,
    "log_format": _choice(LOG_FORMATS),
}
