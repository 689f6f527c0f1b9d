"""``--attack``, ``--aggregator`` and ``--aggregate-dtype``: their checks,
their defaults, and the objects they build (`blazefl.robust`).

`check_robust` runs inside `blazefl.cli._config.resolve`, so a bad
combination (Krum with f too large for the clients per round, a trim
fraction without the trimmed mean, an attack fraction without an attack)
exits with status 2 before anything is built. It fills in the defaults: an
attack fraction of 0.2, and f, the Byzantine clients the aggregator must
tolerate, as the most attackers a round can hold; and the weighted mean's
dtype, ``model``, recorded so that a resumed run keeps it (a run folder
from before the setting resumes with ``float64``, the arithmetic it ran).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from blazefl._exceptions import ConfigurationError
from blazefl.algorithms import WeightedMean
from blazefl.robust import (
    AGGREGATORS,
    ATTACKS,
    Aggregator,
    Attack,
    draw_attackers,
    make_aggregator,
    make_attack,
)

if TYPE_CHECKING:
    from blazefl.cli._config import RunConfig

__all__ = [
    "AGGREGATE_DTYPES",
    "AGGREGATOR_NAMES",
    "ATTACK_NAMES",
    "LEGACY_AGGREGATE_DTYPE",
    "DEFAULT_ATTACK_FRACTION",
    "aggregator_of",
    "attack_of",
    "check_robust",
    "robust_summary",
    "with_legacy_dtype",
]

AGGREGATOR_NAMES = tuple(AGGREGATORS)
AGGREGATE_DTYPES = ("model", "float64")
#: What a run folder that records no aggregate_dtype ran (blazefl before it).
LEGACY_AGGREGATE_DTYPE = "float64"
ATTACK_NAMES = tuple(ATTACKS)
DEFAULT_ATTACK_FRACTION = 0.2
#: Aggregators that tolerate f Byzantine clients (and so take --byzantine-f).
_TOLERATE_F = ("median", "trimmed-mean", "krum", "multi-krum", "bulyan")

Where = Callable[[str], str]


def _only_with(config: RunConfig, where: Where, key: str, needs: str) -> None:
    if config.value(key) is not None:
        raise ConfigurationError(f"{where(key)} applies only with {needs}")


def num_attackers(config: RunConfig) -> int:
    """How many clients attack (⌊fraction·clients⌋, 0 without an attack)."""
    if config.attack is None or config.attack_fraction is None:
        return 0
    return len(draw_attackers(config.clients, config.attack_fraction, config.seed))


def check_robust(config: RunConfig, where: Where) -> RunConfig:
    """``config`` with the robustness defaults filled in, or a clear error."""
    if config.attack is None:
        for key in ("attack_fraction", "attack_strength", "backdoor_target"):
            _only_with(config, where, key, "--attack")
    else:
        if config.attack_fraction is None:
            config = dataclasses.replace(
                config, attack_fraction=DEFAULT_ATTACK_FRACTION
            )
        try:
            attack_of(config)
        except ConfigurationError as exc:
            key = (
                "backdoor_target"
                if config.backdoor_target is not None
                else ("attack_strength")
            )
            raise ConfigurationError(f"Invalid value for {where(key)}: {exc}") from None
    name = config.aggregator or "mean"
    if name != "mean":
        _only_with(config, where, "aggregate_dtype", "the weighted mean")
    elif config.aggregate_dtype is None:
        config = dataclasses.replace(config, aggregate_dtype="model")
    if name != "trimmed-mean":
        _only_with(config, where, "trim_beta", "--aggregator trimmed-mean")
    if name != "norm-bound":
        _only_with(config, where, "norm_bound", "--aggregator norm-bound")
    elif config.norm_bound is None:
        raise ConfigurationError(
            f"{where('aggregator')} norm-bound needs --norm-bound M, the largest "
            "L2 norm a client's update keeps (e.g. a little above the median "
            "norm of honest updates)"
        )
    if name not in _TOLERATE_F:
        _only_with(
            config, where, "byzantine_f", f"--aggregator {' / '.join(_TOLERATE_F)}"
        )
        return config
    derived = config.byzantine_f is None
    if derived:
        f = min(num_attackers(config), config.clients_per_round)
        config = dataclasses.replace(config, byzantine_f=f)
    try:
        aggregator = aggregator_of(config)
    except ConfigurationError as exc:
        key = "trim_beta" if config.trim_beta is not None else "byzantine_f"
        raise ConfigurationError(f"Invalid value for {where(key)}: {exc}") from None
    try:
        aggregator.check(config.clients_per_round)  # type: ignore[union-attr]
    except ConfigurationError as exc:
        origin = (
            f" (f = {config.byzantine_f}: the attackers a round can hold, from "
            f"--attack-fraction {config.attack_fraction} of {config.clients} "
            "clients; set --byzantine-f to choose another)"
            if derived and config.byzantine_f
            else ""
        )
        key = "aggregator" if derived else "byzantine_f"
        raise ConfigurationError(
            f"Invalid value for {where(key)}: {exc}{origin}"
        ) from None
    return config


def aggregator_of(config: RunConfig) -> Aggregator | None:
    """The server's aggregator (None: the default `WeightedMean`)."""
    if config.aggregator in (None, "mean"):
        dtype: Any = config.aggregate_dtype or "model"
        if config.aggregator is None and dtype == "model":
            return None
        return WeightedMean(dtype=dtype)
    return make_aggregator(
        config.aggregator,
        f=config.byzantine_f or 0,
        beta=config.trim_beta,
        bound=config.norm_bound,
    )


def with_legacy_dtype(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config's values, with the aggregate dtype it ran if it
    records none (`LEGACY_AGGREGATE_DTYPE`, for the weighted mean)."""
    if stored.get("aggregator", "mean") == "mean":
        return {"aggregate_dtype": LEGACY_AGGREGATE_DTYPE, **stored}
    return stored


def attack_of(config: RunConfig) -> Attack | None:
    """The attack the attackers run (None without ``--attack``)."""
    if config.attack is None:
        return None
    return make_attack(
        config.attack, strength=config.attack_strength, target=config.backdoor_target
    )


def robust_summary(config: RunConfig, attackers: tuple[int, ...]) -> dict[str, Any]:
    """What summary.json records of the attack and the aggregator."""
    summary: dict[str, Any] = {}
    attack = attack_of(config)
    if attack is not None:
        summary["attack"] = {
            **attack.describe(),
            "fraction": config.attack_fraction,
            "attackers": list(attackers),
        }
    aggregator = aggregator_of(config)
    if aggregator is not None:
        summary["aggregator"] = aggregator.describe()
    return summary
