"""blazefl run --evaluate-every: the test-split evaluation on the user's schedule."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from cli_helpers import SMALL, final_params, invoke, metrics


def test_blazefl_run_evaluates_on_the_schedule(tmp_path: Path) -> None:
    """blazefl run --evaluate-every 2 leaves test metrics out of rounds 1 and 3."""
    every = tmp_path / "every-2"
    always = tmp_path / "always"
    assert invoke("run", *SMALL, "--evaluate-every", "2", "--out", every).exit_code == 0
    assert invoke("run", *SMALL, "--out", always).exit_code == 0
    rows = metrics(every)
    assert [r["test_acc"] is None for r in rows] == [True, False, True, False]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in metrics(always)]
    assert torch.equal(final_params(every), final_params(always))


def test_the_resume_help_names_every_setting_that_may_change() -> None:
    """--resume's help lists exactly the settings the table lets change."""
    from blazefl.cli._config import RUN_SETTINGS

    text = " ".join(invoke("run", "--help").output.split())
    text = re.sub(r"(--[a-z-]*-) ([a-z])", r"\1\2", text)  # click wraps at "-"
    start = text.index("Continue the run in this folder")
    listed = re.search(r"except ([^.]*)\.", text[start:])
    assert listed is not None
    named = set(re.findall(r"--[a-z-]+", listed.group(1)))
    free = {
        "--" + k.replace("_", "-")
        for k, s in RUN_SETTINGS.items()
        if s.resume != "fixed" and k != "out"
    }
    assert named == free
