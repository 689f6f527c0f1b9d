"""A personalized federation with its client states on disk, to be killed.

``python personal_script.py NAME KIND STATE_FILE CHECKPOINT``: algorithm
NAME of `personal_fakes.PERSONALIZED` on executor KIND (threads or
processes), client states in the SQLite file STATE_FILE. It checkpoints
after round 2 to CHECKPOINT, trains round 3 (written to the state file past
the checkpoint), prints ``paused after round 3`` to stderr and waits to be
killed.
"""

from __future__ import annotations

import sys

import anyio
from personal_fakes import PERSONALIZED, simulation

from blazefl.sim import ProcessExecutor, ThreadExecutor, save_checkpoint

ROUNDS = 4


async def main(name: str, kind: str, state_file: str, checkpoint: str) -> None:
    executor = ThreadExecutor(2) if kind == "threads" else ProcessExecutor(2)
    sim = simulation(
        PERSONALIZED[name], executor, rounds=ROUNDS, client_state_path=state_file
    )
    async with sim:
        await sim.run_round()
        await sim.run_round()
        save_checkpoint(checkpoint, sim.state_dict())
        await sim.run_round()
        print("blazefl: paused after round 3", file=sys.stderr, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":  # worker processes re-import this file as __mp_main__
    anyio.run(main, *sys.argv[1:5])
