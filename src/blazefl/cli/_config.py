"""The run configuration: defaults, a TOML file, command-line options, in that order.

`resolve` merges the three sources (the command line wins over the file, the
file over the defaults) into a validated, frozen `RunConfig`. Every bad value
fails here, before anything is built, with a message naming the option, the
value seen and the values allowed. `RunConfig.saved` is what ``config.toml``
holds (written by `dump_toml`, a flat-key TOML writer, and read back by
`read_config_file`); `config_digest` fingerprints the keys that decide the
run's numbers, so a checkpoint can be matched to its configuration.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.cli._checks import CHECKS, DATASET_MODELS, FILE_DATASETS, KNOBS

__all__ = [
    "INVOCATION_KEYS",
    "KEYS",
    "OPERATIONAL_KEYS",
    "RunConfig",
    "algorithm_knobs",
    "config_digest",
    "dump_toml",
    "option_name",
    "read_config_file",
    "resolve",
]


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One run's settings, validated; ``None`` knobs do not apply to the algorithm."""

    algorithm: str = "fedavg"
    dataset: str = "synthetic"
    model: str = "cnn"
    partition: str = "natural"
    alpha: float = 0.5
    shards_per_client: int = 2
    classes_per_client: int = 2
    unbalance_sigma: float = 1.0
    clients: int = 20
    rounds: int = 20
    sample_ratio: float = 0.5
    epochs: int = 2
    batch_size: int = 16
    lr: float = 0.1
    seed: int = 42
    mu: float | None = None
    server_lr: float | None = None
    momentum: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    tau: float | None = None
    executor: str = "threads"
    workers: int = 2
    checkpoint_every: int = 1
    data_dir: str | None = None
    ray_address: str | None = None
    out: str | None = None
    quiet: bool = False
    log_format: str = "console"

    @property
    def clients_per_round(self) -> int:
        return int(self.clients * self.sample_ratio + 1e-9)

    @property
    def saved(self) -> dict[str, Any]:
        """What ``config.toml`` holds: every setting but the per-invocation ones."""
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in INVOCATION_KEYS and v is not None
        }

    def knobs(self) -> dict[str, float]:
        """The algorithm's keyword arguments (knobs it takes, resolved)."""
        return {k: v for k in KNOBS if (v := getattr(self, k)) is not None}


KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))
#: Settings of one invocation, not of the run: never saved, free on --resume.
INVOCATION_KEYS = frozenset({"out", "quiet", "log_format"})
#: Saved, but they do not change the numbers (the executors are bitwise equal),
#: so --resume may change them and the checkpoint digest leaves them out.
OPERATIONAL_KEYS = frozenset(
    {"executor", "workers", "checkpoint_every", "data_dir", "ray_address"}
)


def option_name(key: str) -> str:
    """The command-line spelling of a config key: ``batch_size`` → ``--batch-size``."""
    return "--" + key.replace("_", "-")


def config_digest(config: RunConfig) -> str:
    """SHA-256 of the canonical JSON of the settings that decide the numbers."""
    canonical = {k: v for k, v in config.saved.items() if k not in OPERATIONAL_KEYS}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def algorithm_knobs() -> dict[str, dict[str, float]]:
    """Each algorithm's knobs and their defaults, from its dataclass fields."""
    from blazefl.algorithms import ALGORITHMS  # torch: only when a run resolves

    table: dict[str, dict[str, float]] = {}
    for name, cls in ALGORITHMS.items():
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        table[name] = {
            f.name: f.default  # type: ignore[misc]
            for f in fields
            if f.name != "num_clients"  # set from --clients (SCAFFOLD)
        }
    return table


def _where(key: str, sources: Mapping[str, str]) -> str:
    option = f"'{option_name(key)}'"
    source = sources.get(key)
    return option if source is None else f"{option} ({key} in {source})"


