"""examples/notebooks/quickstart.ipynb runs top to bottom in a real kernel."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples/notebooks/quickstart.ipynb"


def _outputs(nb: object) -> list[dict[str, object]]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_the_quickstart_notebook_trains_resumes_and_matches(tmp_path: Path) -> None:
    shutil.copy(NOTEBOOK, tmp_path)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    text = "".join(str(o.get("text", "")) for o in _outputs(nb))
    found = re.search(r"test accuracy by round: \[([^\]]*)\]", text)
    assert found, text
    accuracy = [float(a) for a in found.group(1).split(",")]
    assert len(accuracy) == 5
    assert accuracy[-1] > accuracy[0] + 0.1  # it learns
    assert "rounds after resuming: [6, 7, 8, 9, 10]" in text
    assert "resumed equals uninterrupted, bit for bit: True" in text
    # The live table is one HTML display, redrawn as rounds finish.
    tables = [
        o
        for o in _outputs(nb)
        if o.get("output_type") == "display_data"
        and "<table>" in str(o.get("data", {}).get("text/html", ""))  # type: ignore[union-attr]
    ]
    assert tables
    assert "<td>5</td>" in str(tables[0]["data"]["text/html"])  # type: ignore[index]
    assert any(
        o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
        for o in _outputs(nb)
    )  # type: ignore[operator]
    assert (tmp_path / "quickstart.ckpt").is_file()
