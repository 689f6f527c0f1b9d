"""``blazefl run --dashboard`` serves the run while it trains; bad ports refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cli_helpers import PAUSED_CLI, invoke

ROOT = Path(__file__).resolve().parents[2]


def test_run_dashboard_serves_the_running_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    args = ["run", "--out", str(tmp_path / "run"), "--rounds", "3", "--clients", "4"]
    args += ["--epochs", "1", "--executor", "inline", "--dashboard", "-q"]
    proc = subprocess.Popen(
        [sys.executable, str(PAUSED_CLI), "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "paused after round 1" in line:
                break
        shown = [x for x in lines if x.startswith("dashboard: ")]
        assert shown, lines
        url = shown[0].split(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        runs = httpx.get(url + "api/runs", timeout=10).json()
        assert [r["status"]["state"] for r in runs] == ["running"]
        with httpx.stream("GET", url + "events?run=run", timeout=10) as response:
            text = ""
            for chunk in response.iter_text():
                text += chunk
                if "event: round_finished" in text:
                    break
        data = [x[6:] for x in text.splitlines() if x.startswith("data: ")]
        logged = (tmp_path / "run" / "events.jsonl").read_text().splitlines()
        assert [json.loads(d) for d in data] == [
            json.loads(x) for x in logged[: len(data)]
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT


def test_a_bad_dashboard_port_is_refused(tmp_path: Path) -> None:
    result = invoke(
        "run", "--dashboard", "--dashboard-port", "70000", "--out", tmp_path / "r"
    )
    assert result.exit_code == 2
    assert "--dashboard-port" in result.output
    assert "must be a port in [0, 65536)" in result.output
