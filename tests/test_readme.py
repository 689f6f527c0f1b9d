"""The README's sample output is what its command prints (timings aside)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"

# The machine the README's figures were printed on (its own words).
MACHINE = re.compile(
    r"torch (?P<torch>\S+) with CPU capability (?P<cap>\w+), "
    r"Python (?P<py>\d+(?:\.\d+)*)"
)
# The CPU the README's figures are from (its main block): another CPU of the
# same description may pick other kernels and round differently.
CPU = "AMD EPYC"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else "unknown"


def _other_cpu() -> str | None:
    """None on the README's CPU, else why its figures need not match here."""
    model = _cpu_model()
    if model.startswith(CPU):
        return None
    return (
        f"the README's figures are from an {CPU}; this CPU ({model!r}) may "
        "pick other kernels and round differently, and the README has no "
        "figures for it"
    )


def _sample() -> list[str]:
    text = README.read_text()
    block = text[text.index("```\nfedavg on synthetic") + 4 :]
    return block[: block.index("```")].splitlines()


def _masked(line: str) -> str:
    line = re.sub(r"\| \d+\.\d+s$", "| <t>", line)
    line = re.sub(r" in \d+\.\d+s;", " in <t>;", line)
    return re.sub(r"run folder: \S+", "run folder: <dir>", line)


def _reference_machine() -> str | None:
    """None on a machine of the README's description, else why not."""
    match = MACHINE.search(" ".join(README.read_text().split()))
    assert match is not None, "the README names the machine its figures are from"
    here = (torch.__version__, torch.backends.cpu.get_cpu_capability())
    want = (match["torch"], match["cap"])
    if here != want or not sys.version.startswith(match["py"]):
        return (
            f"the README's figures are from torch {want[0]} ({want[1]}), Python "
            f"{match['py']}; this is torch {here[0]} ({here[1]}), Python "
            f"{sys.version.split()[0]}: float rounding may differ in the last bits"
        )
    return None


@pytest.mark.slow
def test_readme_output_is_what_blazefl_run_prints(tmp_path: Path) -> None:
    """`blazefl run` (what scripts/run.sh runs) prints the README's lines."""
    reason = _reference_machine() or _other_cpu()
    if reason is not None:
        pytest.skip(reason)
    done = subprocess.run(
        [sys.executable, "-m", "blazefl.cli", "run", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    printed = [_masked(line) for line in done.stdout.splitlines()]
    sample = [_masked(line) for line in _sample()]
    head, tail = sample[: sample.index("...")], sample[sample.index("...") + 1 :]
    assert printed[: len(head)] == head
    assert printed[-len(tail) :] == tail
