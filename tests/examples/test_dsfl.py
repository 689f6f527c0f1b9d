"""The step-by-step DS-FL example runs, learns, sharpens, and is deterministic."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from blazefl.core import serialize_model
from blazefl.models import ModelZoo
from blazefl.sim import Executor, ProcessExecutor, Simulation, ThreadExecutor

EXAMPLE = Path(__file__).parents[2] / "examples" / "step-by-step-dsfl"
SMALL = [
    "--model", "mlp", "--clients", "4", "--sample-ratio", "1", "--rounds", "3",
    "--open-size", "200", "--open-samples", "400", "--epochs", "3",
]  # fmt: skip


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dsfl() -> Iterator[ModuleType]:
    """The example's `dsfl` module under its plain name, importable by spawned
    process workers (they get the parent's sys.path), removed afterwards."""
    saved_path = list(sys.path)
    saved_modules = {k: sys.modules.get(k) for k in ("dsfl", "dsfl_main")}
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield _load("dsfl", EXAMPLE / "dsfl.py")
    finally:
        sys.path[:] = saved_path
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_main_prints_rounds_and_learns(
    dsfl: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """main prints one line per round and ends well above chance (0.1)."""
    accuracy = _load("dsfl_main", EXAMPLE / "main.py").main(SMALL)
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("round")]) == 3
    assert "upload per client per round: 8,000 bytes" in out[1]
    assert out[-1].startswith("final server accuracy")
    assert accuracy > 0.3


def test_era_sharpens(dsfl: ModuleType) -> None:
    """ERA with T < 1 lowers every soft row's entropy and keeps its argmax."""
    probs = torch.tensor(
        [
            [0.40, 0.30, 0.20, 0.10],
            [0.25, 0.25, 0.30, 0.20],
            [0.70, 0.10, 0.10, 0.10],
        ],
        dtype=torch.float64,
    )
    sharpened = dsfl.era(probs, 0.1)
    assert torch.allclose(sharpened.sum(dim=1), torch.ones(3, dtype=torch.float64))
    assert torch.equal(sharpened.argmax(dim=1), probs.argmax(dim=1))
    assert (dsfl.entropy(sharpened) < dsfl.entropy(probs)).all()
    # T = 1 keeps more entropy than T = 0.1: the temperature is the knob.
    assert (dsfl.entropy(dsfl.era(probs, 1.0)) > dsfl.entropy(sharpened)).all()


def _final_params(dsfl: ModuleType, executor: Executor) -> torch.Tensor:
    data, open_x = dsfl.make_data(3, seed=3, open_samples=200, test_samples=200)
    zoo = ModelZoo(data.input_shape, data.num_classes)
    server = dsfl.DSFLServer(
        zoo, "mlp", dataset=data, open_x=open_x, num_clients=3, rounds=2,
        sample_ratio=0.67, open_size=100, seed=3,
    )  # fmt: skip
    work = dsfl.DSFLClientWork(zoo, "mlp", data, open_x, epochs=1, distill_epochs=1)
    # 2 rounds of 2 out of 3 clients: someone's second round reads its ctx.state.
    Simulation(server, work, executor=executor, seed=3).run_sync()
    assert server.round == 2
    return serialize_model(server.model)


def test_threads_and_processes_give_the_same_model(dsfl: ModuleType) -> None:
    """Same seed, threads vs processes: bitwise the same final server model."""
    threads = _final_params(dsfl, ThreadExecutor(2))
    processes = _final_params(dsfl, ProcessExecutor(2))
    assert torch.equal(threads, processes)
