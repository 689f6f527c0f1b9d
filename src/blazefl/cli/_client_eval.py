"""``blazefl run --evaluate-clients``: per-client evaluation in a run.

When it is on, every ``--evaluate-every`` rounds and after the last one the
run measures every client on its own test data (`Simulation.evaluate_clients`
on the run's executor) and writes the spread into that round's
``metrics.jsonl`` line (`COLUMNS`), the live table and the summary:

- ``client_acc_*``: each client's own model (personalized when the
  algorithm personalizes, else the global one);
- ``client_global_acc_*``: the global model on the same clients;
- ``heldout_acc_*``: the global model on each held-out LEAF user (LEAF's
  ``-t user`` mode: users only in the test files, who never train),
  measured in the coordinator's process, one user at a time;
- ``client_eval_failed``: clients whose evaluation failed (left out).

The per-client test data is LEAF's own split, or for every other data set a
seeded ``--client-test-fraction`` of each client's training rows
(`blazefl.data.split_client_tests`, default `DEFAULT_FRACTION`). That split
takes rows away from training, which is why per-client evaluation is off
unless asked for: the default run's numbers never change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from blazefl._client_stats import STAT_SUFFIXES
from blazefl._exceptions import ConfigurationError

if TYPE_CHECKING:
    from blazefl.cli._build import Built
    from blazefl.cli._config import RunConfig

__all__ = [
    "COLUMNS",
    "ClientColumns",
    "DEFAULT_FRACTION",
    "DEFAULT_THRESHOLD",
    "accuracy_threshold",
    "check_client_eval",
    "columns_of",
    "evaluate_round",
    "open_fraction",
]

#: ``--client-test-fraction`` when per-client evaluation is on and the data
#: set has no per-client test split of its own.
DEFAULT_FRACTION = 0.2
#: ``--client-acc-threshold``: ``client_acc_above`` counts clients at or above.
DEFAULT_THRESHOLD = 0.5

_PREFIXES = ("client_acc", "client_global_acc", "heldout_acc")


def columns_of(heldout: bool) -> tuple[str, ...]:
    """The ``metrics.jsonl`` keys per-client evaluation adds, in order."""
    prefixes = _PREFIXES if heldout else _PREFIXES[:2]
    keys = [f"{p}_{s}" for p in prefixes for s in STAT_SUFFIXES]
    return (*keys, "client_eval_failed")


#: Every key per-client evaluation may add (``heldout_acc_*`` only on a LEAF
#: data set with held-out users).
COLUMNS = columns_of(True)


class ClientColumns:
    """The per-client columns of each ``metrics.jsonl`` line, as they come.

    The line of an evaluated round waits (`of`) until the run hands over its
    evaluation (`evaluated`); when the run stops first (`over`), that line
    is not written at all, so the logs never hold a round without the
    columns an uninterrupted run gives it (``--resume`` runs it again).
    """

    def __init__(self) -> None:
        #: the columns per-client evaluation adds (empty: it is off)
        self.columns: tuple[str, ...] = ()
        #: whether the line after k rounds has an evaluation
        self.due: Callable[[int], bool] = lambda k: False
        self._evaluated: dict[int, dict[str, Any]] = {}
        self._over = False
        self._arrived = anyio.Event()

    def evaluated(self, rounds: int, columns: dict[str, Any]) -> None:
        """The evaluation after ``rounds`` rounds: its line may be written."""
        self._evaluated[rounds] = columns
        self._arrived.set()
        self._arrived = anyio.Event()

    def over(self) -> None:
        """No evaluation comes any more (the run is stopping)."""
        self._over = True
        self._arrived.set()

    async def of(self, rounds: int) -> dict[str, Any] | None:
        """The line after ``rounds`` rounds' columns; None: not to be written."""
        if not self.columns:
            return {}
        if not self.due(rounds):
            return dict.fromkeys(self.columns)
        while rounds not in self._evaluated and not self._over:
            await self._arrived.wait()
        return self._evaluated.pop(rounds, None)


