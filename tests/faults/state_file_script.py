"""A simulation that holds a client-state file, for the fault matrix.

``python state_file_script.py KIND STATE_FILE CHECKPOINT``: the matrix's
federation on executor KIND with its client states in STATE_FILE; after
round 1 it saves CHECKPOINT, prints ``paused after round 1`` to stderr and
waits (still running, so still holding the file) until it is killed.
"""

from __future__ import annotations

import sys

import anyio
from fault_fakes import SoftmaxWork, federation_handler, quick_processes

from blazefl.sim import (
    Executor,
    InlineExecutor,
    Simulation,
    ThreadExecutor,
    save_checkpoint,
)

SEED = 3  # the matrix's


def executor(kind: str) -> Executor:
    if kind == "inline":
        return InlineExecutor()
    if kind == "threads":
        return ThreadExecutor(2)
    return quick_processes(2, stop_grace=1.0)


async def main(kind: str, state_file: str, checkpoint: str) -> None:
    sim = Simulation(
        federation_handler(),
        SoftmaxWork(),
        executor=executor(kind),
        seed=SEED,
        client_state_path=state_file,
    )
    async with sim:
        await sim.run_round()
        save_checkpoint(checkpoint, sim.state_dict())
        print("blazefl: paused after round 1", file=sys.stderr, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":  # worker processes re-import this file as __mp_main__
    anyio.run(main, *sys.argv[1:4])
