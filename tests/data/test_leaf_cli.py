"""`blazefl run --dataset femnist|shakespeare|sent140` on files in LEAF's format."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tests.data.leaf_files import (
    femnist_user,
    sent140_user,
    shakespeare_user,
    write_split,
)

from cli_helpers import final_params, invoke, metrics

_USER = {
    "femnist": lambda rng, n, u: femnist_user(rng, n),
    "shakespeare": lambda rng, n, u: shakespeare_user(rng, n),
    "sent140": sent140_user,
}


def _leaf(root: Path, dataset: str, users: int = 4) -> Path:
    rng = random.Random(7)
    make = _USER[dataset]
    names = [f"u{i}" for i in range(users)]
    write_split(root / "train", [{u: make(rng, 6, u) for u in names}])
    write_split(root / "test", [{u: make(rng, 2, u) for u in names}])
    return root


@pytest.mark.parametrize("dataset", ["femnist", "shakespeare", "sent140"])
def test_a_leaf_data_set_runs_from_the_cli(tmp_path: Path, dataset: str) -> None:
    data = _leaf(tmp_path / "data", dataset)
    args = ["--dataset", dataset, "--data-dir", data, "--clients", "3"]
    args += ["--rounds", "2", "--batch-size", "4", "--quiet"]
    a = invoke("run", *args, "--out", tmp_path / "a", "--executor", "inline")
    assert a.exit_code == 0, a.output
    b = invoke("run", *args, "--out", tmp_path / "b", "--executor", "threads")
    assert b.exit_code == 0, b.output
    assert len(metrics(tmp_path / "a")) == 2
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert final_params(tmp_path / "a").equal(final_params(tmp_path / "b"))


def test_leaf_cli_errors_are_one_line(tmp_path: Path) -> None:
    data = _leaf(tmp_path / "data", "femnist")
    base = ["run", "--dataset", "femnist", "--data-dir", data, "--rounds", "1"]
    r = invoke(*base, "--clients", "9", "--out", tmp_path / "x")
    assert r.exit_code == 2
    assert "max_users=9 is more than the 4 training users" in r.output
    r = invoke(*base, "--partition", "iid", "--out", tmp_path / "y")
    assert r.exit_code == 2
    assert "keeps LEAF's natural split" in r.output
    r = invoke(*base, "--model", "char_lstm", "--out", tmp_path / "z")
    assert r.exit_code == 2
    assert "does not fit --dataset femnist" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke(
        "run", "--dataset", "shakespeare", "--data-dir", empty, "--out", tmp_path / "w"
    )
    assert r.exit_code == 2
    assert "no train/ folder" in r.output
    assert "Traceback" not in r.output
