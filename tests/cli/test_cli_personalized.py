"""`blazefl run --algorithm ditto|fedper|fedrep|fedbn|apfl|finetune`: each
runs, resumes bit for bit after a SIGKILL (client states included), and
refuses bad settings."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import torch

from cli_helpers import SMALL, PausedRun, checkpoint, final_params, invoke, metrics

#: Each algorithm's options; FedBN on the BatchNorm CNN and shifted images.
ARGS = {
    "ditto": ["--model", "mlp", "--ditto-lambda", "0.5"],
    "fedper": ["--model", "mlp"],
    "fedrep": ["--model", "mlp", "--head-epochs", "2"],
    "fedbn": ["--model", "cnn_bn", "--feature-shift", "contrast"],
    "apfl": ["--model", "mlp", "--mix", "0.5"],
    "finetune": ["--model", "mlp", "--finetune-epochs", "1"],
}


def _client_states(folder: Path) -> dict[int, dict[str, torch.Tensor]]:
    clients = checkpoint(folder)["sim"]["clients"]
    return {int(cid): s["data"] for cid, s in clients["clients"].items()}


@pytest.mark.parametrize("name", ARGS)
def test_resume_after_sigkill_is_bitwise(tmp_path: Path, name: str) -> None:
    """Killed after round 3 with checkpoints every 2 rounds, the resumed run
    ends with the undisturbed run's model, metrics and client states."""
    args = [*SMALL, "--algorithm", name, *ARGS[name], "--executor", "threads"]
    reference = tmp_path / "reference"
    result = invoke("run", *args, "--out", reference)
    assert result.exit_code == 0, result.output
    run = PausedRun(
        tmp_path,
        tmp_path / "run",
        3,
        *args,
        "--workers",
        "1",
        "--checkpoint-every",
        "2",
    )
    run.send(signal.SIGKILL)
    run.reap_orphans()
    assert checkpoint(run.out)["sim"]["round"] == 2

    result = invoke("run", "--resume", run.out)

    assert result.exit_code == 0, result.output
    assert torch.equal(final_params(run.out), final_params(reference))
    assert metrics(run.out) == metrics(reference)
    states, expected = _client_states(run.out), _client_states(reference)
    assert states.keys() == expected.keys()
    if name != "finetune":  # fine-tuning keeps nothing between rounds
        assert any(expected.values())
    for cid, data in expected.items():
        assert states[cid].keys() == data.keys()
        for key, value in data.items():
            assert torch.equal(states[cid][key], value), (cid, key)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algorithm", "ditto", "--ditto-lambda", "-1"], r"'--ditto-lambda'"),
        (["--algorithm", "apfl", "--mix", "2"], r"'--mix'"),
        (["--algorithm", "fedrep", "--head-epochs", "0"], r"'--head-epochs'"),
        (["--algorithm", "ditto", "--head-tensors", "1"], r"does not apply"),
        (["--algorithm", "fedbn", "--model", "cnn"], r"BatchNorm.*'cnn_bn'"),
        (["--feature-shift", "rotate"], r"'rotation', 'contrast'"),
        (["--algorithm", "fedper", "--executor", "cohort"], r"fedper trains what"),
    ],
)
def test_bad_settings_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Exit 2 with one message naming the setting, no traceback."""
    result = invoke("run", *SMALL, *args, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert re.search(message, text), text
