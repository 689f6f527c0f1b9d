"""`blazefl run` with --dp and --secagg: ε per round in metrics.jsonl and the
summary, the budget stop, --calibrate, config-file keys, and kill -9 +
--resume ending bit for bit like the undisturbed run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from blazefl.privacy import PrivacyAccountant
from cli_helpers import SMALL, PausedRun, checkpoint, final_params, invoke, metrics

DP = ["--dp", "central", "--noise-multiplier", "2.0", "--clip-norm", "0.01"]


def _summary(folder: Path) -> dict[str, object]:
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def private_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Central DP with adaptive clipping under secure aggregation, undisturbed."""
    out = tmp_path_factory.mktemp("private") / "run"
    result = invoke("run", *SMALL, *DP, "--adaptive-clip", "--secagg", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_epsilon_is_reported_every_round(private_reference: Path) -> None:
    """metrics.jsonl has the accountant's ε after each round; the summary the
    final (ε, δ), the relation, the sampling and secagg's cost."""
    accountant = PrivacyAccountant("central", 2.0, 6, 3, 1e-5)
    rows = metrics(private_reference)
    assert [r["epsilon"] for r in rows] == [accountant.epsilon(k) for k in (1, 2, 3, 4)]
    privacy = _summary(private_reference)["privacy"]
    assert isinstance(privacy, dict)
    assert privacy["epsilon"] == rows[-1]["epsilon"]
    assert privacy["delta"] == 1e-5
    assert privacy["neighbouring_relation"].startswith("user-level, replace-one")
    assert privacy["sampling"] == "fixed size without replacement, 3 of 6 a round"
    assert privacy["secagg_modulus"] == "2^48"
    assert privacy["secagg_extra_bytes_per_round"] > 0


def test_target_epsilon_stops_before_the_round_that_would_exceed_it(
    tmp_path: Path, private_reference: Path
) -> None:
    """A budget between ε(2) and ε(3): two rounds run, a message says why."""
    eps = [r["epsilon"] for r in metrics(private_reference)]
    target = f"{(eps[1] + eps[2]) / 2:.6f}"
    result = invoke("run", *SMALL, *DP, "--target-epsilon", target, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "privacy budget: round 3 would spend epsilon" in result.output
    assert len(metrics(tmp_path)) == 2
    summary = _summary(tmp_path)
    assert summary["status"] == "privacy budget reached"
    assert checkpoint(tmp_path)["sim"]["round"] == 2


def test_calibrate_derives_the_noise_from_the_budget(tmp_path: Path) -> None:
    """--calibrate --target-epsilon 20: the run spends just under 20 in 4 rounds."""
    result = invoke(
        "run",
        *SMALL,
        "--dp",
        "central",
        "--calibrate",
        "--target-epsilon",
        "20",
        "--clip-norm",
        "0.001",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    privacy = _summary(tmp_path)["privacy"]
    assert isinstance(privacy, dict)
    assert 19.5 < privacy["epsilon"] <= 20
    assert privacy["noise_multiplier"] > 0


def test_privacy_keys_in_a_config_file(tmp_path: Path) -> None:
    """The TOML keys are the option names; config.toml records them."""
    config = tmp_path / "fl.toml"
    config.write_text('dp = "local"\nnoise_multiplier = 4.0\nclip_norm = 0.001\n')
    out = tmp_path / "run"
    result = invoke("run", *SMALL, "--config", config, "--out", out)
    assert result.exit_code == 0, result.output
    saved = (out / "config.toml").read_text()
    assert 'dp = "local"' in saved
    assert "noise_multiplier = 4.0" in saved
    assert "epsilon" in metrics(out)[0]


def test_resume_after_sigkill_is_bitwise(
    tmp_path: Path, private_reference: Path
) -> None:
    """Killed in round 3 (checkpoint of round 2) and resumed on processes:
    the same model, ε rows and clip norm as the undisturbed run."""
    args = [*SMALL, *DP, "--adaptive-clip", "--secagg", "--checkpoint-every", "2"]
    run = PausedRun(tmp_path, tmp_path / "run", 3, *args, "--workers", "1")
    run.send(signal.SIGKILL)
    run.reap_orphans()
    assert checkpoint(run.out)["sim"]["round"] == 2
    result = invoke(
        "run", "--resume", run.out, "--executor", "processes", "--workers", "2"
    )
    assert result.exit_code == 0, result.output
    assert torch.equal(final_params(run.out), final_params(private_reference))
    assert metrics(run.out) == metrics(private_reference)
    handler = checkpoint(run.out)["sim"]["handler"]
    reference = checkpoint(private_reference)["sim"]["handler"]
    assert handler["privacy"] == reference["privacy"]
