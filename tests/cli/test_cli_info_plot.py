"""`blazefl info` and `blazefl plot`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli_helpers import invoke

PNG = b"\x89PNG\r\n\x1a\n"


def test_info_prints_versions_build_threads_and_executors() -> None:
    """`blazefl info` lists versions, the Python build, threads, CUDA, executors."""
    result = invoke("info")
    assert result.exit_code == 0, result.output
    keys = {line.split()[0] for line in result.stdout.splitlines()}
    assert keys >= {
        "blazefl",
        "python",
        "torch",
        "numpy",
        "anyio",
        "structlog",
        "free_threaded_build",
        "gil_enabled",
        "torch_threads",
        "cpu_count",
        "cuda_available",
        "executors",
    }
    assert "inline, threads, processes" in result.stdout


def test_info_json_is_machine_readable() -> None:
    """`blazefl info --json` is one JSON object."""
    data = json.loads(invoke("info", "--json").stdout)
    assert isinstance(data["free_threaded_build"], bool)
    assert data["torch_threads"] >= 1


def test_plot_redraws_the_png(tmp_path: Path, reference: Path) -> None:
    """`blazefl plot DIR` renders DIR/metrics.png from metrics.jsonl."""
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    (folder / "metrics.png").unlink()
    result = invoke("plot", folder)
    assert result.exit_code == 0, result.output
    assert (folder / "metrics.png").read_bytes().startswith(PNG)

    other = tmp_path / "elsewhere.png"
    assert invoke("plot", folder, "--output", other).exit_code == 0
    assert other.read_bytes().startswith(PNG)


def test_plot_of_a_folder_without_metrics_fails(tmp_path: Path) -> None:
    """A folder that is not a run folder is an error, not an empty plot."""
    result = invoke("plot", tmp_path)
    assert result.exit_code == 1
    assert "holds no metrics.jsonl" in result.stderr
