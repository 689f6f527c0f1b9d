"""The bodies of `blazefl sweep` and `blazefl compare`, behind the click options.

`start_sweep` plans (every point checked first), writes the manifest, runs
and summarises; `resume_sweep` does the same from a sweep folder's manifest;
`compare` summarises any set of existing run and sweep folders. All three
raise `ConfigurationError` for bad input before any run starts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError, MissingDependencyError
from blazefl.cli._config import INVOCATION_KEYS, KEYS, OPERATIONAL_KEYS, option_name
from blazefl.cli._files import CONFIG, METRICS, SUMMARY, default_out, write_json
from blazefl.cli._grid import plan_sweep, split_sweep_table
from blazefl.cli._info import git_commit, versions
from blazefl.cli._plot import read_metrics
from blazefl.cli._resolve import resolve
from blazefl.cli._study import (
    RunRecord,
    csv_text,
    markdown_text,
    summarize,
    terminal_table,
)
from blazefl.cli._study_plot import plot_study
from blazefl.cli._sweep import (
    MANIFEST,
    entry_status,
    fresh_states,
    read_manifest,
    run_sweep,
    share_cores,
)
from blazefl.cli._sweep_view import SweepView, make_view
from blazefl.cli._toml import check_config_values, load_toml, read_config_file

__all__ = ["compare", "resume_sweep", "start_sweep"]


def _write_study(
    records: Sequence[RunRecord],
    keys: Sequence[str],
    target_acc: float | None,
    folder: Path,
    view: SweepView,
) -> None:
    summaries = summarize(records, target_acc)
    (folder / "summary.csv").write_text(
        csv_text(summaries, keys, target_acc), encoding="utf-8"
    )
    (folder / "summary.md").write_text(
        markdown_text(summaries, keys, target_acc), encoding="utf-8"
    )
    try:
        plot_study(summaries, folder, folder.resolve().name)
    except MissingDependencyError as exc:
        view.note(f"blazefl: figures not drawn: {exc}")
    if type(view) is not SweepView:  # not --quiet
        view.summary(terminal_table(summaries, keys, target_acc))


def _finish(folder: Path, manifest: dict[str, Any], view: SweepView) -> int:
    records = []
    for entry in manifest["runs"]:
        run = folder / entry["folder"]
        rows = read_metrics(run / METRICS) if (run / METRICS).is_file() else []
        complete = entry_status(folder, entry) == "complete"
        records.append(RunRecord(run, entry["point"], entry["seed"], complete, rows))
    _write_study(records, list(manifest["grid"]), manifest["target_acc"], folder, view)
    failed = [e["name"] for e in manifest["runs"] if e["status"] == "failed"]
    done = sum(r.complete for r in records)
    view.summary(
        f"sweep done: {done} of {len(records)} runs complete"
        + (f", {len(failed)} failed ({', '.join(failed)})" if failed else "")
        + f"; summary: {folder / 'summary.csv'}"
    )
    return 1 if failed else 0


def _execute(folder: Path, manifest: dict[str, Any], parallel: int, quiet: bool) -> int:
    pending = [
        e["config"] for e in manifest["runs"] if entry_status(folder, e) != "complete"
    ]
    share = share_cores(pending, parallel, manifest["workers_given"])
    view = make_view(fresh_states(manifest), quiet=quiet)
    grid = ", ".join(f"{k} in {v}" for k, v in manifest["grid"].items())
    view.start(
        f"sweep of {len(manifest['runs'])} runs ({grid or 'no grid'}; seeds "
        f"{manifest['seeds']}), {parallel} at a time, {share} cores each\n"
        f"sweep folder: {folder}"
    )
    try:
        code = run_sweep(folder, manifest, parallel, share, view)
    finally:
        view.close()
    if code is not None:
        view.note(
            f"interrupted; the sweep folder keeps every run's checkpoint; continue "
            f"with: blazefl sweep --resume {folder}"
        )
        return code
    return _finish(folder, manifest, view)


def start_sweep(
    options: Mapping[str, object],
    grid: Sequence[str],
    seeds: str | None,
    config_file: Path | None,
    parallel: int,
    target_acc: float | None,
) -> int:
    """Plan, check, run and summarise a new sweep."""
    raw = load_toml(config_file) if config_file else {}
    name = str(config_file) if config_file else "the config file"
    rest, table = split_sweep_table(raw, name)
    flat = check_config_values(rest, config_file) if config_file else {}
    plan = plan_sweep(options, grid, seeds, flat, table, name, target_acc)
    out = options.get("out")
    folder = Path(str(out)) if out else default_out("sweep")
    if (folder / MANIFEST).exists():
        raise ConfigurationError(
            f"Invalid value for '--out': {folder} already holds a sweep; continue "
            f"it with `blazefl sweep --resume {folder}` or choose another --out"
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"Invalid value for '--out': {folder} is a file")
    workers_given = (
        "workers" in {k for k, v in options.items() if v is not None}
        or "workers" in flat
        or "workers" in plan.grid
    )
    manifest: dict[str, Any] = {
        "blazefl_sweep": 1,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "grid": {k: list(v) for k, v in plan.grid.items()},
        "seeds": list(plan.seeds),
        "target_acc": plan.target_acc,
        "workers_given": workers_given,
        "versions": versions(),
        "git": git_commit(),
        "runs": [
            {
                "name": run.name,
                "folder": f"runs/{run.name}",
                "point": dict(run.point),
                "seed": run.seed,
                "config": run.config.saved,
                "status": "pending",
            }
            for run in plan.runs
        ],
    }
    share_cores([dict(e["config"]) for e in manifest["runs"]], parallel, workers_given)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / MANIFEST, manifest)
    return _execute(folder, manifest, parallel, bool(options.get("quiet")))


def resume_sweep(
    folder: Path,
    options: Mapping[str, object],
    parallel: int,
    target_acc: float | None,
) -> int:
    """Continue a sweep: skip complete runs, resume started ones, run the rest.

    Only settings that do not change the numbers (``--workers``,
    ``--executor``, ...) may be given; they apply to the unfinished runs.
    """
    manifest = read_manifest(folder)
    given = {
        k: v for k, v in options.items() if v is not None and k not in INVOCATION_KEYS
    }
    for key in given:
        if key not in OPERATIONAL_KEYS:
            raise ConfigurationError(
                f"{option_name(key)} cannot be used with --resume: a sweep "
                f"resumes with its own settings (only "
                f"{', '.join(option_name(k) for k in sorted(OPERATIONAL_KEYS))} "
                "may change)"
            )
    if options.get("out") is not None:
        raise ConfigurationError(
            f"--out cannot be used with --resume: the sweep folder is {folder}"
        )
    for entry in manifest["runs"]:
        if entry_status(folder, entry) == "complete":
            continue
        merged = {**entry["config"], **given}
        try:
            entry["config"] = resolve(merged, {}, str(folder / MANIFEST)).saved
        except ConfigurationError as exc:
            raise ConfigurationError(f"run {entry['name']}: {exc}") from None
    if "workers" in given:
        manifest["workers_given"] = True
    if target_acc is not None:
        manifest["target_acc"] = target_acc
    return _execute(folder, manifest, parallel, bool(options.get("quiet")))


def _run_folders(path: Path) -> list[Path]:
    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        return [path / e["folder"] for e in manifest["runs"]]
    if (path / METRICS).is_file() and (path / CONFIG).is_file():
        return [path]
    raise ConfigurationError(
        f"{path} is neither a run folder (config.toml and metrics.jsonl) nor a "
        f"sweep folder ({MANIFEST})"
    )


def compare(paths: Sequence[Path], out: Path | None, target_acc: float | None) -> Path:
    """Summarise the runs of ``paths`` by the settings that differ among them."""
    folders = [f for p in paths for f in _run_folders(p)]
    configs = []
    for run in folders:
        if (run / CONFIG).is_file():
            configs.append(resolve({}, read_config_file(run / CONFIG)).saved)
        else:
            configs.append({})
    ignored = {"seed", *OPERATIONAL_KEYS, *INVOCATION_KEYS}
    keys = [
        k
        for k in KEYS
        if k not in ignored
        # an algorithm's own setting varies only if two runs that have it differ
        and len({repr(c[k]) for c in configs if c.get(k) is not None}) > 1
    ]
    records = [
        RunRecord(
            run,
            {k: c.get(k) for k in keys},
            c.get("seed"),
            (run / SUMMARY).is_file(),
            read_metrics(run / METRICS) if (run / METRICS).is_file() else [],
        )
        for run, c in zip(folders, configs, strict=True)
    ]
    target = out or default_out("compare")
    target.mkdir(parents=True, exist_ok=True)
    _write_study(records, keys, target_acc, target, make_view([], quiet=False))
    return target
