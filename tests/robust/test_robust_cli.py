"""``blazefl run --attack ... --aggregator ...``: an attacked run with a robust
aggregator ends bit for bit the same on every executor, with 1 or 2 workers,
and after kill -9 and ``--resume``; its metrics and summary say who attacked
and how well."""

from __future__ import annotations

import json
import signal
import tomllib
from pathlib import Path

import pytest
import torch

from blazefl.robust import draw_attackers
from cli_helpers import PausedRun, checkpoint, final_params, invoke, metrics

#: 11 clients, all sampled: 2 attackers (0.2 of 11), f = 2, Bulyan's 4f + 3 = 11.
#: The noise attack draws from each attacker's own RNG suite.
NOISE_BULYAN = [
    *("--model", "mlp", "--clients", "11", "--sample-ratio", "1"),
    *("--rounds", "3", "--epochs", "1", "--batch-size", "32"),
    *("--attack", "noise", "--attack-strength", "0.5", "--aggregator", "bulyan"),
]
#: Data poisoning on worker processes: the poisoned data set travels with the work.
BACKDOOR_TRIMMED = [
    *("--model", "mlp", "--clients", "10", "--sample-ratio", "1"),
    *("--rounds", "2", "--epochs", "1", "--batch-size", "32"),
    *("--attack", "backdoor", "--attack-fraction", "0.3"),
    *("--aggregator", "trimmed-mean"),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attacked run inline: the ground truth."""
    out = tmp_path_factory.mktemp("robust") / "reference"
    result = invoke("run", *NOISE_BULYAN, "--executor", "inline", "-q", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _same(folder: Path, reference: Path) -> None:
    assert torch.equal(final_params(folder), final_params(reference))
    assert metrics(folder) == metrics(reference)


@pytest.mark.parametrize(
    ("executor", "workers"),
    [("threads", "1"), ("threads", "2"), ("processes", "1"), ("processes", "2")],
)
def test_attacked_robust_run_is_bitwise_on_every_executor(
    tmp_path: Path, reference: Path, executor: str, workers: str
) -> None:
    """Noise attack + Bulyan: the final model and every metric match inline."""
    out = tmp_path / "run"
    result = invoke(
        "run",
        *NOISE_BULYAN,
        "--executor",
        executor,
        "--workers",
        workers,
        "-q",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    _same(out, reference)


def test_attacked_robust_run_resumes_bitwise_after_sigkill(
    tmp_path: Path, reference: Path
) -> None:
    """Killed after round 2 with checkpoints every 2 rounds, resumed: same end."""
    workers = ["--executor", "processes", "--workers", "1"]
    run = PausedRun(
        tmp_path,
        tmp_path / "run",
        2,
        *NOISE_BULYAN,
        *workers,
        "--checkpoint-every",
        "2",
    )
    run.send(signal.SIGKILL)
    run.reap_orphans()
    assert checkpoint(run.out)["sim"]["round"] == 2

    result = invoke("run", "--resume", run.out, *workers)

    assert result.exit_code == 0, result.output
    _same(run.out, reference)


def test_metrics_and_summary_record_the_attack(reference: Path) -> None:
    """Each round's line has the attack success rate; the summary names the
    attack, its fraction, the attackers and the aggregator."""
    rows = metrics(reference)
    assert all(0 <= r["attack_success_rate"] <= 1 for r in rows)
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["attack"] == {
        "name": "noise",
        "std": 0.5,
        "fraction": 0.2,
        "attackers": list(draw_attackers(11, 0.2, seed=42)),
    }
    assert summary["aggregator"] == {"name": "bulyan", "f": 2}
    assert "attack_success_rate" in summary["final"]


def test_backdoor_run_on_processes_is_bitwise(tmp_path: Path) -> None:
    """Data poisoning + trimmed mean: two worker processes end like inline."""
    runs = {}
    for executor in ("inline", "processes"):
        out = tmp_path / executor
        result = invoke(
            "run", *BACKDOOR_TRIMMED, "--executor", executor, "-q", "--out", out
        )
        assert result.exit_code == 0, result.output
        runs[executor] = out
    _same(runs["processes"], runs["inline"])
    config = (runs["inline"] / "config.toml").read_text()
    assert 'attack = "backdoor"' in config
    assert "byzantine_f = 3" in config


def test_a_run_without_attack_writes_no_attack_fields(tmp_path: Path) -> None:
    """Without --attack the metrics lines, summary and config are as before."""
    out = tmp_path / "run"
    result = invoke(
        "run",
        "--model",
        "mlp",
        "--clients",
        "4",
        "--rounds",
        "1",
        "--epochs",
        "1",
        "--executor",
        "inline",
        "-q",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "attack_success_rate" not in metrics(out)[0]
    summary = json.loads((out / "summary.json").read_text())
    assert "attack" not in summary
    assert "aggregator" not in summary
    with (out / "config.toml").open("rb") as f:
        keys = set(tomllib.load(f))
    assert not keys & {"attack", "attack_fraction", "aggregator", "byzantine_f"}


@pytest.mark.parametrize(
    ("args", "aggregator"),
    [
        (
            ["--aggregator", "multi-krum", "--attack", "scale"],
            {"name": "multi-krum", "f": 1, "m": None},
        ),
        (
            ["--aggregator", "norm-bound", "--norm-bound", "0.5", "--attack", "scale"],
            {"name": "norm-bound", "bound": 0.5},
        ),
        (
            [
                "--aggregator",
                "median",
                "--algorithm",
                "scaffold",
                "--attack",
                "label-flip",
            ],
            {"name": "median", "f": 1},
        ),
    ],
)
def test_other_aggregators_and_algorithms_run_from_the_cli(
    tmp_path: Path, args: list[str], aggregator: dict[str, object]
) -> None:
    """Multi-Krum, the norm bound and SCAFFOLD under the median run to the end,
    printing each round's attack success rate."""
    out = tmp_path / "run"
    result = invoke(
        "run",
        "--model",
        "mlp",
        "--clients",
        "6",
        "--sample-ratio",
        "1",
        "--rounds",
        "1",
        "--epochs",
        "1",
        "--executor",
        "inline",
        "--out",
        out,
        *args,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aggregator"] == aggregator
    assert summary["final"]["test_acc"] is not None
    rate = metrics(out)[0]["attack_success_rate"]
    assert f"| attack success {rate:.3f}" in result.stdout  # the per-round line
    assert (out / "metrics.png").stat().st_size > 0
