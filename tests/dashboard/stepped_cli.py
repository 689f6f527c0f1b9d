"""``python stepped_cli.py GO FAIL_ROUND FAIL_CID ARGS...``: blazefl, in steps.

After committing round k the run waits until the file GO holds a number >= k,
so a test decides when each round starts; in round FAIL_ROUND (0-based) the
client FAIL_CID raises, which fails that round (use ``--executor threads`` or
``inline``: the failure is patched into this process). Nothing else differs
from ``blazefl``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio


def main() -> None:
    go, fail_round, fail_cid = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

    from blazefl.algorithms import FederatedClient
    from blazefl.cli import main as blazefl

    honest = FederatedClient.__call__

    def call(self: Any, ctx: Any, broadcast: Any) -> Any:
        if ctx.round == fail_round and ctx.cid == fail_cid:
            raise RuntimeError("injected failure")
        return honest(self, ctx, broadcast)

    FederatedClient.__call__ = call  # type: ignore[method-assign]

    async def after_round(rounds_done: int) -> None:
        print(f"stepped: round {rounds_done} done", file=sys.stderr, flush=True)
        signal = anyio.Path(go)
        while True:  # a file the test writes: polled, there is nothing to wait on
            if (
                await signal.exists()
                and int(await signal.read_text() or 0) >= rounds_done
            ):
                return
            await anyio.sleep(0.05)

    blazefl(sys.argv[4:], after_round=after_round)


if __name__ == "__main__":
    main()
