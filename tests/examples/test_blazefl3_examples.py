"""The two examples written in BlazeFL 3.0's style run unchanged and learn."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def _load(folder: str) -> ModuleType:
    path = EXAMPLES / folder / "main.py"
    spec = importlib.util.spec_from_file_location(f"{folder}_main", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _uses_only_blazefl3_paths(folder: str) -> None:
    text = (EXAMPLES / folder / "main.py").read_text()
    imports = [
        line.split()[1] for line in text.splitlines() if line.startswith("from blazefl")
    ]
    assert imports, "the example imports blazefl"
    allowed = {
        "blazefl.contrib.fedavg",
        "blazefl.core.client_trainer",
        "blazefl.core.model_selector",
        "blazefl.core.partitioned_dataset",
        "blazefl.core.server_handler",
        "blazefl.core.utils",
        "blazefl.reproducibility.generator",
        "blazefl.reproducibility.snapshot",
    }
    assert set(imports) <= allowed, set(imports) - allowed


def test_fedavg_in_the_3_0_style_learns(capsys: pytest.CaptureFixture[str]) -> None:
    """FedAvg with 3.0's loop and an as_completed progress_fn ends near 1.0."""
    _uses_only_blazefl3_paths("blazefl3-fedavg")
    _load("blazefl3-fedavg").main(["--rounds", "3"])
    rounds = [line for line in capsys.readouterr().out.splitlines() if "round" in line]
    assert len(rounds) == 3
    assert float(rounds[-1].split("accuracy ")[1]) > 0.8  # chance is 0.25


def test_hand_written_3_0_trainer_learns(capsys: pytest.CaptureFixture[str]) -> None:
    """A 3.0 handler and ThreadPoolClientTrainer subclass fit the line."""
    _uses_only_blazefl3_paths("blazefl3-thread-trainer")
    _load("blazefl3-thread-trainer").main(["--rounds", "3"])
    rounds = [line for line in capsys.readouterr().out.splitlines() if "round" in line]
    assert len(rounds) == 3
    assert float(rounds[-1].split("loss ")[1]) < 0.1


@pytest.mark.slow
def test_the_3_0_examples_run_as_scripts() -> None:
    """`python examples/<name>/main.py` runs, as a BlazeFL user starts it."""
    for folder in ("blazefl3-fedavg", "blazefl3-thread-trainer"):
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / folder / "main.py"), "--rounds", "2"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "round 2" in done.stdout
