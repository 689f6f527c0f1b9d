"""A sweep's plan: the fixed settings, a grid, a list of seeds, and every run.

`plan_sweep` takes what `blazefl sweep` was given (the fixed options, the
``--grid key=v1,v2`` strings, ``--seeds 0-4``, and a config file's flat keys
and ``[sweep]`` table) and returns the `Plan`: one `PlannedRun` per grid point
and seed, each a resolved `RunConfig`. Every point is resolved (so checked by
`blazefl.cli._config.resolve`, the same checks as ``blazefl run``) before
anything starts: a bad key, an empty grid, a duplicated seed, an unknown
value, or a point that cannot run (``mu`` with ``fedavg``) is refused here,
naming the key or the point.

The ``[sweep]`` table of a config file::

    rounds = 10               # fixed settings: flat keys, as for `blazefl run`
    [sweep]
    seeds = "0-4"             # or [0, 1, 2, 3, 4]
    target_acc = 0.8          # optional: rounds_to_target in the summary
    [sweep.grid]
    algorithm = ["fedavg", "fedprox"]
    lr = [0.03, 0.1]

A ``--grid`` on the command line replaces the file's grid for that key,
``--seeds`` the file's seeds.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_seed
from blazefl.cli._checks import algorithm_options
from blazefl.cli._config import (
    INVOCATION_KEYS,
    KEYS,
    RUN_SETTINGS,
    RunConfig,
    option_name,
)
from blazefl.cli._resolve import resolve

__all__ = [
    "GRID_KEYS",
    "Plan",
    "PlannedRun",
    "parse_grid",
    "parse_seeds",
    "plan_sweep",
    "split_sweep_table",
]

#: Settings a grid may vary: every run and algorithm setting but the seed
#: (``--seeds``) and the per-invocation ones (--out, --quiet, --log-format).
GRID_KEYS = tuple(k for k in KEYS if k != "seed" and k not in INVOCATION_KEYS)
_SWEEP_TABLE_KEYS = ("seeds", "grid", "target_acc")


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One run of the sweep: its folder name, grid point, seed and config."""

    name: str
    point: Mapping[str, Any]
    seed: int
    config: RunConfig


@dataclass(frozen=True, slots=True)
class Plan:
    """Every run of a sweep, in order (grid points, then seeds within each)."""

    grid: Mapping[str, tuple[Any, ...]]
    seeds: tuple[int, ...]
    runs: tuple[PlannedRun, ...]
    target_acc: float | None


def _kind(key: str) -> type:
    if key in RUN_SETTINGS:
        return RUN_SETTINGS[key].kind
    declared = algorithm_options()[key].declared
    return type(next(iter(declared.values())).default)


def _convert(key: str, raw: str) -> Any:
    kind = _kind(key)
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        return kind(text)
    except ValueError:
        what = {int: "an integer", float: "a number", bool: "true or false"}
        raise ConfigurationError(
            f"Invalid value in --grid {key}: {raw!r} is not {what.get(kind, 'a value')}"
        ) from None


def _grid_key(raw: str, where: str) -> str:
    key = raw.strip().lstrip("-").replace("-", "_")
    if key == "seed":
        raise ConfigurationError(
            f"{where}: seed is not a grid key; give the seeds with --seeds "
            "(e.g. --seeds 0-4)"
        )
    if key not in GRID_KEYS:
        close = difflib.get_close_matches(key, GRID_KEYS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"{where}: unknown setting {raw.strip()!r}{hint} (a grid varies one "
            f"of: {', '.join(GRID_KEYS)})"
        )
    return key


def _checked_values(key: str, values: Sequence[Any], where: str) -> tuple[Any, ...]:
    if not values:
        raise ConfigurationError(
            f"{where}: the grid of {key} is empty; give at least one value"
        )
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise ConfigurationError(f"{where}: {key} value {value!r} is given twice")
        seen.append(value)
    return tuple(seen)


