"""Every Python block in docs/ runs, or says on its first line why it cannot.

A page's runnable blocks run in order in one fresh interpreter (later blocks
build on earlier ones, as a reader would type them), in an empty working
folder. A block that cannot run here (it needs files, a cluster, or is a
fragment) starts with ``# not run: <reason>``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_NOT_RUN = re.compile(r"# not run: \S")


def _blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


def _runnable(page: Path) -> list[str]:
    return [b for b in _blocks(page) if not b.startswith("# not run:")]


PAGES = sorted(DOCS.rglob("*.md"))


def test_every_skipped_block_gives_a_reason() -> None:
    for page in PAGES:
        for block in _blocks(page):
            if block.startswith("# not run"):
                first = block.splitlines()[0]
                assert _NOT_RUN.match(first), f"{page.name}: {first!r} gives no reason"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _runnable(p)], ids=lambda p: p.name
)
def test_the_pages_python_runs(page: Path, tmp_path: Path) -> None:
    source = "\n\n".join(_runnable(page))
    done = subprocess.run(
        [sys.executable, "-c", source],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{page.name}:\n{done.stderr[-3000:]}"
