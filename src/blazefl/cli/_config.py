"""The run configuration: defaults, a TOML file, command-line options, in that order.

`RunConfig` is the one table of run settings: each field declares its
default, its check, its help line and its ``--resume`` rule (`run_setting`);
the click options, the config-file keys, the checks and the resume rules are
derived from it, and the algorithm settings from the algorithms' own
`blazefl.algorithms.setting` fields (`blazefl.cli._checks.algorithm_options`).

`resolve` merges the three sources (the command line wins over the file, the
file over the defaults) into a validated, frozen `RunConfig`. Every bad value
fails here, before anything is built, with a message naming the option, the
value seen and the values allowed. `RunConfig.saved` is what ``config.toml``
holds (written and read back by `blazefl.cli._toml`); `config_digest`
fingerprints the keys that decide the run's numbers, so a checkpoint can be
matched to its configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl._validate import (
    check_fraction,
    check_int,
    check_number,
    check_ratio,
    check_seed,
    sampled_per_round,
)
from blazefl.algorithms import ALGORITHMS
from blazefl.algorithms._settings import settings_of
from blazefl.cli._checks import (
    ACCOUNTANTS,
    ALGORITHM_NAMES,
    ASYNC_ALGORITHMS,
    DATASET_MODELS,
    DATASETS,
    DP_MODES,
    DP_NOISES,
    EXECUTORS,
    FEATURE_SHIFTS,
    FILE_DATASETS,
    KNOBS,
    LEAF_DATASETS,
    LOG_FORMATS,
    MODELS,
    MODES,
    PARTITIONS,
    algorithm_options,
    check_delta,
    cli_check,
    devices,
    flag,
    port,
    text,
)
from blazefl.cli._client_eval import (
    DEFAULT_FRACTION,
    DEFAULT_THRESHOLD,
    accuracy_threshold,
    check_client_eval,
    open_fraction,
)
from blazefl.cli._robust import AGGREGATOR_NAMES, ATTACK_NAMES, check_robust
from blazefl.cli._run_setting import RunSetting, run_setting
from blazefl.cli._track import TRACK_HELP, check_track

__all__ = [
    "CHECKS",
    "INVOCATION_KEYS",
    "KEYS",
    "OPERATIONAL_KEYS",
    "RUN_SETTINGS",
    "RunConfig",
    "RunSetting",
    "algorithm_knobs",
    "config_digest",
    "option_name",
    "resolve",
]


_INT = cli_check(check_int)
_POSITIVE = cli_check(check_number)
_NON_NEGATIVE = cli_check(partial(check_number, allow_zero=True))


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One run's settings, validated; ``algorithm_settings`` holds the
    algorithm's own (every setting it takes, resolved)."""

    algorithm: str = run_setting(
        "fedavg", None, "Federated algorithm.", choices=ALGORITHM_NAMES
    )
    dataset: str = run_setting(
        "synthetic",
        None,
        "Data set (mnist and cifar10 need --data-dir).",
        choices=DATASETS,
    )
    model: str = run_setting(
        "cnn", None, "Model [default: the data set's own].", choices=MODELS
    )
    partition: str = run_setting(
        "natural", None, "How training data is split over clients.", choices=PARTITIONS
    )
    alpha: float = run_setting(
        0.5,
        _POSITIVE,
        "Dirichlet concentration (--partition dirichlet, synthetic mixes).",
    )
    shards_per_client: int = run_setting(
        2, _INT, "Label shards per client (--partition shards)."
    )
    classes_per_client: int = run_setting(
        2, _INT, "Classes per client (--partition label-skew)."
    )
    unbalance_sigma: float = run_setting(
        1.0, _NON_NEGATIVE, "Log-normal size spread (--partition unbalanced)."
    )
    feature_shift: str | None = run_setting(
        None,
        None,
        "Shift each client's images its own way (rotation or contrast, from "
        "--seed; docs/personalization.md) and give it a shifted test share.",
        choices=FEATURE_SHIFTS,
        kind=str,
    )
    clients: int = run_setting(20, _INT, "Clients in the federation.")
    rounds: int = run_setting(20, _INT, "Communication rounds.")
    sample_ratio: float = run_setting(
        0.5,
        cli_check(check_ratio),
        "Fraction of clients sampled each round, in (0, 1].",
    )
    epochs: int = run_setting(2, _INT, "Local epochs per client per round.")
    batch_size: int = run_setting(16, _INT, "Local batch size.")
    lr: float = run_setting(0.1, _POSITIVE, "Client learning rate.")
    dp: str = run_setting(
        "off",
        None,
        "Differential privacy: central (server noise) or local (client noise).",
        choices=DP_MODES,
    )
    noise_multiplier: float | None = run_setting(
        None,
        _POSITIVE,
        "DP noise stddev over the clip norm, sigma > 0 (or --calibrate).",
        kind=float,
        metavar="SIGMA",
    )
    clip_norm: float = run_setting(
        1.0, _POSITIVE, "DP clipping norm C of each client's update (initial C)."
    )
    adaptive_clip: bool = run_setting(
        False, flag, "Adapt C to the median update norm (Andrew et al. 2021)."
    )
    dp_mechanism: str = run_setting(
        "gaussian", None, "Local DP noise (laplace: L1 clipping).", choices=DP_NOISES
    )
    delta: float = run_setting(1e-5, check_delta, "DP delta, in (0, 1).")
    accountant: str = run_setting(
        "rdp", None, "Privacy accountant (dp-accounting).", choices=ACCOUNTANTS
    )
    target_epsilon: float | None = run_setting(
        None,
        _POSITIVE,
        "Privacy budget: stop before the round that would exceed it.",
        kind=float,
    )
    calibrate: bool = run_setting(
        False,
        flag,
        "Derive --noise-multiplier from --target-epsilon over --rounds.",
    )
    secagg: bool = run_setting(
        False, flag, "Secure aggregation (simulated pairwise masks)."
    )
    seed: int = run_setting(
        42,
        cli_check(check_seed),
        "Run seed: data, sampling, model and client RNGs.",
    )
    profiles: str | None = run_setting(
        None,
        text,
        "Simulated time: device profiles, 'lognormal' (generated from --seed) "
        "or a .csv/.json trace file (docs/simulated-time.md); off by default.",
        kind=str,
        metavar="lognormal|FILE",
    )
    speed_sigma: float | None = run_setting(
        None,
        _NON_NEGATIVE,
        "Log-normal spread of generated compute speeds [default: 1.0].",
        kind=float,
    )
    online_fraction: float | None = run_setting(
        None,
        cli_check(check_ratio),
        "Share of each hour a generated client is online, in (0, 1] [default: 1].",
        kind=float,
    )
    mode: str | None = run_setting(
        None,
        None,
        "sync: rounds; async: FedBuff/FedAsync on the virtual clock [default: sync].",
        choices=MODES,
        kind=str,
    )
    deadline: float | None = run_setting(
        None,
        _POSITIVE,
        "Sync rounds: virtual seconds a round waits; later clients are stragglers.",
        kind=float,
    )
    over_selection: float | None = run_setting(
        None,
        _NON_NEGATIVE,
        "Sync rounds: sample ceil(k(1+x)) clients, keep the first k to finish.",
        kind=float,
    )
    buffer_size: int | None = run_setting(
        None,
        _INT,
        "Async: arrivals per server update [default: fedbuff 10, fedasync 1].",
        kind=int,
    )
    concurrency: int | None = run_setting(
        None,
        _INT,
        "Async: clients training at once [default: min(10, --clients)].",
        kind=int,
    )
    attack: str | None = run_setting(
        None,
        None,
        "Attack run by a fraction of the clients.",
        choices=ATTACK_NAMES,
        kind=str,
    )
    attack_fraction: float | None = run_setting(
        None,
        cli_check(check_fraction),
        "Share of clients that attack, in [0, 1), drawn once per run [default: 0.2].",
        kind=float,
    )
    attack_strength: float | None = run_setting(
        None,
        _POSITIVE,
        "sign-flip/scale: factor s [4/10]; noise: std [1]; backdoor: boost [1].",
        kind=float,
    )
    backdoor_target: int | None = run_setting(
        None,
        cli_check(partial(check_int, minimum=0)),
        "Label the backdoor trigger maps to [default: 0].",
        kind=int,
    )
    aggregator: str | None = run_setting(
        None,
        None,
        "Server aggregation in place of the weighted mean [default: mean].",
        choices=AGGREGATOR_NAMES,
        kind=str,
    )
    byzantine_f: int | None = run_setting(
        None,
        cli_check(partial(check_int, minimum=0)),
        "Byzantine clients per round the aggregator tolerates [default: the "
        "attackers a round can hold].",
        kind=int,
    )
    trim_beta: float | None = run_setting(
        None,
        _NON_NEGATIVE,
        "Trimmed mean: fraction cut from each side, in [0, 0.5) [default: f/n].",
        kind=float,
    )
    norm_bound: float | None = run_setting(
        None,
        _POSITIVE,
        "norm-bound: the largest L2 norm an update keeps.",
        kind=float,
    )
    executor: str = run_setting(
        "threads", None, "Where clients run.", choices=EXECUTORS, resume="free"
    )
    workers: int = run_setting(
        2,
        _INT,
        "Worker threads or processes (--executor cohort: chunks trained at once).",
        resume="free",
    )
    device: str | None = run_setting(
        None,
        devices,
        "Where clients compute: cpu, cuda (every visible GPU, workers "
        "round-robin), cuda:N or a list (cuda:0,cuda:1) [default: cpu].",
        kind=str,
        metavar="DEVICES",
    )
    max_cohort: int = run_setting(
        0,
        cli_check(partial(check_int, minimum=0)),
        "With --executor cohort: clients per batched chunk; 0 chooses from the "
        "model and batch size (the choice is written to config.toml).",
        resume="free",
    )
    checkpoint_every: int = run_setting(
        1, _INT, "Checkpoint every K rounds (and after the last).", resume="free"
    )
    evaluate_every: int = run_setting(
        1,
        cli_check(partial(check_int, minimum=0)),
        "Evaluate on the test split every K rounds (and after the last); 0: never.",
        resume="free",
    )
    evaluate_clients: bool | None = run_setting(
        None,
        flag,
        "Also evaluate every client on its own test data (LEAF's, else a "
        "split of its training data) when the test split is evaluated; see "
        "docs/evaluation.md.",
        kind=bool,
    )
    client_test_fraction: float | None = run_setting(
        None,
        open_fraction,
        "With --evaluate-clients: the share of each client's training data "
        f"held out as its test data [default: {DEFAULT_FRACTION}; LEAF: its own].",
        kind=float,
        metavar="F",
    )
    client_acc_threshold: float | None = run_setting(
        None,
        accuracy_threshold,
        "With --evaluate-clients: client_acc_above counts clients at or above "
        f"this accuracy [default: {DEFAULT_THRESHOLD}].",
        resume="free",
        kind=float,
        metavar="ACC",
    )
    no_memory_check: bool = run_setting(
        False,
        flag,
        "Run even when the memory estimate exceeds what this machine has "
        "available (see docs/reliability.md).",
        resume="free",
    )
    data_dir: str | None = run_setting(
        None,
        text,
        "Folder with the official MNIST / CIFAR-10 files.",
        resume="free",
        kind=str,
        metavar="DIR",
    )
    ray_address: str | None = run_setting(
        None,
        text,
        "With --executor ray: the cluster to join (e.g. 10.0.0.1:6379); "
        "default: a private one-machine Ray instance.",
        resume="free",
        kind=str,
        metavar="ADDR",
    )
    track: str | None = run_setting(
        None, check_track, TRACK_HELP, resume="free", kind=str, metavar="LIST"
    )
    out: str | None = run_setting(
        None,
        text,
        "Run folder [default: runs/<timestamp>-<algorithm>].",
        resume="invocation",
        kind=str,
        metavar="DIR",
    )
    log_format: str = run_setting(
        "console",
        None,
        "Logs on stderr: console (warnings) or json (all events).",
        choices=LOG_FORMATS,
        resume="invocation",
    )
    quiet: bool = run_setting(
        False, flag, "Print only the final summary line.", resume="invocation"
    )
    dashboard: bool = run_setting(
        False,
        flag,
        "Serve a live dashboard of this run while it trains (needs the "
        "'dashboard' extra).",
        resume="invocation",
    )
    dashboard_host: str = run_setting(
        "127.0.0.1",
        text,
        "Address the dashboard listens on; anything but 127.0.0.1 is reachable "
        "from other machines, with no authentication.",
        resume="invocation",
        metavar="HOST",
    )
    dashboard_port: int = run_setting(
        0, port, "Port of the dashboard (0: any free one).", resume="invocation"
    )
    algorithm_settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def clients_per_round(self) -> int:
        return sampled_per_round(self.clients, self.sample_ratio)

    @property
    def saved(self) -> dict[str, Any]:
        """What ``config.toml`` holds: every setting but the per-invocation ones.

        The algorithm's settings come after the run's fixed ones, where they
        have always been written.
        """
        values = {k: getattr(self, k) for k in RUN_SETTINGS}
        fixed = {k: values[k] for k in _FIXED if values[k] is not None}
        free = {k: values[k] for k in _FREE if values[k] is not None}
        return {**fixed, **self.algorithm_settings, **free}

    def knobs(self) -> dict[str, Any]:
        """The algorithm's keyword arguments (settings it takes, resolved)."""
        return dict(self.algorithm_settings)

    def value(self, key: str) -> Any:
        """A run setting or an algorithm setting (None if it does not apply)."""
        if key in RUN_SETTINGS:
            return getattr(self, key)
        return self.algorithm_settings.get(key)