def parse_grid(specs: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``("lr=0.03,0.1", "algorithm=fedavg,fedprox")`` as typed value tuples."""
    grid: dict[str, tuple[Any, ...]] = {}
    for spec in specs:
        where = f"--grid {spec}"
        if "=" not in spec:
            raise ConfigurationError(
                f"Invalid value for '--grid': {spec!r} is not KEY=V1,V2,... "
                "(e.g. --grid lr=0.03,0.1)"
            )
        raw_key, _, raw_values = spec.partition("=")
        key = _grid_key(raw_key, where)
        if key in grid:
            raise ConfigurationError(f"{where}: {key} is given in two --grid options")
        parts = [v for v in raw_values.split(",") if v.strip()]
        grid[key] = _checked_values(key, [_convert(key, v) for v in parts], where)
    return grid


def parse_seeds(spec: object, where: str = "--seeds") -> tuple[int, ...]:
    """``"0-4"``, ``"0,3,7"``, ``"0-2,9"`` or a list of integers, checked."""
    if isinstance(spec, list):
        items: list[object] = list(spec)
    elif isinstance(spec, str):
        items = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            if match:
                low, high = int(match[1]), int(match[2])
                if high < low:
                    raise ConfigurationError(
                        f"Invalid value for '{where}': range {part!r} runs "
                        "backwards; write LOW-HIGH"
                    )
                items.extend(range(low, high + 1))
            elif re.fullmatch(r"\d+", part):
                items.append(int(part))
            else:
                raise ConfigurationError(
                    f"Invalid value for '{where}': {part!r} is not a seed or a "
                    "LOW-HIGH range (e.g. 0-4 or 0,3,7)"
                )
    else:
        raise ConfigurationError(
            f"Invalid value for '{where}': {spec!r} is not a list of seeds or a "
            "string like '0-4'"
        )
    if not items:
        raise ConfigurationError(f"Invalid value for '{where}': no seed given")
    seeds: list[int] = []
    for item in items:
        try:
            seed = check_seed("seed", item)
        except ValueError as exc:
            raise ConfigurationError(f"Invalid value for '{where}': {exc}") from None
        if seed in seeds:
            raise ConfigurationError(
                f"Invalid value for '{where}': seed {seed} is given twice"
            )
        seeds.append(seed)
    return tuple(seeds)


def split_sweep_table(
    raw: Mapping[str, object], file_name: str
) -> tuple[dict[str, object], dict[str, object]]:
    """A parsed TOML file as (its flat settings, its ``[sweep]`` table)."""
    flat = {k: v for k, v in raw.items() if k != "sweep"}
    table = raw.get("sweep", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"{file_name}: sweep must be a [sweep] table")
    for key in table:
        if key.replace("-", "_") not in _SWEEP_TABLE_KEYS:
            close = difflib.get_close_matches(key, _SWEEP_TABLE_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"{file_name}: unknown key {key!r} in [sweep]{hint} (known: "
                f"{', '.join(_SWEEP_TABLE_KEYS)})"
            )
    return flat, {k.replace("-", "_"): v for k, v in table.items()}


def _file_grid(
    table: Mapping[str, object], file_name: str
) -> dict[str, tuple[Any, ...]]:
    grid_table = table.get("grid", {})
    if not isinstance(grid_table, dict):
        raise ConfigurationError(f"{file_name}: [sweep] grid must be a table")
    grid: dict[str, tuple[Any, ...]] = {}
    for raw_key, values in grid_table.items():
        where = f"{file_name} [sweep.grid]"
        key = _grid_key(raw_key, where)
        if not isinstance(values, list):
            raise ConfigurationError(
                f"{where}: {raw_key} must be a list of values, got {values!r}"
            )
        grid[key] = _checked_values(key, values, where)
    return grid


def _label(point: Mapping[str, Any]) -> str:
    text = "-".join(f"{k}={v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9=._+-]", "_", text)


def _describe(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in point.items())


def plan_sweep(
    options: Mapping[str, object],
    grid_specs: Sequence[str],
    seeds_spec: str | None,
    file_values: Mapping[str, object],
    sweep_table: Mapping[str, object],
    file_name: str,
    target_acc: float | None = None,
) -> Plan:
    """Every run of the sweep, resolved and checked; raises `ConfigurationError`."""
    given = {k: v for k, v in options.items() if v is not None}
    seed_sources = [
        name
        for name, present in (
            ("--seed", "seed" in given),
            (f"seed in {file_name}", "seed" in file_values),
        )
        if present
    ]
    if seed_sources and (seeds_spec is not None or "seeds" in sweep_table):
        raise ConfigurationError(
            f"{seed_sources[0]} cannot be used with --seeds: a sweep runs every "
            "seed of --seeds (or [sweep] seeds); leave the single seed out"
        )
    if seeds_spec is not None:
        seeds = parse_seeds(seeds_spec)
    elif "seeds" in sweep_table:
        seeds = parse_seeds(sweep_table["seeds"], f"seeds in {file_name}")
    else:
        seeds = (int(given.get("seed", file_values.get("seed", RunConfig().seed))),)  # type: ignore[call-overload]
    grid = {**_file_grid(sweep_table, file_name), **parse_grid(grid_specs)}
    for key in grid:
        if key in given:
            raise ConfigurationError(
                f"{option_name(key)} is given both as a fixed option and in the "
                f"grid of {key}; keep one"
            )
    fixed = {k: v for k, v in given.items() if k != "seed"}
    file_fixed = {k: v for k, v in file_values.items() if k not in grid and k != "seed"}
    if target_acc is None and "target_acc" in sweep_table:
        value = sweep_table["target_acc"]
        if not isinstance(value, int | float) or not 0 < value <= 1:
            raise ConfigurationError(
                f"{file_name}: [sweep] target_acc must be a number in (0, 1], "
                f"got {value!r}"
            )
        target_acc = float(value)
    runs: list[PlannedRun] = []
    points = [
        dict(zip(grid, values, strict=True))
        for values in itertools.product(*grid.values())
    ]
    for point in points:
        for seed in seeds:
            try:
                config = resolve(
                    {**fixed, **point, "seed": seed}, file_fixed, file_name
                )
            except ConfigurationError as exc:
                if not point:  # the fixed settings alone: the error as is
                    raise
                raise ConfigurationError(
                    f"grid point {_describe(point)} cannot run: {exc}"
                ) from None
            label = _label(point)
            name = f"{len(runs):03d}-{label + '-' if label else ''}seed{seed}"
            runs.append(PlannedRun(name, point, seed, config))
    return Plan(grid, seeds, tuple(runs), target_acc)
