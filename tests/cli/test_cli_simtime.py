"""`blazefl run` with simulated time: --profiles, --mode async, deadlines;
virtual_time in metrics.jsonl, clear errors, kill -9 + --resume bit for bit."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from cli_helpers import SMALL, PausedRun, checkpoint, final_params, invoke, metrics

FEDBUFF = [
    "--profiles", "lognormal", "--mode", "async", "--algorithm", "fedbuff",
    "--buffer-size", "2", "--concurrency", "4",
]  # fmt: skip
DEADLINE = [
    "--profiles", "lognormal", "--online-fraction", "0.8", "--deadline", "1.0",
    "--over-selection", "0.5",
]  # fmt: skip


@pytest.fixture(scope="module")
def fedbuff_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fedbuff") / "run"
    result = invoke("run", *SMALL, *FEDBUFF, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "s simulated); run folder" in result.output
    return out


def test_async_metrics_carry_virtual_time(fedbuff_run: Path) -> None:
    """Every metrics line of an async run has a growing virtual_time."""
    rows = metrics(fedbuff_run)
    assert len(rows) == 4
    times = [r["virtual_time"] for r in rows]
    assert all(isinstance(t, float) for t in times)
    assert times == sorted(times)
    assert all(r["clients"] == 2 for r in rows)
    summary = json.loads((fedbuff_run / "summary.json").read_text())
    assert summary["virtual_seconds"] == pytest.approx(times[-1])


def test_plain_runs_have_no_virtual_time(tmp_path: Path) -> None:
    """Without --profiles the metrics keep today's columns."""
    result = invoke("run", *SMALL, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert all("virtual_time" not in r for r in metrics(tmp_path / "run"))
    assert "profiles" not in (tmp_path / "run" / "config.toml").read_text()


def test_deadline_run_reports_stragglers(tmp_path: Path) -> None:
    """A sync run with a deadline drops and counts stragglers."""
    result = invoke("run", *SMALL, *DEADLINE, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    rows = metrics(tmp_path / "run")
    assert all("virtual_time" in r for r in rows)
    assert sum(r["stragglers"] for r in rows) > 0


def test_async_resume_after_sigkill_is_bitwise(
    tmp_path: Path, fedbuff_run: Path
) -> None:
    """kill -9 after update 3 (checkpoint every 2), resume: the same end."""
    run = PausedRun(
        tmp_path, tmp_path / "run", 3, *SMALL, *FEDBUFF, "--checkpoint-every", "2",
        "--executor", "processes", "--workers", "1",
    )  # fmt: skip
    run.send(signal.SIGKILL)
    run.reap_orphans()
    assert checkpoint(run.out)["sim"]["round"] == 2
    assert checkpoint(run.out)["sim"]["time"]["scheduler"]["flights"]  # in flight
    result = invoke("run", "--resume", run.out, "--executor", "threads")
    assert result.exit_code == 0, result.output
    assert torch.equal(final_params(run.out), final_params(fedbuff_run))
    assert metrics(run.out) == metrics(fedbuff_run)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "async", "--profiles", "lognormal"],
         r"--mode async needs an algorithm that applies stale updates "
         r"\(--algorithm fedbuff or fedasync\); fedavg cannot"),
        (["--deadline", "1"], r"needs simulated time: pass --profiles lognormal"),
        (["--profiles", "lognormal", "--deadline", "0"], r"--deadline"),
        (["--profiles", "lognormal", "--deadline", "-2"], r"--deadline"),
        ([*FEDBUFF[:-4], "--buffer-size", "5", "--concurrency", "4"],
         r"5 is above the concurrency 4"),
        ([*FEDBUFF, "--deadline", "1"], r"applies to --mode sync, not --mode async"),
        (["--profiles", "lognormal", "--concurrency", "3"], r"applies to --mode async"),
        (["--profiles", "lognormal", "--mode", "async", "--algorithm", "fedasync",
          "--buffer-size", "2"], r"fedasync applies each update as it arrives"),
        (["--profiles", "nope.csv"], r"neither 'lognormal' nor a \.csv or \.json"),
        ([*FEDBUFF, "--executor", "cohort"], r"cannot run on --executor cohort"),
    ],
)  # fmt: skip
def test_bad_time_settings_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Each bad combination is refused before anything runs, without a traceback."""
    result = invoke("run", *SMALL, *args, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    import re

    assert re.search(message, result.output), result.output


def test_malformed_trace_names_its_line(tmp_path: Path) -> None:
    """A trace with a bad row fails with exit 2 and the row's line number."""
    trace = tmp_path / "trace.csv"
    rows = ["client_id,compute_s_per_sample,download_mbps,upload_mbps"]
    rows += [f"{c},0.01,10,5" for c in range(6)]
    rows[4] = "3,-0.01,10,5"
    trace.write_text("\n".join(rows) + "\n")
    result = invoke("run", *SMALL, "--profiles", trace, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "line 5: compute_s_per_sample='-0.01'" in result.output


def test_trace_missing_clients_is_refused(tmp_path: Path) -> None:
    """A trace that does not cover --clients names the missing ones."""
    trace = tmp_path / "trace.csv"
    rows = ["client_id,compute_s_per_sample,download_mbps,upload_mbps"]
    rows += [f"{c},0.01,10,5" for c in range(4)]
    trace.write_text("\n".join(rows) + "\n")
    result = invoke("run", *SMALL, "--profiles", trace, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "no profile for clients 4, 5" in result.output


def test_plot_and_table_show_virtual_time(fedbuff_run: Path, tmp_path: Path) -> None:
    """`blazefl plot` draws a timed run; the table row names the clock."""
    from blazefl.cli._progress import format_row

    result = invoke("plot", fedbuff_run, "--output", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").stat().st_size > 0
    row = json.loads((fedbuff_run / "metrics.jsonl").read_text().splitlines()[-1])
    line = format_row(row, 4)
    assert f"virtual {row['virtual_time']:.1f}s" in line
    assert "in flight" in line


def test_timed_run_with_an_attack_has_both_columns(tmp_path: Path) -> None:
    """--attack wraps the client work; the timed run still knows its epochs."""
    args = ["--profiles", "lognormal", "--attack", "sign-flip", "--quiet"]
    result = invoke("run", *SMALL, *args, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    rows = metrics(tmp_path / "run")
    assert all("virtual_time" in r and "attack_success_rate" in r for r in rows)
