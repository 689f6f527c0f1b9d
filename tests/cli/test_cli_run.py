"""`blazefl run`: the default federation, the run folder, output modes, builds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from blazefl.algorithms import ALGORITHMS
from blazefl.cli import main
from blazefl.cli._build import build, build_dataset
from blazefl.cli._checks import PARTITIONS
from blazefl.cli._config import RunConfig
from blazefl.cli._resolve import resolve
from cli_helpers import SMALL, invoke, metrics

RUN_FILES = {
    "config.toml",
    "metrics.jsonl",
    "events.jsonl",
    "checkpoint.ckpt",
    "summary.json",
    "metrics.png",
    "run.lock",
}


def test_default_run_fills_a_timestamped_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`blazefl run` with defaults (fewer rounds and clients) writes every file."""
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "--rounds", "5", "--clients", "10")
    assert result.exit_code == 0, result.output

    (folder,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}-fedavg", folder.name)
    assert {p.name for p in folder.iterdir()} == RUN_FILES
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {
        "round",
        "train_loss",
        "test_loss",
        "test_acc",
        "seconds",
        "clients",
        "failed",
    }
    assert all(r["clients"] == 5 and r["failed"] == 0 for r in rows)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["rounds"] == 5
    assert summary["final"]["test_acc"] > 0.3  # 10 classes: chance is 0.1
    assert summary["seed"] == 42
    assert summary["executor"] == "threads"
    assert set(summary["versions"]) >= {"blazefl", "python", "torch", "numpy"}
    png = (folder / "metrics.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 10_000 < len(png) < 1_000_000
    assert "round 5/5 | train loss" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("done: test accuracy")


def test_defaults_are_the_documented_federation() -> None:
    """No options: FedAvg, synthetic data, CNN, 20 clients, 20 rounds, 2 threads."""
    config = resolve({})
    assert config == RunConfig(
        algorithm="fedavg",
        dataset="synthetic",
        model="cnn",
        partition="natural",
        clients=20,
        rounds=20,
        sample_ratio=0.5,
        epochs=2,
        batch_size=16,
        lr=0.1,
        seed=42,
        aggregate_dtype="model",
        executor="threads",
        workers=2,
        checkpoint_every=1,
    )


def test_events_file_holds_every_event(reference: Path) -> None:
    """events.jsonl has every coordinator event, one JSON object a line."""
    lines = (reference / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert names.count("round_started") == 4
    assert names.count("client_finished") == 4 * 3
    assert names.count("round_finished") == 4
    assert names[0] == "round_started"
    assert names[-1] == "round_finished"


def test_config_toml_is_the_resolved_configuration(reference: Path) -> None:
    """config.toml reads back (tomllib) as the resolved configuration."""
    options = dict(zip(SMALL[::2], SMALL[1::2], strict=True))
    expected = resolve(
        {
            "clients": int(options["--clients"]),
            "rounds": int(options["--rounds"]),
            "sample_ratio": float(options["--sample-ratio"]),
            "epochs": int(options["--epochs"]),
        }
    )
    with (reference / "config.toml").open("rb") as f:
        assert tomllib.load(f) == expected.saved


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    """--quiet: one line on stdout, the summary."""
    result = invoke("run", *SMALL, "--rounds", "1", "--quiet", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith("done: test accuracy")
    assert "after 1 rounds" in line


def test_log_format_json_writes_events_to_stderr(tmp_path: Path) -> None:
    """--log-format json: structlog JSON lines on stderr, one per event."""
    result = invoke(
        "run", *SMALL, "--rounds", "1", "--log-format", "json", "--out", tmp_path / "r"
    )
    assert result.exit_code == 0, result.output
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"simulation_started", "round_started", "round_finished"} <= {
        entry["event"] for entry in logs
    }
    assert all(entry["level"] == "info" for entry in logs)


def test_out_holding_a_run_is_refused(reference: Path) -> None:
    """A fresh run never overwrites a run folder."""
    result = invoke("run", *SMALL, "--out", reference)
    assert result.exit_code == 2
    assert "already holds a run" in result.stderr
    assert f"blazefl run --resume {reference}" in result.stderr


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_runs(tmp_path: Path, algorithm: str) -> None:
    """Each --algorithm trains a round with its knobs at their defaults."""
    result = invoke(
        "run",
        "--algorithm",
        algorithm,
        "--clients",
        "4",
        "--rounds",
        "1",
        "--epochs",
        "1",
        "--executor",
        "inline",
        "--quiet",
        "--out",
        tmp_path / "r",
        # FedBN keeps BatchNorm layers local: it needs a model with some.
        *(["--model", "cnn_bn"] if algorithm == "fedbn" else []),
    )
    assert result.exit_code == 0, result.output
    (row,) = metrics(tmp_path / "r")
    assert row["test_acc"] is not None


@pytest.mark.parametrize("partition", PARTITIONS)
def test_every_partition_splits_the_pooled_labels(partition: str) -> None:
    """Each --partition gives one non-empty training partition per client."""
    # e ** id shares leave the first of 10 clients no sample: 5 for that one.
    k = 5 if partition == "exponential" else 10
    config = resolve({"partition": partition, "clients": k})
    dataset = build_dataset(config)
    assert dataset.num_clients == k
    sizes = [dataset.client_size(cid) for cid in range(k)]
    assert min(sizes) >= 1
    assert sum(sizes) == k * 128  # the synthetic set: 128 samples a client


@pytest.mark.parametrize(
    "dataset", ["synthetic", "synthetic-cifar10", "leaf-synthetic", "digits"]
)
def test_builtin_data_sets_build_with_their_default_model(dataset: str) -> None:
    """Every built-in data set builds, with a model that fits its inputs."""
    built = build(resolve({"dataset": dataset, "clients": 4}))
    x, _ = next(iter(built.dataset.get_dataloader("test", None, 2)))
    assert built.server.model(x).shape == (x.shape[0], built.dataset.num_classes)


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_is_read_from_data_dir(tmp_path: Path) -> None:
    """--dataset mnist --data-dir reads the official IDX files there."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))
        )
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    config = resolve(
        {
            "dataset": "mnist",
            "data_dir": str(tmp_path),
            "partition": "iid",
            "clients": 3,
        }
    )
    dataset = build_dataset(config)
    assert config.model == "cnn"
    assert dataset.input_shape == (1, 28, 28)
    assert [dataset.client_size(c) for c in range(3)] == [20, 20, 20]


def test_help_of_every_command() -> None:
    """`blazefl --help` and each command's help complete."""
    for args in ([], ["run"], ["info"], ["plot"]):
        result = invoke(*args, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage: blazefl" in result.stdout
    assert "--checkpoint-every" in invoke("run", "--help").stdout


def test_missing_click_names_the_extra() -> None:
    """Without click, `blazefl` says which extra to install."""
    code = (
        "import sys; sys.modules['click'] = None\n"
        "from blazefl.cli import main\n"
        "main(['--help'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "pip install 'blazefl[cli]'" in proc.stderr


def test_main_exits_with_the_command_status(capsys: pytest.CaptureFixture[str]) -> None:
    """The console script's entry: usage errors exit 2, --version exits 0."""
    with pytest.raises(SystemExit) as exc:
        main(["run", "--clients", "0"])
    assert exc.value.code == 2
    assert "Invalid value for '--clients'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "blazefl, version" in capsys.readouterr().out
