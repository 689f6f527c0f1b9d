"""Statistics over seeds: the summary of a sweep, or of any set of run folders.

Runs that share a setting (the same values of the grid keys) are the samples
of that setting; each run gives one value of each statistic, read from its
``metrics.jsonl``:

- ``final_acc``, ``final_loss``: test accuracy and loss of the last evaluated
  round;
- ``best_acc``: the best test accuracy of any round;
- ``rounds_to_target``: the first round (from 1) whose test accuracy reaches
  ``--target-acc`` (only with a target; runs that never reach it are left out
  of that statistic);
- ``seconds``: the sum of the rounds' wall-clock seconds.

Per setting and statistic: the mean, the sample standard deviation
(``ddof=1``) and a 95% confidence interval of the mean by Student's t,
``mean ± t(0.975, n-1) · s / √n`` (``scipy.stats.t``). With one sample the
standard deviation and interval are left empty. Failed runs are counted
(``n_failed``) and left out of the statistics.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blazefl._exceptions import MissingDependencyError

__all__ = [
    "STATISTICS",
    "RunRecord",
    "SettingSummary",
    "Stat",
    "csv_text",
    "markdown_text",
    "run_values",
    "summarize",
    "terminal_table",
]

STATISTICS = ("final_acc", "best_acc", "final_loss", "rounds_to_target", "seconds")
_MEASURES = ("mean", "std", "ci95_low", "ci95_high")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run folder: its setting, seed, whether it completed, its rows."""

    folder: Path
    point: Mapping[str, Any]
    seed: int | None
    complete: bool
    rows: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Stat:
    """Mean, standard deviation and Student's t 95% interval of n values."""

    n: int
    mean: float | None
    std: float | None
    ci95_low: float | None
    ci95_high: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        n = len(values)
        if n == 0:
            return cls(0, None, None, None, None)
        mean = math.fsum(values) / n
        if n == 1:
            return cls(1, mean, None, None, None)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        half = _t975(n - 1) * std / math.sqrt(n)
        return cls(n, mean, std, mean - half, mean + half)


def _t975(dof: int) -> float:
    try:
        from scipy.stats import t
    except ImportError as exc:
        raise MissingDependencyError(
            "confidence intervals", extra="cli", package="scipy"
        ) from exc
    return float(t.ppf(0.975, dof))


@dataclass(frozen=True, slots=True)
class SettingSummary:
    """One setting's runs and statistics; ``curves`` is test accuracy per round
    (one list per completed run)."""

    point: Mapping[str, Any]
    n_seeds: int
    n_failed: int
    stats: Mapping[str, Stat]
    curves: Sequence[Sequence[tuple[int, float]]] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.point.items()) or "all runs"


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return None


def _curve(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, float]]:
    return [
        (int(r["round"]), a)
        for r in rows
        if (a := _number(r.get("test_acc"))) is not None
    ]


def run_values(
    rows: Sequence[Mapping[str, Any]], target_acc: float | None
) -> dict[str, float | None]:
    """One run's value of each statistic (None where it has none)."""
    accs_all = _curve(rows)
    losses = [v for r in rows if (v := _number(r.get("test_loss"))) is not None]
    values: dict[str, float | None] = {
        "final_acc": accs_all[-1][1] if accs_all else None,
        "best_acc": max(a for _, a in accs_all) if accs_all else None,
        "final_loss": losses[-1] if losses else None,
        "rounds_to_target": None,
        "seconds": math.fsum(_number(r.get("seconds")) or 0.0 for r in rows),
    }
    if target_acc is not None:
        reached = [k for k, a in accs_all if a >= target_acc]
        values["rounds_to_target"] = float(reached[0]) if reached else None
    return values


def summarize(
    records: Sequence[RunRecord], target_acc: float | None
) -> list[SettingSummary]:
    """Group the records by setting (first-seen order) and compute the statistics."""
    groups: dict[tuple[tuple[str, Any], ...], list[RunRecord]] = {}
    for record in records:
        key = tuple((k, v) for k, v in record.point.items())
        groups.setdefault(key, []).append(record)
    summaries = []
    for key, members in groups.items():
        done = [m for m in members if m.complete]
        values = [run_values(m.rows, target_acc) for m in done]
        stats = {
            name: Stat.of([v for x in values if (v := x[name]) is not None])
            for name in STATISTICS
        }
        curves = [_curve(m.rows) for m in done]
        summaries.append(
            SettingSummary(
                dict(key), len(done), len(members) - len(done), stats, curves
            )
        )
    return summaries


def _statistics(target_acc: float | None) -> tuple[str, ...]:
    if target_acc is None:
        return tuple(s for s in STATISTICS if s != "rounds_to_target")
    return STATISTICS


def _cell(value: object) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def csv_text(
    summaries: Sequence[SettingSummary], keys: Sequence[str], target_acc: float | None
) -> str:
    """``summary.csv``: the grid keys, n_seeds, n_failed, then per statistic
    its mean, std, ci95_low and ci95_high (floats at full precision)."""
    stats = _statistics(target_acc)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [*keys, "n_seeds", "n_failed", *(f"{s}_{m}" for s in stats for m in _MEASURES)]
    )
    for s in summaries:
        row: list[object] = [s.point.get(k) for k in keys]
        row += [s.n_seeds, s.n_failed]
        for name in stats:
            stat = s.stats[name]
            row += [stat.mean, stat.std, stat.ci95_low, stat.ci95_high]
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _shown(stat: Stat, digits: int) -> str:
    if stat.mean is None:
        return "-"
    if stat.ci95_high is None:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {stat.ci95_high - stat.mean:.{digits}f}"


def _reached(s: SettingSummary, name: str) -> str:
    """A cell of the table; rounds_to_target says how many seeds reached it."""
    shown = _shown(s.stats[name], _DIGITS.get(name, 2))
    n = s.stats[name].n
    if name == "rounds_to_target" and n < s.n_seeds:
        shown += f" ({n} of {s.n_seeds})"
    return shown


_DIGITS = {"final_acc": 3, "best_acc": 3, "final_loss": 4, "rounds_to_target": 1}


def _table(
    summaries: Sequence[SettingSummary], keys: Sequence[str], target_acc: float | None
) -> tuple[list[str], list[list[str]]]:
    stats = _statistics(target_acc)
    header = [*keys, "n", "failed", *stats]
    body = [
        [
            *(str(s.point.get(k)) for k in keys),
            str(s.n_seeds),
            str(s.n_failed),
            *(_reached(s, name) for name in stats),
        ]
        for s in summaries
    ]
    return header, body


_NOTE = (
    "Mean ± half-width of the 95% confidence interval of the mean over seeds "
    "(Student's t: t(0.975, n-1) · s / √n, s the sample standard deviation)."
)


def markdown_text(
    summaries: Sequence[SettingSummary], keys: Sequence[str], target_acc: float | None
) -> str:
    """``summary.md``: the table, with the interval stated."""
    header, body = _table(summaries, keys, target_acc)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in body),
        "",
        _NOTE,
    ]
    if target_acc is not None:
        lines.append("")
        lines.append(
            f"rounds_to_target: first round with test accuracy >= {target_acc}, "
            "over the seeds that reached it ((k of n) when not all did)."
        )
    return "\n".join(lines) + "\n"


def terminal_table(
    summaries: Sequence[SettingSummary], keys: Sequence[str], target_acc: float | None
) -> str:
    """The table as aligned plain text."""
    header, body = _table(summaries, keys, target_acc)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
        for r in [header, *body]
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n" + _NOTE
