"""``python tests/paused_cli.py K ARGS...``: ``blazefl ARGS...`` that pauses
after round K.

After committing (and, if due, checkpointing) round K the run prints
``paused after round K`` to stderr and waits for a signal, so a test can
interrupt or kill it at a known point. The pause is the ``after_round``
observer `blazefl.cli.main` takes; nothing else differs from ``blazefl``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import anyio


def pause_after(k: int) -> Callable[[int], Awaitable[None]]:
    """An ``after_round`` observer that sleeps forever once round ``k`` is done."""

    async def after_round(rounds_done: int) -> None:
        if rounds_done == k:
            print(f"blazefl: paused after round {k}", file=sys.stderr, flush=True)
            await anyio.sleep_forever()

    return after_round


if __name__ == "__main__":  # worker processes re-import this file as __mp_main__
    from blazefl.cli import main

    main(sys.argv[2:], after_round=pause_after(int(sys.argv[1])))
