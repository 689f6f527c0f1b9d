"""Client states on disk: a personalized federation SIGKILLed past its
checkpoint resumes bit for bit from the checkpoint and the state file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from personal_fakes import PERSONALIZED, outcome, simulation
from personal_script import ROUNDS

from blazefl.sim import ProcessExecutor, ThreadExecutor, load_checkpoint

HERE = Path(__file__).parent
SCRIPT = HERE / "personal_script.py"

CASES = [
    ("ditto", "threads"),
    ("fedbn", "threads"),
    pytest.param("apfl", "threads", marks=pytest.mark.slow),
    pytest.param("fedper", "processes", marks=pytest.mark.slow),
    pytest.param("fedrep", "threads", marks=pytest.mark.slow),
]


def _holder(tmp: Path, name: str, kind: str) -> tuple[Path, Path]:
    """Run the script until it pauses after round 3, then SIGKILL it."""
    path, ckpt, err = tmp / "clients.sqlite", tmp / "ckpt", tmp / "holder.stderr"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(HERE.parents[1] / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]
        ),
    }
    with err.open("wb") as stderr:
        holder = subprocess.Popen(
            [sys.executable, str(SCRIPT), name, kind, str(path), str(ckpt)],
            stderr=stderr,
            env=env,
        )
    try:
        for _ in range(1800):
            if "paused after round 3" in err.read_text() or holder.poll() is not None:
                break
            time.sleep(0.1)
        assert holder.poll() is None, err.read_text()
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(30) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    return path, ckpt


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_sigkill_and_resume_with_states_on_disk(
    tmp_path: Path, name: str, kind: str
) -> None:
    """Killed after round 3 (checkpoint after 2), resumed on the same state
    file: the model and every client's state equal an undisturbed run's."""
    algorithm = PERSONALIZED[name]
    reference = simulation(algorithm, ThreadExecutor(2), rounds=ROUNDS)
    reference.run_sync()
    expected_params, expected_states = outcome(reference)

    path, ckpt = _holder(tmp_path, name, kind)
    executor = ThreadExecutor(2) if kind == "threads" else ProcessExecutor(2)
    sim = simulation(algorithm, executor, rounds=ROUNDS, client_state_path=path)
    sim.load_state_dict(load_checkpoint(ckpt))
    sim.run_sync()
    params, states = outcome(sim)

    assert torch.equal(params, expected_params)
    assert states.keys() == expected_states.keys()
    assert any(expected_states.values()) or name == "finetune"
    for cid, data in expected_states.items():
        assert states[cid].keys() == data.keys()
        for key, value in data.items():
            assert torch.equal(states[cid][key], value), (cid, key)
