"""Configuration: precedence, the config file, and a clear error for every bad value."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blazefl.algorithms import ALGORITHMS
from blazefl.cli._checks import ALGORITHM_NAMES, KNOBS, MODELS
from blazefl.cli._config import config_digest
from blazefl.cli._resolve import resolve
from blazefl.cli._toml import dump_toml
from blazefl.models import MODEL_NAMES
from cli_helpers import invoke


def test_options_override_the_file_and_the_file_overrides_defaults(
    tmp_path: Path,
) -> None:
    """defaults < --config file (snake_case or dashed keys) < command line."""
    config = tmp_path / "fl.toml"
    config.write_text(
        'rounds = 9\nclients = 6\n"batch-size" = 8\nlr = 0.05\nexecutor = "inline"\n'
    )
    out = tmp_path / "run"
    result = invoke(
        "run", "--config", config, "--rounds", "1", "--epochs", "1", "--out", out
    )
    assert result.exit_code == 0, result.output
    with (out / "config.toml").open("rb") as f:
        saved = tomllib.load(f)
    assert saved["rounds"] == 1  # command line over file
    assert saved["epochs"] == 1  # command line over default
    assert (saved["clients"], saved["batch_size"], saved["lr"]) == (6, 8, 0.05)
    assert saved["executor"] == "inline"  # file over default
    assert saved["seed"] == 42  # default


def test_unknown_config_key_suggests_the_closest(tmp_path: Path) -> None:
    """A misspelt key is an error that names the key it was probably meant to be."""
    config = tmp_path / "fl.toml"
    config.write_text("bach_size = 8\n")
    result = invoke("run", "--config", config)
    assert result.exit_code == 2
    assert "unknown key 'bach_size'; did you mean 'batch_size'?" in result.stderr


def test_nested_table_is_refused(tmp_path: Path) -> None:
    """The config file takes flat keys only."""
    config = tmp_path / "fl.toml"
    config.write_text("[fedprox]\nmu = 0.1\n")
    result = invoke("run", "--config", config)
    assert result.exit_code == 2
    assert "flat keys only" in result.stderr


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('executor = "gpu"', "'--executor' (executor in "),
        ('clients = "20"', "'--clients' (clients in "),
        ("quiet = 1", "'--quiet' (quiet in "),
    ],
)
def test_bad_config_value_names_the_option(
    tmp_path: Path, line: str, fragment: str
) -> None:
    """A bad value in the file is reported with its option and the file."""
    config = tmp_path / "fl.toml"
    config.write_text(line + "\n")
    result = invoke("run", "--config", config)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert str(config) in result.stderr


MNIST = ["--dataset", "mnist"]
FEDPROX = ["--algorithm", "fedprox"]
FEDAVGM = ["--algorithm", "fedavgm"]
FEDADAM = ["--algorithm", "fedadam"]

INVALID = [
    # (arguments, the option named, a piece of the allowed values)
    (["--algorithm", "fedsgd"], "'--algorithm'", "'fedavg', 'fedavgm'"),
    (["--dataset", "imagenet"], "'--dataset'", "'synthetic', 'synthetic-cifar10'"),
    (["--model", "vgg"], "'--model'", "'cnn', 'mlp'"),
    (["--model", "cifar_cnn"], "'--model'", "use one of 'cnn', 'mlp'"),
    (["--partition", "random"], "'--partition'", "'natural', 'iid', 'dirichlet'"),
    (["--alpha", "0"], "'--alpha'", "finite number > 0"),
    (["--shards-per-client", "0"], "'--shards-per-client'", "integer >= 1"),
    (["--classes-per-client", "0"], "'--classes-per-client'", "integer >= 1"),
    (["--unbalance-sigma", "-1"], "'--unbalance-sigma'", "finite number >= 0"),
    (["--clients", "0"], "'--clients'", "integer >= 1"),
    (["--clients", "many"], "'--clients'", "is not a valid integer"),
    (["--rounds", "0"], "'--rounds'", "integer >= 1"),
    (["--sample-ratio", "1.5"], "'--sample-ratio'", "in (0, 1]"),
    (["--sample-ratio", "0.01"], "'--sample-ratio'", "in (0, 1]"),
    (["--epochs", "0"], "'--epochs'", "integer >= 1"),
    (["--batch-size", "0"], "'--batch-size'", "integer >= 1"),
    (["--lr", "0"], "'--lr'", "finite number > 0"),
    (["--lr", "inf"], "'--lr'", "finite number > 0"),
    (["--seed", "-1"], "'--seed'", "integer in [0, 2**63)"),
    ([*FEDPROX, "--mu", "-1"], "'--mu'", "finite number >= 0"),
    (["--mu", "0.1"], "'--mu'", "it is a knob of fedprox"),
    ([*FEDAVGM, "--server-lr", "0"], "'--server-lr'", "finite number > 0"),
    ([*FEDAVGM, "--momentum", "1"], "'--momentum'", "in [0, 1)"),
    ([*FEDADAM, "--beta1", "1"], "'--beta1'", "in [0, 1)"),
    ([*FEDADAM, "--beta2", "-0.1"], "'--beta2'", "in [0, 1)"),
    ([*FEDADAM, "--tau", "0"], "'--tau'", "finite number > 0"),
    (["--executor", "gpu"], "'--executor'", "'inline', 'threads', 'processes'"),
    (["--workers", "0"], "'--workers'", "integer >= 1"),
    (["--checkpoint-every", "0"], "'--checkpoint-every'", "integer >= 1"),
    (["--log-format", "xml"], "'--log-format'", "'console', 'json'"),
    (MNIST, "--data-dir", "pass --data-dir DIR"),
    ([*MNIST, "--data-dir", "/no/such/dir"], "'--data-dir'", "is not a folder"),
    (["--config", "/no/such.toml"], "'--config'", "does not exist"),
    (["--resume", "/no/such/run"], "'--resume'", "does not exist"),
]


@pytest.mark.parametrize(
    ("args", "option", "allowed"), INVALID, ids=[" ".join(a) for a, _, _ in INVALID]
)
def test_invalid_option_is_rejected_naming_option_and_allowed_values(
    args: list[str], option: str, allowed: str
) -> None:
    """Every invalid value fails before anything runs, saying what is allowed."""
    result = invoke("run", *args)
    assert result.exit_code == 2, result.output
    assert option in result.stderr
    assert allowed in result.stderr


def test_cli_names_match_the_library() -> None:
    """The literal choices (kept for a fast --help) are the library's names."""
    assert tuple(ALGORITHMS) == ALGORITHM_NAMES
    assert tuple(MODEL_NAMES) == MODELS
    for cls in ALGORITHMS.values():
        knobs = {f.name for f in dataclasses.fields(cls)} - {"num_clients"}  # type: ignore[arg-type]
        assert knobs <= set(KNOBS), cls


def test_algorithm_knobs_default_to_the_algorithm() -> None:
    """Knobs left out take the algorithm's defaults; others stay unset."""
    config = resolve({"algorithm": "fedavgm", "momentum": 0.5})
    assert (config.value("server_lr"), config.value("momentum")) == (1.0, 0.5)
    assert config.value("mu") is None
    assert config.knobs() == {"server_lr": 1.0, "momentum": 0.5}


def test_digest_ignores_settings_that_do_not_change_the_numbers() -> None:
    """Executor, workers and checkpoint cadence are outside the config digest."""
    base = config_digest(resolve({}))
    assert base == config_digest(
        resolve({"executor": "processes", "workers": 4, "checkpoint_every": 3})
    )
    assert base != config_digest(resolve({"lr": 0.2}))


_VALUES = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True), _VALUES))
def test_toml_writer_round_trips(values: dict[str, object]) -> None:
    """What dump_toml writes, tomllib reads back exactly."""
    assert tomllib.loads(dump_toml(values, "a header\nof two lines")) == values
