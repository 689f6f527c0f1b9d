"""The run configuration: defaults, a TOML file, command-line options, in that order.

`RunConfig` is the one table of run settings: each field declares its
default, its check, its help line and its ``--resume`` rule (`run_setting`);
the click options, the config-file keys, the checks and the resume rules are
derived from it, and the algorithm settings from the algorithms' own
`blazefl.algorithms.setting` fields (`blazefl.cli._checks.algorithm_options`).

`blazefl.cli._resolve.resolve` merges the three sources (the command line
wins over the file, the file over the defaults) into a validated, frozen
`RunConfig`. Every bad value
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
from typing import Any

from blazefl._validate import (
    check_int,
    check_number,
    sampled_per_round,
)
from blazefl.algorithms import ALGORITHMS
from blazefl.algorithms._settings import settings_of
from blazefl.cli._checks import (
    EXECUTORS,
    KNOBS,
    LOG_FORMATS,
    algorithm_options,
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
    open_fraction,
)
from blazefl.cli._experiment import ExperimentSettings
from blazefl.cli._robust import LEGACY_AGGREGATE_DTYPE
from blazefl.cli._run_setting import RunSetting, run_setting
from blazefl.cli._track import TRACK_HELP, check_track

__all__ = [
    "ALGORITHM_OPTIONS",
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
]


_INT = cli_check(check_int)
_POSITIVE = cli_check(check_number)
_NON_NEGATIVE = cli_check(partial(check_number, allow_zero=True))


@dataclass(frozen=True, slots=True)
class RunConfig(ExperimentSettings):
    """One run's settings, validated; ``algorithm_settings`` holds the
    algorithm's own (every setting it takes, resolved).

    The experiment's settings (`ExperimentSettings`: what is trained) come
    first, then how and where it runs and what it writes; that order is the
    order of the options and of ``config.toml``.
    """

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
ALGORITHM_OPTIONS = algorithm_options()
KEYS = (
    *_FIXED,
    *ALGORITHM_OPTIONS,
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
    k for k, o in ALGORITHM_OPTIONS.items() if o.resumable
)
#: Every key's check (an algorithm setting's: its first declarer's; `resolve`
#: checks it again against the chosen algorithm's own declaration).
CHECKS: dict[str, Callable[[object], Any]] = {
    **{k: s.check for k, s in RUN_SETTINGS.items()},
    **KNOBS,
}


def option_name(key: str) -> str:
    """The command-line spelling of a config key: ``batch_size`` → ``--batch-size``."""
    if key in ALGORITHM_OPTIONS:
        return ALGORITHM_OPTIONS[key].cli
    return "--" + key.replace("_", "-")


def config_digest(config: RunConfig) -> str:
    """SHA-256 of the canonical JSON of the settings that decide the numbers."""
    canonical = {k: v for k, v in config.saved.items() if k not in OPERATIONAL_KEYS}
    if canonical.get("aggregate_dtype") == LEGACY_AGGREGATE_DTYPE:
        # The arithmetic of runs that did not record it: their digests stand.
        del canonical["aggregate_dtype"]
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