#: Every run setting, in `RunConfig` order.
RUN_SETTINGS: dict[str, RunSetting] = {
    f.name: f.metadata["run"] for f in dataclasses.fields(RunConfig) if f.metadata
}
_FIXED = tuple(k for k, s in RUN_SETTINGS.items() if s.resume == "fixed")
_FREE = tuple(k for k, s in RUN_SETTINGS.items() if s.resume == "free")
_OPTIONS = algorithm_options()
KEYS = (
    *_FIXED,
    *_OPTIONS,
    *_FREE,
    *(k for k, s in RUN_SETTINGS.items() if s.resume == "invocation"),
)
#: Settings of one invocation, not of the run: never saved, free on --resume.
INVOCATION_KEYS = frozenset(
    k for k, s in RUN_SETTINGS.items() if s.resume == "invocation"
)
#: Saved, but they do not change the numbers (the executors are bitwise equal),
#: so --resume may change them and the checkpoint digest leaves them out.
OPERATIONAL_KEYS = frozenset(_FREE) | frozenset(
    k for k, o in _OPTIONS.items() if o.resumable
)
#: Every key's check (an algorithm setting's: its first declarer's; `resolve`
#: checks it again against the chosen algorithm's own declaration).
CHECKS: dict[str, Callable[[object], Any]] = {
    **{k: s.check for k, s in RUN_SETTINGS.items()},
    **KNOBS,
}


def option_name(key: str) -> str:
    """The command-line spelling of a config key: ``batch_size`` → ``--batch-size``."""
    if key in _OPTIONS:
        return _OPTIONS[key].cli
    return "--" + key.replace("_", "-")


def config_digest(config: RunConfig) -> str:
    """SHA-256 of the canonical JSON of the settings that decide the numbers."""
    canonical = {k: v for k, v in config.saved.items() if k not in OPERATIONAL_KEYS}
    import hashlib  # here, not at the top: `blazefl run --help` needs neither
    import json

    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def algorithm_knobs() -> dict[str, dict[str, Any]]:
    """Each algorithm's settings and their defaults, from its dataclass fields."""
    return {
        name: {s.name: s.default for s in settings_of(cls) if not s.federation_size}
        for name, cls in ALGORITHMS.items()
    }


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
    for knob in _OPTIONS:
        declared = _OPTIONS[knob].declared
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
            settings[s.name] = _OPTIONS[s.name].check(config.algorithm)(
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
