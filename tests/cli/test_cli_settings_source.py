"""Each setting is declared once: options, config keys, checks and resume
rules all come from `RunConfig`'s fields and the algorithms' `setting` fields."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import click
import pytest

from blazefl import ConfigurationError
from blazefl._validate import SEED_BOUND, check_seed
from blazefl.algorithms import ALGORITHMS, FedAvg, FederatedServer
from blazefl.algorithms._settings import (
    check_fraction,
    setting,
    settings_of,
)
from blazefl.cli._app import run
from blazefl.cli._config import (
    CHECKS,
    INVOCATION_KEYS,
    KEYS,
    OPERATIONAL_KEYS,
    RUN_SETTINGS,
)
from blazefl.cli._resolve import resolve
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import ModelZoo

SRC = Path(__file__).resolve().parents[2] / "src"


def test_every_algorithm_field_is_a_declared_setting() -> None:
    """Each built-in algorithm's dataclass fields all carry a setting()."""
    for cls in ALGORITHMS.values():
        fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        declared = settings_of(cls)
        assert [s.name for s in declared] == fields, cls
        assert all(s.help and s.cli.startswith("--") for s in declared), cls


def test_an_undeclared_field_is_refused_by_the_command_line() -> None:
    """A plain dataclass field cannot become an option: settings_of says which."""

    @dataclasses.dataclass(frozen=True)
    class Plain(FedAvg):
        name: ClassVar[str] = "plain"
        strength: float = 1.0

    assert settings_of(Plain, strict=False) == ()
    with pytest.raises(TypeError, match=r"Plain\.strength is a dataclass field"):
        settings_of(Plain)


def test_declared_checks_run_at_construction() -> None:
    """An algorithm of one's own is checked from its declarations alone."""

    @dataclasses.dataclass(frozen=True)
    class Decaying(FedAvg):
        name: ClassVar[str] = "decaying"
        decay: float = setting(0.5, check_fraction, "Decay in [0, 1).")

    assert Decaying(decay=0.25).decay == 0.25
    with pytest.raises(ConfigurationError, match=r"^decay must be in \[0, 1\), got 1$"):
        Decaying(decay=1)


def test_options_keys_and_checks_are_the_declarations() -> None:
    """`blazefl run`'s options, the config keys and the checks are one set."""
    run.get_params(click.Context(run))  # the setting options are made lazily
    options = {p.name for p in run.params} - {"config_file", "resume"}
    knobs = {
        s.name
        for cls in ALGORITHMS.values()
        for s in settings_of(cls)
        if not s.federation_size
    }
    assert options == set(KEYS) == set(CHECKS) == set(RUN_SETTINGS) | knobs
    assert "num_clients" not in options  # SCAFFOLD's N is --clients


def test_resume_rules_come_from_the_declarations() -> None:
    """Free and invocation settings are those RunConfig marks so."""
    assert {
        k for k, s in RUN_SETTINGS.items() if s.resume == "free"
    } == OPERATIONAL_KEYS
    assert {
        k for k, s in RUN_SETTINGS.items() if s.resume == "invocation"
    } == INVOCATION_KEYS


def test_defaults_per_algorithm_come_from_the_dataclass() -> None:
    """server_lr defaults to each algorithm's own value."""
    assert resolve({"algorithm": "fedavgm"}).knobs()["server_lr"] == 1.0
    assert resolve({"algorithm": "fedadam"}).knobs()["server_lr"] == 0.03
    assert resolve({"algorithm": "fedadagrad"}).knobs()["server_lr"] == 0.3


_TOY = """
import dataclasses, sys
from typing import ClassVar
from blazefl.algorithms import ALGORITHMS, FedAvg
from blazefl.algorithms._settings import check_fraction, setting

@dataclasses.dataclass(frozen=True)
class Decay(FedAvg):
    name: ClassVar[str] = "decay"
    mu_decay: float = setting(0.1, check_fraction, "Decay of mu in [0, 1).")

ALGORITHMS["decay"] = Decay  # the registry line, before the CLI is imported
from blazefl.cli import main
main(sys.argv[1:])
"""


