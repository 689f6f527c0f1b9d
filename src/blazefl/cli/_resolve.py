"""`resolve`: defaults, a TOML file and command-line options into one `RunConfig`.

The command line wins over the file, the file over the defaults. Every bad
value fails here, before anything is built, with a message naming the option
and where the value came from; then the checks that span several settings
(simulated time, robustness, privacy, per-client evaluation, tracking, the
data folder) run on the merged result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms import ALGORITHMS
from blazefl.algorithms._settings import settings_of
from blazefl.cli._checks import (
    ASYNC_ALGORITHMS,
    DATASET_MODELS,
    FILE_DATASETS,
    LEAF_DATASETS,
)
from blazefl.cli._client_eval import (
    check_client_eval,
)
from blazefl.cli._config import (
    ALGORITHM_OPTIONS,
    CHECKS,
    RUN_SETTINGS,
    RunConfig,
    option_name,
)
from blazefl.cli._robust import check_robust

__all__ = ["resolve"]


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
    partition = checked.get("partition", "natural")
    if checked.get("feature_shift") is not None and dataset in (
        "leaf-synthetic",
        "shakespeare",
        "sent140",
    ):
        raise ConfigurationError(
            f"Invalid value for {_where('feature_shift', sources)}: --dataset "
            f"{dataset} has no images to shift; use an image data set"
        )
    if dataset in LEAF_DATASETS and partition != "natural":
        raise ConfigurationError(
            f"Invalid value for {_where('partition', sources)}: --dataset "
            f"{dataset} keeps LEAF's natural split (one client per user); use "
            f"--partition natural, not {partition!r}"
        )
    config = RunConfig(**{k: v for k, v in checked.items() if k in RUN_SETTINGS})
    if config.ray_address is not None and config.executor != "ray":
        raise ConfigurationError(
            f"{_where('ray_address', sources)} applies only to --executor ray, "
            f"not --executor {config.executor}; pass --executor ray, or leave "
            f"{option_name('ray_address')} out"
        )
    if config.device is not None and config.executor == "ray":
        raise ConfigurationError(
            f"{_where('device', sources)} applies to --executor inline, threads, "
            "processes or cohort; Ray places its actors' GPUs itself "
            "(RayExecutor(gpus_per_client=...), docs/ray.md)"
        )
    if config.clients_per_round < 1:
        raise ConfigurationError(
            f"Invalid value for {_where('sample_ratio', sources)}: "
            f"{config.sample_ratio} of {config.clients} clients samples no client "
            "per round; it must be in (0, 1] with --sample-ratio x --clients >= 1"
        )
    _check_time(config, sources)
    config = check_robust(config, lambda key: _where(key, sources))
    cls = ALGORITHMS[config.algorithm]
    for knob in ALGORITHM_OPTIONS:
        declared = ALGORITHM_OPTIONS[knob].declared
        if knob in checked and config.algorithm not in declared:
            raise ConfigurationError(
                f"{_where(knob, sources)} does not apply to --algorithm "
                f"{config.algorithm}; it is a knob of {', '.join(declared)}"
            )
    settings: dict[str, Any] = {}
    for s in settings_of(cls):
        if s.federation_size:
            continue
        try:
            settings[s.name] = ALGORITHM_OPTIONS[s.name].check(config.algorithm)(
                checked.get(s.name, s.default)
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"Invalid value for {_where(s.name, sources)}: {exc}"
            ) from None
    config = dataclasses.replace(config, algorithm_settings=settings)
    from blazefl.cli._privacy import check_privacy

    check_privacy(config, checked, partial(_where, sources=sources))
    check_client_eval(config, partial(_where, sources=sources))
    return config


_SYNC_ONLY = ("deadline", "over_selection")
_ASYNC_ONLY = ("buffer_size", "concurrency")
_PROFILE_ONLY = ("speed_sigma", "online_fraction")


def _check_time(config: RunConfig, sources: Mapping[str, str]) -> None:
    """The simulated-time settings, against each other (docs/simulated-time.md)."""
    mode = config.mode or "sync"
    timed = [k for k in (*_SYNC_ONLY, *_ASYNC_ONLY) if getattr(config, k) is not None]
    if config.profiles is None and (mode == "async" or timed):
        what = "--mode async" if mode == "async" else _where(timed[0], sources)
        raise ConfigurationError(
            f"{what} needs simulated time: pass --profiles lognormal (generated "
            "device profiles) or --profiles FILE (a trace)"
        )
    for key in _PROFILE_ONLY:
        if getattr(config, key) is not None and config.profiles != "lognormal":
            raise ConfigurationError(
                f"{_where(key, sources)} shapes generated profiles: it needs "
                "--profiles lognormal"
            )
    if config.profiles not in (None, "lognormal"):
        path = Path(config.profiles)
        if not path.is_file() or path.suffix.lower() not in (".csv", ".json"):
            raise ConfigurationError(
                f"Invalid value for {_where('profiles', sources)}: "
                f"{config.profiles!r} is neither 'lognormal' nor a .csv or .json "
                "trace file"
            )
    wrong = _SYNC_ONLY if mode == "async" else _ASYNC_ONLY
    for key in wrong:
        if getattr(config, key) is not None:
            other = "sync" if mode == "async" else "async"
            raise ConfigurationError(
                f"{_where(key, sources)} applies to --mode {other}, not --mode {mode}"
            )
    if mode == "async" and config.algorithm not in ASYNC_ALGORITHMS:
        raise ConfigurationError(
            f"--mode async needs an algorithm that applies stale updates "
            f"(--algorithm {' or '.join(ASYNC_ALGORITHMS)}); "
            f"{config.algorithm} cannot"
        )
    if mode == "async" and config.executor == "cohort":
        raise ConfigurationError(
            "--mode async cannot run on --executor cohort (its clients start "
            "from different model versions); use inline, threads, processes or ray"
        )
    if mode == "async":
        concurrency = config.concurrency or min(10, config.clients)
        cls: Any = ALGORITHMS[config.algorithm]
        buffer = config.buffer_size or cls.default_buffer_size
        if concurrency > config.clients:
            raise ConfigurationError(
                f"{_where('concurrency', sources)}: {concurrency} is above "
                f"--clients {config.clients}"
            )
        if buffer > concurrency:
            raise ConfigurationError(
                f"{_where('buffer_size', sources)}: {buffer} is above the "
                f"concurrency {concurrency}; the server would wait for more "
                "arrivals than clients train at once"
            )
        if config.algorithm == "fedasync" and buffer != 1:
            raise ConfigurationError(
                f"{_where('buffer_size', sources)}: fedasync applies each update "
                "as it arrives (buffer size 1); use --algorithm fedbuff to buffer"
            )
