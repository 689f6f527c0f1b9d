"""The quickstart example runs end to end with small settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart-fedavg" / "main.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_main", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("loop", [[], ["--blazefl-loop"]])
def test_quickstart_prints_rounds_and_learns(
    loop: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Both drivers print one line per round and end well above chance."""
    _load().main(["--clients", "8", "--rounds", "4", "--model", "mlp", *loop])
    out = capsys.readouterr().out.splitlines()
    rounds = [line for line in out if line.startswith("round")]
    assert len(rounds) == 4
    final = float(out[-1].split("accuracy ")[1].split()[0])
    assert final > 0.5  # chance is 0.1