def resolve(
    options: Mapping[str, object],
    file_values: Mapping[str, object] | None = None,
    file_name: str | None = None,
) -> RunConfig:
    """Validate defaults < file values < options (``None`` options are unset)."""
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for key, value in (file_values or {}).items():
        values[key] = value
        sources[key] = file_name or "the config file"
    for key, value in options.items():
        if value is not None:
            values[key] = value
            sources.pop(key, None)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in CHECKS:
            raise ConfigurationError(f"unknown setting {key!r}")
        try:
            checked[key] = CHECKS[key](value)
        except ValueError as exc:
            raise ConfigurationError(
                f"Invalid value for {_where(key, sources)}: {exc}"
            ) from None
    return _finish(checked, sources)


def _finish(checked: dict[str, Any], sources: Mapping[str, str]) -> RunConfig:
    dataset = checked.get("dataset", RunConfig().dataset)
    allowed = DATASET_MODELS[dataset]
    model = checked.setdefault("model", allowed[0])
    if model not in allowed:
        raise ConfigurationError(
            f"Invalid value for {_where('model', sources)}: {model!r} does not fit "
            f"--dataset {dataset}; use one of {', '.join(map(repr, allowed))}"
        )
    if dataset in FILE_DATASETS:
        folder = checked.get("data_dir")
        if folder is None:
            raise ConfigurationError(
                f"--dataset {dataset} reads the official files: pass --data-dir "
                "DIR (blazefl never downloads data sets)"
            )
        if not Path(folder).is_dir():
            raise ConfigurationError(
                f"Invalid value for {_where('data_dir', sources)}: {folder!r} is "
                "not a folder"
            )
    config = RunConfig(**{k: v for k, v in checked.items() if k not in KNOBS})
    if config.clients_per_round < 1:
        raise ConfigurationError(
            f"Invalid value for {_where('sample_ratio', sources)}: "
            f"{config.sample_ratio} of {config.clients} clients samples no client "
            "per round; it must be in (0, 1] with --sample-ratio x --clients >= 1"
        )
    takes = algorithm_knobs()[config.algorithm]
    for knob in KNOBS:
        if knob in checked and knob not in takes:
            users = [a for a, ks in algorithm_knobs().items() if knob in ks]
            raise ConfigurationError(
                f"{_where(knob, sources)} does not apply to --algorithm "
                f"{config.algorithm}; it is a knob of {', '.join(users)}"
            )
    knobs: dict[str, Any] = {
        k: float(checked.get(k, default)) for k, default in takes.items()
    }
    return dataclasses.replace(config, **knobs)


def read_config_file(path: Path) -> dict[str, object]:
    """A config file's settings, keys normalised to snake_case.

    Raises `ConfigurationError` for an unreadable file, nested tables, a key
    given twice (``batch-size`` and ``batch_size``) and unknown keys (with the
    closest known key as a suggestion).
    """
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    values: dict[str, object] = {}
    for raw_key, value in raw.items():
        key = raw_key.replace("-", "_")
        if isinstance(value, dict):
            raise ConfigurationError(
                f"{path}: [{raw_key}] is a table; the config file takes flat "
                "keys only (key = value)"
            )
        if key not in CHECKS:
            close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"{path}: unknown key {raw_key!r}{hint} (known keys: {', '.join(KEYS)})"
            )
        if key in values:
            raise ConfigurationError(f"{path}: {key!r} is given twice")
        values[key] = value
    return values


def dump_toml(values: Mapping[str, object], header: str = "") -> str:
    """Flat ``key = value`` TOML for strings, booleans, integers and floats."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
        return repr(value)  # shortest round-trip form; TOML reads it back exactly
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'

    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _toml_char(char: str) -> str:
    # A TOML basic string escapes the quote, the backslash and control
    # characters; everything else (the file is UTF-8) is written as is.
    if char in '"\\':
        return "\\" + char
    if char < " " or char == "\x7f":
        return f"\\u{ord(char):04x}"
    return char
