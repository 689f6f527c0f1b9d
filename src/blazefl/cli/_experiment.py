"""The experiment's settings: what a run trains, before how it runs.

The first part of the one table of run settings (`blazefl.cli._config.RunConfig`
derives from `ExperimentSettings`, so these fields come first, in this order,
on the command line and in ``config.toml``): the algorithm, data, model and
local training; differential privacy and secure aggregation; the seed;
simulated time; attacks and robust aggregation. Each field is a `run_setting`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from blazefl._validate import (
    check_fraction,
    check_int,
    check_number,
    check_ratio,
    check_seed,
)
from blazefl.cli._checks import (
    ACCOUNTANTS,
    ALGORITHM_NAMES,
    DATASETS,
    DP_MODES,
    DP_NOISES,
    FEATURE_SHIFTS,
    MODELS,
    MODES,
    PARTITIONS,
    check_delta,
    cli_check,
    flag,
    text,
)
from blazefl.cli._robust import AGGREGATE_DTYPES, AGGREGATOR_NAMES, ATTACK_NAMES
from blazefl.cli._run_setting import run_setting

__all__ = ["ExperimentSettings"]

_INT = cli_check(check_int)
_POSITIVE = cli_check(check_number)
_NON_NEGATIVE = cli_check(partial(check_number, allow_zero=True))


@dataclass(frozen=True, slots=True)
class ExperimentSettings:
    """What is trained: the settings that decide a run's numbers (most of
    them fixed on ``--resume``); see `blazefl.cli._config.RunConfig`."""

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
    aggregate_dtype: str | None = run_setting(
        None,
        None,
        "The weighted mean's arithmetic: model (the parameters' dtype, folded "
        "while clients train) or float64 (collected first; the arithmetic of "
        "blazefl before 'model', and of runs that did not record it) "
        "[default: model].",
        choices=AGGREGATE_DTYPES,
        kind=str,
    )
