"""`blazefl run --evaluate-clients`: per-client spread in the run folder."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import anyio
import pytest
import torch
from tests.data.leaf_files import femnist_user, write_split

from blazefl.cli._client_eval import COLUMNS, ClientColumns, columns_of
from cli_helpers import SMALL, PausedRun, checkpoint, final_params, invoke, metrics

EVAL = ["--evaluate-clients"]
NO_HELDOUT = columns_of(False)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small federation with per-client evaluation every 2 rounds."""
    out = tmp_path_factory.mktemp("evaluated") / "run"
    result = invoke("run", *SMALL, *EVAL, "--evaluate-every", "2", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_evaluated_rounds_carry_the_spread(evaluated: Path) -> None:
    """Rounds 2 and 4 (every 2, and the last) have the columns; 1 and 3 nulls."""
    rows = metrics(evaluated)
    assert [r["client_acc_mean"] is None for r in rows] == [True, False, True, False]
    for row in rows:
        assert set(NO_HELDOUT) <= set(row)
        assert not any(k.startswith("heldout_") for k in row)
    last = rows[-1]
    assert last["client_acc_count"] == 6
    assert last["client_eval_failed"] == 0
    assert last["client_acc_p10"] <= last["client_acc_p50"] <= last["client_acc_p90"]
    assert last["client_acc_worst10"] <= last["client_acc_mean"]
    # FedAvg does not personalize: the own model is the global one.
    assert last["client_acc_mean"] == last["client_global_acc_mean"]


def test_the_latest_accuracies_give_the_rows_figures(evaluated: Path) -> None:
    """client_accuracy.json holds the six clients of the last evaluation."""
    latest = json.loads((evaluated / "client_accuracy.json").read_text())
    assert latest["round"] == 4
    assert len(latest["client_acc"]) == 6
    mean = sum(latest["client_acc"]) / 6
    assert metrics(evaluated)[-1]["client_acc_mean"] == pytest.approx(mean)


def test_summary_and_plot(evaluated: Path) -> None:
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["client_evaluation"]["client_acc_count"] == 6
    assert (evaluated / "metrics.png").stat().st_size > 0


def test_the_table_shows_the_clients_accuracy(tmp_path: Path) -> None:
    result = invoke("run", *SMALL, *EVAL, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "clients acc " in result.stdout
    assert "(p10 " in result.stdout


def test_the_default_run_has_no_client_columns(tmp_path: Path) -> None:
    result = invoke("run", *SMALL, "--quiet", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert not any(k in COLUMNS for r in metrics(tmp_path / "run") for k in r)
    assert not (tmp_path / "run" / "client_accuracy.json").exists()


def test_executors_and_workers_give_the_same_rows(
    tmp_path: Path, evaluated: Path
) -> None:
    """Inline and two processes agree with two threads, bitwise."""
    for executor, workers in (("inline", "1"), ("processes", "2")):
        out = tmp_path / executor
        args = ["--executor", executor, "--workers", workers, "--out", out]
        result = invoke("run", *SMALL, *EVAL, "--evaluate-every", "2", *args)
        assert result.exit_code == 0, result.output
        assert metrics(out) == metrics(evaluated)
        assert torch.equal(final_params(out), final_params(evaluated))


def test_sigkill_and_resume_give_the_same_rows(tmp_path: Path, evaluated: Path) -> None:
    """Killed after round 3 (checkpoint at 2): resumed, the rows are the same."""
    run = PausedRun(
        tmp_path,
        tmp_path / "run",
        3,
        *SMALL,
        *EVAL,
        "--evaluate-every",
        "2",
        "--checkpoint-every",
        "2",
    )
    run.send(signal.SIGKILL)
    run.reap_orphans()
    assert checkpoint(run.out)["sim"]["round"] == 2
    result = invoke("run", "--resume", run.out)
    assert result.exit_code == 0, result.output
    assert metrics(run.out) == metrics(evaluated)
    assert torch.equal(final_params(run.out), final_params(evaluated))


def test_sigint_and_resume_give_the_same_rows(tmp_path: Path, evaluated: Path) -> None:
    """Stopped by SIGINT after round 2: the resumed run's rows are the same."""
    run = PausedRun(
        tmp_path, tmp_path / "run", 2, *SMALL, *EVAL, "--evaluate-every", "2"
    )
    run.send(signal.SIGINT)
    assert run.process.returncode == 130, run.stderr
    result = invoke("run", "--resume", run.out, "--client-acc-threshold", "0.5")
    assert result.exit_code == 0, result.output
    assert metrics(run.out) == metrics(evaluated)


def _leaf_user_mode(root: Path) -> Path:
    """Four training users; u1 and u2 have test data; two users only test."""
    rng = random.Random(5)
    names = [f"u{i}" for i in range(4)]
    write_split(root / "train", [{u: femnist_user(rng, 6) for u in names}])
    tests = {u: femnist_user(rng, 3) for u in ("u1", "u2")}
    tests.update({"held_a": femnist_user(rng, 4), "held_b": femnist_user(rng, 2)})
    write_split(root / "test", [tests])
    return root


def test_leaf_held_out_users_are_reported_apart(tmp_path: Path) -> None:
    """-t user mode: held-out users (never trained) get heldout_acc_*; the
    training users with test data get client_acc_*; training itself is the
    same as without per-client evaluation (LEAF's split is its own)."""
    data = _leaf_user_mode(tmp_path / "leaf")
    args = ["--dataset", "femnist", "--data-dir", data, "--clients", "4"]
    args += ["--rounds", "2", "--batch-size", "4", "--quiet"]
    on = invoke("run", *args, *EVAL, "--out", tmp_path / "on")
    assert on.exit_code == 0, on.output
    off = invoke("run", *args, "--out", tmp_path / "off")
    assert off.exit_code == 0, off.output
    assert torch.equal(final_params(tmp_path / "on"), final_params(tmp_path / "off"))
    last = metrics(tmp_path / "on")[-1]
    assert last["client_acc_count"] == 2  # u0 and u3 have no test data
    assert last["heldout_acc_count"] == 2
    latest = json.loads((tmp_path / "on" / "client_accuracy.json").read_text())
    assert len(latest["heldout_acc"]) == 2
    assert last["heldout_acc_mean"] == pytest.approx(sum(latest["heldout_acc"]) / 2)
    for row, plain in zip(
        metrics(tmp_path / "on"), metrics(tmp_path / "off"), strict=True
    ):
        assert {k: v for k, v in row.items() if k not in COLUMNS} == plain


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-test-fraction", "1.5", *EVAL], "strictly between 0 and 1"),
        (["--client-acc-threshold", "2", *EVAL], "an accuracy in [0, 1]"),
        (["--client-test-fraction", "0.3"], "pass --evaluate-clients too"),
        (["--client-acc-threshold", "0.3"], "pass --evaluate-clients too"),
        ([*EVAL, "--evaluate-every", "0"], "which is 0 (never)"),
        ([*EVAL, "--executor", "cohort"], "--executor cohort does not"),
        ([*EVAL, "--attack", "sign-flip"], "does not combine with --attack"),
    ],
)
def test_bad_settings_are_refused_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke("run", *SMALL, *args, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_a_fraction_is_refused_for_leaf(tmp_path: Path) -> None:
    data = _leaf_user_mode(tmp_path / "leaf")
    result = invoke(
        "run",
        *["--dataset", "femnist", "--data-dir", data, "--clients", "4"],
        *EVAL,
        *["--client-test-fraction", "0.2", "--out", tmp_path / "run"],
    )
    assert result.exit_code == 2, result.output
    assert "LEAF users have their own test data" in result.output


@pytest.mark.anyio
async def test_a_line_whose_evaluation_never_comes_is_not_written() -> None:
    """The run stopped during an evaluation: that round's line is dropped
    (--resume runs the round again), never written without its columns."""
    columns = ClientColumns()
    columns.columns = ("client_acc_mean",)
    columns.due = lambda rounds: rounds % 2 == 0
    assert await columns.of(1) == {"client_acc_mean": None}
    columns.evaluated(2, {"client_acc_mean": 0.5})
    assert await columns.of(2) == {"client_acc_mean": 0.5}
    async with anyio.create_task_group() as tg:
        got: list[object] = []

        async def line_of_round_4() -> None:
            got.append(await columns.of(4))

        tg.start_soon(line_of_round_4)
        await anyio.sleep(0.01)
        assert got == []  # waiting for round 4's evaluation
        columns.over()
    assert got == [None]
