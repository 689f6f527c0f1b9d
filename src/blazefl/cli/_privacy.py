"""The command line's privacy settings: their combinations, and the `Privacy`.

`check_privacy` refuses, while the configuration is resolved (before anything
is built), the combinations the privacy argument does not cover: a DP option
without ``--dp``, ``--dp`` without a noise multiplier (or ``--calibrate``), an
accountant the library cannot run for this sampling, SCAFFOLD's unprotected
control variates, an aggregator that needs individual updates.
`privacy_of` builds the `blazefl.privacy.Privacy` both sides of the run share,
deriving σ from the budget with ``--calibrate``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from blazefl._exceptions import ConfigurationError

if TYPE_CHECKING:
    from blazefl.cli._config import RunConfig
    from blazefl.privacy import Privacy

__all__ = ["DP_KEYS", "check_privacy", "privacy_of"]

#: Settings that only mean something with --dp central|local.
DP_KEYS = (
    "noise_multiplier",
    "clip_norm",
    "adaptive_clip",
    "dp_mechanism",
    "delta",
    "accountant",
    "target_epsilon",
    "calibrate",
)


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _settings(config: RunConfig, noise: float | None) -> Privacy:
    from blazefl.privacy import Privacy

    return Privacy(
        dp=config.dp,  # type: ignore[arg-type]
        noise_multiplier=noise,
        clip_norm=config.clip_norm,
        adaptive_clip=config.adaptive_clip,
        mechanism=config.dp_mechanism,  # type: ignore[arg-type]
        delta=config.delta,
        accountant=config.accountant,  # type: ignore[arg-type]
        target_epsilon=config.target_epsilon,
        secagg=config.secagg,
        secret=config.seed,
    )


def check_privacy(
    config: RunConfig,
    given: Mapping[str, Any],
    where: Callable[[str], str],
) -> None:
    """Refuse a privacy combination that cannot run (``given``: the keys set)."""
    if config.dp == "off":
        defaults = type(config)()
        for key in DP_KEYS:
            # A saved config.toml lists every key, at its default when unused.
            if key in given and given[key] != getattr(defaults, key):
                raise ConfigurationError(
                    f"{where(key)} needs --dp central or --dp local"
                )
    else:
        if config.calibrate:
            if config.noise_multiplier is not None:
                raise ConfigurationError(
                    f"{where('noise_multiplier')} and --calibrate exclude each "
                    "other: --calibrate derives the noise multiplier from "
                    "--target-epsilon"
                )
            if config.target_epsilon is None:
                raise ConfigurationError(
                    "--calibrate needs --target-epsilon (the budget the noise "
                    "multiplier is derived from)"
                )
        elif config.noise_multiplier is None:
            raise ConfigurationError(
                f"--dp {config.dp} needs --noise-multiplier SIGMA (> 0), or "
                "--target-epsilon EPS with --calibrate to derive it"
            )
        if config.dp_mechanism == "laplace" and config.dp != "local":
            raise ConfigurationError(
                f"{where('dp_mechanism')} laplace is for --dp local; central DP "
                "adds Gaussian noise"
            )
    from blazefl.algorithms import ALGORITHMS

    # Placeholder σ under --calibrate: the combination checks do not depend on it.
    noise = None if config.dp == "off" else config.noise_multiplier or 1.0
    privacy = _settings(config, noise)
    aggregator = getattr(config, "aggregator", None) or "mean"
    privacy.check_with(ALGORITHMS[config.algorithm](), aggregator)
    if privacy.enabled and config.executor == "cohort":
        raise ConfigurationError(
            "--executor cohort cannot run --dp or --secagg: the batched step "
            "skips the per-client clipping, noise and masks; use --executor "
            "inline, threads or processes"
        )
    attack = getattr(config, "attack", None)
    if privacy.enabled and attack not in (None, "label-flip"):
        # The attack tampers with the uploaded model vector, which under
        # privacy carries nothing: the server reads the transformed update.
        raise ConfigurationError(
            f"--attack {attack} cannot be combined with --dp or --secagg yet: it "
            "tampers with the uploaded model, which privacy's transform has "
            "already replaced (the attack would have no effect); --attack "
            "label-flip (poisoned training data) works"
        )
    if config.dp != "off":
        from blazefl.privacy import PrivacyAccountant

        PrivacyAccountant(
            config.dp,  # type: ignore[arg-type]
            privacy.noise_multiplier or 1.0,
            config.clients,
            config.clients_per_round,
            config.delta,
            config.accountant,  # type: ignore[arg-type]
            config.dp_mechanism,  # type: ignore[arg-type]
        )


def privacy_of(config: RunConfig) -> Privacy | None:
    """The run's `Privacy` (None when neither DP nor secagg is on)."""
    if config.dp == "off" and not config.secagg:
        return None
    noise = config.noise_multiplier
    if config.dp != "off" and config.calibrate:
        from blazefl.privacy import PrivacyAccountant, calibrate_noise

        assert config.target_epsilon is not None  # check_privacy
        template = PrivacyAccountant(
            config.dp,  # type: ignore[arg-type]
            1.0,
            config.clients,
            config.clients_per_round,
            config.delta,
            config.accountant,  # type: ignore[arg-type]
            config.dp_mechanism,  # type: ignore[arg-type]
        )
        noise = calibrate_noise(template, config.target_epsilon, config.rounds)
    return _settings(config, noise)
