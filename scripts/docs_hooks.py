"""MkDocs hooks: pages from outside docs/ join the site, links to the rest go.

The site is built from docs/, but the guide links to the benchmarks' README
(and its result tables and chart), the changelog and the examples folder.
`on_files` adds the first three to the site (benchmarks/README.md becomes
benchmarks/index.md, with its results/ beside it; CHANGELOG.md becomes
changelog.md); `on_page_markdown` rewrites the guide's ``../`` links to them,
and turns any other link that leaves docs/ (the examples, source files) into
the repository path in code font, so the strict build checks every link that
stays.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
_EXTRA = {
    "benchmarks/README.md": "benchmarks/index.md",
    "CHANGELOG.md": "changelog.md",
}
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(\.\./([^)#\s]*)(#[^)\s]*)?\)")


def on_files(files: Files, config: Any) -> Files:
    for source, uri in _EXTRA.items():
        files.append(File.generated(config, uri, abs_src_path=str(ROOT / source)))
    for result in sorted((ROOT / "benchmarks" / "results").glob("*")):
        if result.suffix in (".md", ".png", ".json", ".csv"):
            uri = f"benchmarks/results/{result.name}"
            files.append(File.generated(config, uri, abs_src_path=str(result)))
    return files


def _rewrite(match: re.Match[str], depth: int) -> str:
    bang, text, target, anchor = match.groups()
    if target in _EXTRA:
        return f"{bang}[{text}]({'../' * depth}{_EXTRA[target]}{anchor or ''})"
    return f"{text} (`{target}` in the repository)"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    depth = page.file.src_uri.count("/")
    return _LINK.sub(lambda m: _rewrite(m, depth), markdown)
