"""The click commands: `blazefl run`, `sweep`, `compare`, `info`, `plot`.

Options only collect what was typed (every option defaults to None, meaning
"not given"); `blazefl.cli._config.resolve` applies the defaults, the config
file and the checks, so the command line and the file are validated alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import blazefl
from blazefl._exceptions import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from blazefl.cli._config import RunConfig

__all__ = ["cli"]


def _setting_options() -> list[click.Option]:
    """One option per setting, in `KEYS` order: run settings from
    `RunConfig`, algorithm settings from the algorithms' declarations.

    Every option defaults to None ("not given"); the help shows the real
    default."""
    from blazefl.cli._checks import algorithm_options
    from blazefl.cli._config import KEYS, RUN_SETTINGS, RunConfig, option_name

    defaults = RunConfig()
    algorithm = algorithm_options()
    found: list[click.Option] = []
    for key in KEYS:
        if key in algorithm:
            o = algorithm[key]
            kind = type(next(iter(o.declared.values())).default)
            found.append(click.Option([o.cli, key], type=kind, help=o.help))
            continue
        s = RUN_SETTINGS[key]
        shown, default = s.help, getattr(defaults, key)
        if s.kind is bool:
            names = [option_name(key), *(["-q"] if key == "quiet" else []), key]
            found.append(click.Option(names, is_flag=True, default=None, help=shown))
            continue
        if default is not None and "[default:" not in shown:
            shown = f"{shown} [default: {default}]"
        found.append(
            click.Option(
                [option_name(key), key],
                type=click.Choice(s.choices) if s.choices else s.kind,
                metavar=s.metavar,
                help=shown,
            )
        )
    return found


class _RunCommand(click.Command):
    """`blazefl run`, whose setting options are made when first needed.

    They come from `RunConfig` and the algorithms' declarations, which
    ``blazefl --help``, ``info`` and ``plot`` then need not import.
    """

    _derived = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._derived:
            self._derived = True
            self.params.extend(_setting_options())
        return super().get_params(ctx)


def _usage(exc: ConfigurationError) -> click.UsageError:
    return click.UsageError(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(blazefl.__version__, prog_name="blazefl")
def cli() -> None:
    """blazefl: fast, deterministic federated-learning simulation.

    Start with `blazefl run`: FedAvg on a built-in data set, in seconds.
    """


@cli.command(cls=_RunCommand)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file of options (keys as below, snake_case or dashed); "
    "command-line options override it.",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue the run in this folder from its checkpoint. Other options "
    "must match its config.toml, except --executor, --workers, --max-cohort, "
    "--ray-address, --checkpoint-every, --evaluate-every, "
    "--client-acc-threshold, --no-memory-check, --data-dir, --track, --quiet, "
    "--log-format, --dashboard, --dashboard-host and --dashboard-port.",
)
def run(config_file: Path | None, resume: Path | None, **options: Any) -> None:
    """Train a federation and write its run folder.

    With no options: FedAvg over 20 clients of the built-in synthetic data
    set, 20 rounds, on two worker threads. The run folder gets config.toml,
    metrics.jsonl, events.jsonl, checkpoint.ckpt, summary.json and
    metrics.png. Ctrl-C stops after saving a checkpoint; continue with
    --resume.
    """
    from blazefl.cli._execute import execute  # torch is imported from here on
    from blazefl.cli._resolve import resolve
    from blazefl.cli._toml import read_config_file
    from blazefl.cli._user_errors import IOFailure

    given = {k: v for k, v in options.items() if v is not None}
    try:
        file_values = read_config_file(config_file) if config_file else {}
        if resume is None:
            config = resolve(given, file_values, str(config_file))
            folder = Path(config.out) if config.out else None
        else:
            config = _resume_config(resume, {**file_values, **given})
            folder = resume
        code = execute(
            config,
            folder,
            resume=resume is not None,
            # main(after_round=...) hands its observer over as click's obj
            after_round=click.get_current_context().obj,
        )
    except ConfigurationError as exc:
        raise _usage(exc) from exc
    except OSError as exc:
        if exc.filename is None:
            raise  # not about a file: a bug, with its traceback
        raise IOFailure(exc) from exc
    raise SystemExit(code)


def _resume_config(folder: Path, requested: dict[str, Any]) -> RunConfig:
    """The stored configuration, with the changes --resume allows.

    Options that change the numbers must repeat the stored values; the
    executor, workers, checkpoint cadence, data folder and output settings
    may change (the executors give bitwise equal results).
    """
    from blazefl.cli._config import INVOCATION_KEYS, OPERATIONAL_KEYS, option_name
    from blazefl.cli._resolve import resolve
    from blazefl.cli._robust import with_legacy_dtype
    from blazefl.cli._toml import read_config_file

    stored_file = folder / "config.toml"
    if not stored_file.is_file():
        raise ConfigurationError(
            f"Invalid value for '--resume': {folder} holds no config.toml; it is "
            "not a blazefl run folder"
        )
    stored_values = with_legacy_dtype(read_config_file(stored_file))
    stored = resolve({}, stored_values, str(stored_file))
    out = requested.pop("out", None)
    if out is not None and Path(str(out)).resolve() != folder.resolve():
        raise ConfigurationError(
            f"--out cannot be used with --resume: the run folder is {folder}"
        )
    base = dict(stored_values)
    if requested.get("executor", "ray") != "ray" and "ray_address" not in requested:
        base.pop("ray_address", None)  # it went with the stored Ray executor
    merged = resolve(requested, base, str(stored_file))
    for key in requested:
        if key in OPERATIONAL_KEYS or key in INVOCATION_KEYS:
            continue
        if merged.value(key) != stored.value(key):
            raise ConfigurationError(
                f"{option_name(key)} {merged.value(key)!r} does not match "
                f"{key} = {stored.value(key)!r} in {stored_file}; --resume "
                f"continues a run with its own configuration: leave "
                f"{option_name(key)} out"
            )
    return merged


def _target_acc(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and not 0 < value <= 1:
        raise click.BadParameter(f"must be a number in (0, 1], got {value!r}")
    return value


_TARGET = click.option(
    "--target-acc",
    type=float,
    callback=_target_acc,
    help="Report rounds_to_target: the first round whose test accuracy "
    "reaches this [default: none, the column is left out].",
)


@cli.command(cls=_RunCommand)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file: run settings as for `blazefl run` (the fixed part) and a "
    "[sweep] table (seeds, target_acc, [sweep.grid] key = [values]).",
)
@click.option(
    "--grid",
    "grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Values of one setting to sweep (repeatable; the runs are every "
    "combination), e.g. --grid lr=0.03,0.1 --grid algorithm=fedavg,fedprox.",
)
@click.option(
    "--seeds",
    metavar="SEEDS",
    help="Seeds of every setting: a range and/or list, e.g. 0-4 or 0,3,7 "
    "[default: --seed's one]. --seed is refused beside it.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs at a time, each in its own process with cores // N of the "
    "machine's cores (--workers must fit in that share).",
)
@_TARGET
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue the sweep in this folder: complete runs are skipped, "
    "interrupted ones resume from their checkpoints.",
)
def sweep(
    config_file: Path | None,
    grid: tuple[str, ...],
    seeds: str | None,
    parallel: int,
    target_acc: float | None,
    resume: Path | None,
    **options: Any,
) -> None:
    """Run a grid of settings over several seeds; summarise with 95% CIs.

    Every `blazefl run` option fixes that setting for all runs. Each run is an
    ordinary run folder under the sweep folder (--out), which also gets
    manifest.json, summary.csv, summary.md, accuracy.png and final_acc.png.
    Example: blazefl sweep --rounds 10 --grid algorithm=fedavg,fedprox
    --grid lr=0.03,0.1 --seeds 0-4 --out runs/study
    """
    from blazefl.cli._study_cli import resume_sweep, start_sweep

    try:
        if resume is not None:
            for name, value in (("--config", config_file), ("--seeds", seeds)):
                if value is not None:
                    raise ConfigurationError(
                        f"{name} cannot be used with --resume: the sweep folder "
                        "holds its plan"
                    )
            if grid:
                raise ConfigurationError(
                    "--grid cannot be used with --resume: the sweep folder holds "
                    "its plan"
                )
            code = resume_sweep(resume, options, parallel, target_acc)
        else:
            code = start_sweep(options, grid, seeds, config_file, parallel, target_acc)
    except ConfigurationError as exc:
        raise _usage(exc) from exc
    except MissingDependencyError as exc:
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(code)


@cli.command()
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write summary.csv, summary.md and the figures "
    "[default: runs/<timestamp>-compare].",
)
@_TARGET
def compare(
    folders: tuple[Path, ...], out: Path | None, target_acc: float | None
) -> None:
    """Compare run and sweep folders: the table and figures of `blazefl sweep`.

    Runs are grouped by the settings that differ among them (the seed aside),
    so the seeds of one setting are pooled into its mean and 95% CI.
    """
    from blazefl.cli._study_cli import compare as compare_folders

    try:
        target = compare_folders(folders, out, target_acc)
    except ConfigurationError as exc:
        raise _usage(exc) from exc
    except MissingDependencyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {target}")


@cli.command()
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    default=0,
    type=click.IntRange(0, 65535),
    help="Port (default: any free one).",
)
def serve(folders: tuple[Path, ...], host: str, port: int) -> None:
    """Serve the live dashboard of run folders (or folders of runs, e.g. sweeps).

    Running runs update as they train; Ctrl-C stops the server. Listens on
    127.0.0.1 unless --host says otherwise (and then it warns: there is no
    authentication).
    """
    from blazefl.cli._serve import serve_folders

    raise SystemExit(serve_folders(list(folders), host, port))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(as_json: bool) -> None:
    """Versions, the Python build, threads, devices and executors."""
    import json

    from blazefl.cli._info import machine_info

    data = machine_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key:<{width}}  {shown}")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the PNG [default: FOLDER/metrics.png].",
)
def plot(folder: Path, output: Path | None) -> None:
    """Draw FOLDER/metrics.jsonl (loss and accuracy per round) as a PNG."""
    from blazefl.cli._plot import plot_metrics

    try:
        target = plot_metrics(folder, output)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    except MissingDependencyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {target}")