def open_fraction(value: object) -> float:
    """A number strictly between 0 and 1."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < 1
    ):
        raise ValueError(f"must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def accuracy_threshold(value: object) -> float:
    """An accuracy in [0, 1]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= 1
    ):
        raise ValueError(f"must be an accuracy in [0, 1], got {value!r}")
    return float(value)


def check_client_eval(config: RunConfig, where: Callable[[str], str]) -> None:
    """The per-client evaluation settings, against the rest of the run."""
    from blazefl.cli._checks import LEAF_DATASETS

    if not config.evaluate_clients:
        for key in ("client_test_fraction", "client_acc_threshold"):
            if getattr(config, key) is not None:
                raise ConfigurationError(
                    f"{where(key)} applies to per-client evaluation: pass "
                    "--evaluate-clients too"
                )
        return
    if config.client_test_fraction is not None and config.dataset in LEAF_DATASETS:
        raise ConfigurationError(
            f"{where('client_test_fraction')} does not apply to --dataset "
            f"{config.dataset}: LEAF users have their own test data, which "
            "per-client evaluation uses"
        )
    if config.attack is not None:
        raise ConfigurationError(
            "--evaluate-clients does not combine with --attack (attacking "
            "clients' work has no per-client evaluation); leave one out"
        )
    if config.evaluate_every == 0:
        raise ConfigurationError(
            "--evaluate-clients runs every --evaluate-every rounds, which is 0 "
            "(never): pass --evaluate-every 1 or more"
        )
    if config.executor == "cohort":
        raise ConfigurationError(
            "--evaluate-clients runs one client per job, which --executor cohort "
            "does not: use inline, threads, processes or ray"
        )
    if config.mode == "async":
        raise ConfigurationError(
            "--evaluate-clients runs between synchronous rounds; --mode async "
            "has clients in flight at all times: use --mode sync"
        )


def fraction_of(config: RunConfig) -> float:
    return (
        DEFAULT_FRACTION
        if config.client_test_fraction is None
        else config.client_test_fraction
    )


def threshold_of(config: RunConfig) -> float:
    return (
        DEFAULT_THRESHOLD
        if config.client_acc_threshold is None
        else config.client_acc_threshold
    )


def _heldout_accuracies(built: Built) -> list[float]:
    """The global model's accuracy on each held-out LEAF user, in order."""
    from blazefl.core import deserialize_model
    from blazefl.data._loader import make_loader
    from blazefl.training import evaluate

    server, dataset = built.server, built.dataset
    deserialize_model(server.model, server.params)
    out = []
    for index in range(len(getattr(dataset, "heldout_users", ()))):
        users = dataset.heldout_user_dataset(index)  # type: ignore[attr-defined]
        if len(users) == 0:
            continue
        loader = make_loader(users, server.eval_batch_size, None, False)
        out.append(evaluate(server.model, loader, server.device)[1])
    return out


def has_heldout(built: Built) -> bool:
    """Whether the data set holds LEAF users that never train."""
    return bool(getattr(built.dataset, "heldout_users", ()))


async def evaluate_round(
    built: Built, config: RunConfig, folder: Path
) -> dict[str, Any]:
    """Per-client (and held-out) evaluation now: the row's added columns.

    Each client's accuracy goes to ``folder/client_accuracy.json`` (the
    latest evaluation only: the histogram of `blazefl plot`).
    """
    import anyio.to_thread

    from blazefl.cli._files import CLIENT_ACCURACY, write_json
    from blazefl.sim import accuracy_stats

    threshold = threshold_of(config)
    evaluation = await built.simulation.evaluate_clients(threshold=threshold)
    stats = evaluation.stats(threshold)
    per_client: dict[str, Any] = {
        "round": evaluation.round,
        "threshold": threshold,
        "client_acc": evaluation.own_accuracies(),
        "client_global_acc": evaluation.values("acc_global"),
    }
    if has_heldout(built):
        accuracies = await anyio.to_thread.run_sync(_heldout_accuracies, built)
        stats.update(
            accuracy_stats(accuracies, threshold=threshold, prefix="heldout_acc")
        )
        per_client["heldout_acc"] = accuracies
    await anyio.to_thread.run_sync(write_json, folder / CLIENT_ACCURACY, per_client)
    return {key: stats.get(key) for key in columns_of(has_heldout(built))}