def _toy(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "toy.py"
    script.write_text(textwrap.dedent(_TOY))
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=100,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )


def test_a_new_algorithm_setting_gets_option_key_check_and_resume_rule(
    tmp_path: Path,
) -> None:
    """A test-defined algorithm with a new setting works end to end, no CLI edit."""
    helped = _toy(tmp_path, "run", "--help")
    assert "--mu-decay" in helped.stdout, helped.stderr
    bad = _toy(tmp_path, "run", "--algorithm", "decay", "--mu-decay", "1.5")
    assert bad.returncode == 2
    assert "'--mu-decay': must be a finite number in [0, 1), got 1.5" in bad.stderr
    wrong = _toy(tmp_path, "run", "--mu-decay", "0.5")
    assert "does not apply to --algorithm fedavg; it is a knob of decay" in (
        wrong.stderr
    )
    config = tmp_path / "fl.toml"
    config.write_text('algorithm = "decay"\nmu_decay = 0.25\n')
    out = tmp_path / "run"
    small = ["--clients", "4", "--rounds", "1", "--epochs", "1", "--executor"]
    done = _toy(
        tmp_path, "run", "--config", config, *small, "inline", "-q", "--out", out
    )
    assert done.returncode == 0, done.stderr
    assert "mu_decay = 0.25\n" in (out / "config.toml").read_text()
    resumed = _toy(tmp_path, "run", "--resume", out, "--mu-decay", "0.5")
    assert resumed.returncode == 2
    assert "--mu-decay 0.5 does not match mu_decay = 0.25" in resumed.stderr


@pytest.mark.parametrize(
    ("args", "never"),
    [
        (["run", "--help"], ("torch", "numpy")),
        (["--help"], ("torch", "numpy", "blazefl.algorithms")),
    ],
)
def test_help_imports_no_torch(args: list[str], never: tuple[str, ...]) -> None:
    """`blazefl run --help` reads every declaration without importing torch;
    `blazefl --help` does not even read the declarations."""
    code = (
        "import sys\nfrom blazefl.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {never!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout.splitlines()[-1] == "[]", proc.stderr


# -- the run seed: one validator, one bound ----------------------------------


def test_the_seed_bound_is_the_toml_integer_range() -> None:
    """SEED_BOUND is 2**63: what config.toml can store losslessly."""
    assert SEED_BOUND == 2**63
    assert check_seed("seed", SEED_BOUND - 1) == SEED_BOUND - 1
    with pytest.raises(ConfigurationError, match=r"in \[0, 2\*\*63\), got -1$"):
        check_seed("seed", -1)


@pytest.mark.parametrize("seed", [SEED_BOUND, -1, True, 1.0])
def test_every_entry_point_refuses_the_same_seeds(seed: Any) -> None:
    """The CLI and FederatedServer refuse exactly what check_seed refuses."""
    expected = r"must be an integer in \[0, 2\*\*63\), got "
    with pytest.raises(ConfigurationError, match=expected):
        resolve({"seed": seed})
    data = SyntheticPartitionedDataset(4, seed=0, samples_per_client=8)
    with pytest.raises(ConfigurationError, match="^seed " + expected):
        FederatedServer(
            FedAvg(),
            ModelZoo(),
            "cnn",
            dataset=data,
            num_clients=4,
            rounds=1,
            seed=seed,
        )


def test_the_largest_seed_runs_end_to_end(tmp_path: Path) -> None:
    """--seed 2**63 - 1 builds the data, the model and the RNGs, and runs."""
    from cli_helpers import invoke

    out = tmp_path / "run"
    result = invoke(
        "run", "--seed", str(SEED_BOUND - 1), "--clients", "4", "--rounds", "1",
        "--epochs", "1", "--executor", "inline", "--partition", "dirichlet",
        "-q", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"seed = {SEED_BOUND - 1}\n" in (out / "config.toml").read_text()
