"""`blazefl sweep` refuses bad grids, seeds and points before any run starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blazefl._exceptions import ConfigurationError
from blazefl.cli._grid import parse_seeds, plan_sweep
from blazefl.cli._study import Stat
from blazefl.cli._sweep import share_cores
from cli_helpers import SMALL, invoke


def _refused(tmp_path: Path, *args: str, config: str | None = None) -> str:
    """Run `blazefl sweep ARGS`; assert exit 2 and that no folder was made."""
    out = tmp_path / "sweep"
    extra = []
    if config is not None:
        (tmp_path / "sweep.toml").write_text(config)
        extra = ["--config", str(tmp_path / "sweep.toml")]
    result = invoke("sweep", *SMALL, *args, *extra, "--out", out)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    return result.stderr


def test_bad_grid_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    """A misspelt grid key names the closest setting."""
    err = _refused(tmp_path, "--grid", "lrr=0.1,0.2")
    assert "unknown setting 'lrr'; did you mean 'lr'?" in err


def test_empty_grid_is_refused(tmp_path: Path) -> None:
    """--grid lr= gives no value to sweep."""
    assert "the grid of lr is empty" in _refused(tmp_path, "--grid", "lr=")


def test_duplicated_seed_is_refused(tmp_path: Path) -> None:
    """--seeds 0-2,1 names the seed given twice."""
    assert "seed 1 is given twice" in _refused(tmp_path, "--seeds", "0-2,1")


def test_unknown_algorithm_in_the_grid_is_refused(tmp_path: Path) -> None:
    """An unknown grid value is refused with the point and the allowed values."""
    err = _refused(tmp_path, "--grid", "algorithm=fedavg,fedprx")
    assert "grid point algorithm='fedprx' cannot run" in err
    assert "did you mean 'fedprox'?" in err


def test_a_point_that_cannot_run_is_named(tmp_path: Path) -> None:
    """mu with fedavg: the point is refused before the fedprox runs start."""
    err = _refused(tmp_path, "--grid", "algorithm=fedprox,fedavg", "--grid", "mu=0.01")
    assert "grid point algorithm='fedavg', mu=0.01 cannot run" in err
    assert "does not apply to --algorithm fedavg" in err


def test_seed_beside_seeds_is_refused(tmp_path: Path) -> None:
    """--seed and --seeds together are refused."""
    err = _refused(tmp_path, "--seed", "3", "--seeds", "0-4")
    assert "--seed cannot be used with --seeds" in err


def test_seed_is_not_a_grid_key(tmp_path: Path) -> None:
    """The seeds come from --seeds, not --grid."""
    assert "seed is not a grid key" in _refused(tmp_path, "--grid", "seed=1,2")


def test_a_grid_key_that_is_also_fixed_is_refused(tmp_path: Path) -> None:
    """--lr 0.1 beside --grid lr=... is ambiguous."""
    err = _refused(tmp_path, "--lr", "0.1", "--grid", "lr=0.2,0.3")
    assert "--lr is given both as a fixed option and in the grid" in err


def test_bad_value_type_in_the_grid(tmp_path: Path) -> None:
    """--grid clients=4,many names the value that is no integer."""
    err = _refused(tmp_path, "--grid", "clients=4,many")
    assert "'many' is not an integer" in err


def test_sweep_table_in_a_config_file_is_checked(tmp_path: Path) -> None:
    """The [sweep] table's grid and seeds go through the same checks."""
    err = _refused(
        tmp_path,
        config="[sweep]\nseeds = [0, 0]\n[sweep.grid]\nlr = [0.1, 0.2]\n",
    )
    assert "seed 0 is given twice" in err
    err = _refused(tmp_path, config="[sweep]\nseed = [0, 1]\n")
    assert "unknown key 'seed' in [sweep]; did you mean 'seeds'?" in err


def test_sweep_table_plans_every_combination(tmp_path: Path) -> None:
    """A config file's [sweep] table: its grid times its seeds, command line wins."""
    values = {"rounds": 3}
    table = {"seeds": "0-1", "grid": {"lr": [0.1, 0.2], "algorithm": ["fedavg"]}}
    plan = plan_sweep({}, ["lr=0.3,0.4,0.5"], None, values, table, "f.toml")
    assert len(plan.runs) == 3 * 2
    assert plan.runs[0].name == "000-lr=0.3-algorithm=fedavg-seed0"
    assert {r.config.rounds for r in plan.runs} == {3}
    assert [r.config.seed for r in plan.runs[:2]] == [0, 1]


def test_seed_ranges_and_lists() -> None:
    """0-2,7 is four seeds; a backwards range is refused."""
    assert parse_seeds("0-2, 7") == (0, 1, 2, 7)
    assert parse_seeds([5, 3]) == (5, 3)
    with pytest.raises(ConfigurationError, match=r"range '4-2' runs backwards"):
        parse_seeds("4-2")


def test_cores_are_shared_out_never_oversubscribed() -> None:
    """--parallel N gets cores // N each; given --workers that do not fit refuse."""
    configs = [{"executor": "threads", "workers": 2}]
    assert share_cores(configs, 2, workers_given=False, cores=2) == 1
    assert configs[0]["workers"] == 1
    with pytest.raises(ConfigurationError, match=r"needs 4 cores"):
        share_cores([{"workers": 2}], 2, workers_given=True, cores=2)
    with pytest.raises(ConfigurationError, match=r"3 runs at a time need"):
        share_cores([{"workers": 1}], 3, workers_given=False, cores=2)


def test_student_t_interval_by_hand() -> None:
    """n=5: t(0.975, 4) = 2.776445; one sample has no interval."""
    s = Stat.of([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * s.std / 5**0.5  # type: ignore[operator]
    assert s.mean == 3.0
    assert s.ci95_low == pytest.approx(3.0 - half)
    assert Stat.of([1.0]).ci95_low is None


def test_resume_refuses_a_changed_setting(tmp_path: Path) -> None:
    """--resume keeps the sweep's plan: --lr is refused, --workers allowed."""
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"runs": []}))
    result = invoke("sweep", "--resume", folder, "--lr", "0.2")
    assert result.exit_code == 2
    assert "--lr cannot be used with --resume" in result.stderr
    result = invoke("sweep", "--resume", folder, "--grid", "lr=0.1")
    assert "--grid cannot be used with --resume" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """MNIST without its files fails at build; the digits run still completes."""
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    out = tmp_path / "sweep"
    result = invoke(
        "sweep", *SMALL, "--grid", "dataset=mnist,digits", "--data-dir", empty,
        "--seeds", "0", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["failed", "complete"]
    assert runs[0]["error"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[1].startswith("mnist,0,1,")
    assert summary[2].startswith("digits,1,0,")
    assert "1 failed (000-dataset=mnist-seed0)" in result.stdout
