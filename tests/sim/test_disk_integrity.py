"""The on-disk client-state store: claimed by one run, every row checked, and
a checkpoint checked against the file it refers to."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
import torch
from scale_fakes import TinyHandler, TinyWork

from blazefl import ConfigurationError, IntegrityError, InUseError
from blazefl.sim import InlineExecutor, Simulation

SEED = 11


def _sim(path: Path, work: TinyWork | None = None) -> Simulation[Any, Any]:
    return Simulation(
        TinyHandler(12, 5, 6),
        work or TinyWork(),
        executor=InlineExecutor(),
        seed=SEED,
        client_state_path=path,
    )


def _sql(path: Path, query: str, *args: Any) -> list[Any]:
    with closing(sqlite3.connect(path)) as db, db:
        return db.execute(query, args).fetchall()


def _newest_row(path: Path) -> tuple[int, int, str]:
    """(cid, version, rng) of one client's newest state."""
    ((cid, version, rng),) = _sql(
        path,
        "SELECT cid, max(version), rng FROM states GROUP BY cid ORDER BY cid LIMIT 1",
    )
    return cid, version, rng


def _in_use(path: Path) -> str:
    return (
        rf"^client_state_path '{re.escape(str(path))}' is in use by another run: "
        rf"this process \(pid {os.getpid()}, through another object\), "
        r"since \S+ \(.*\); one run at a time may use a client-state file"
    )


def test_a_second_simulation_on_a_running_file_is_refused(tmp_path: Path) -> None:
    """While one simulation runs, a second one on its file fails at
    construction, naming the file and the holder; once it ends, it is free."""
    path = tmp_path / "clients.sqlite"
    first = _sim(path)

    async def main() -> None:
        async with first:
            await first.run_round()
            with pytest.raises(InUseError, match=_in_use(path)):
                _sim(path)
            await first.run_round()

    anyio.run(main)
    assert first.round == 2
    second = _sim(path)  # the run ended: the file is free
    second.load_state_dict(first.state_dict())
    second.run_sync(rounds=1)
    assert second.round == 3


def test_a_claimed_file_stops_start_before_any_worker(tmp_path: Path) -> None:
    """A simulation built before another claimed the file fails at start()."""
    path = tmp_path / "clients.sqlite"
    early, holder = _sim(path), _sim(path)

    async def main() -> None:
        async with holder:
            with pytest.raises(InUseError, match=_in_use(path)):
                await early.start()
            assert not early.running

    anyio.run(main)


def test_calls_outside_a_run_claim_the_file_only_while_they_last(
    tmp_path: Path,
) -> None:
    """state_dict() and client_state() after a run do not keep the file."""
    path = tmp_path / "clients.sqlite"
    sim = _sim(path)
    sim.run_sync(rounds=1)
    state = sim.state_dict()
    assert any(sim.client_state(cid) is not None for cid in range(12))
    other = _sim(path)
    other.load_state_dict(state)


def test_the_lock_file_names_its_holder(tmp_path: Path) -> None:
    """While a run holds the file, its lock file records pid, host, start."""
    path = tmp_path / "clients.sqlite"
    sim = _sim(path)

    async def main() -> dict[str, Any]:
        async with sim:
            return dict(json.loads((tmp_path / "clients.sqlite.lock").read_text()))

    record = anyio.run(main)
    assert record["pid"] == os.getpid()
    assert record["host"] == socket.gethostname()
    assert record["since"]
    assert record["command"]


def test_a_flipped_digit_in_a_stored_rng_state_is_refused(tmp_path: Path) -> None:
    """A changed digit of a stored RNG stream is named, file and client,
    instead of being used."""
    path = tmp_path / "clients.sqlite"
    sim = _sim(path)
    sim.run_sync(rounds=2)
    state = sim.state_dict()
    cid, version, rng = _newest_row(path)
    data = json.loads(rng)
    internal = data["python"][1]
    internal[7] = internal[7] ^ 1  # one bit of one word of the Mersenne Twister
    _sql(
        path,
        "UPDATE states SET rng = ? WHERE cid = ? AND version = ?",
        json.dumps(data),
        cid,
        version,
    )
    message = (
        rf"^client-state store '{re.escape(str(path))}': the stored state of "
        rf"client {cid} \(committed after round {version}\) is damaged: it fails "
        r"its digest;"
    )
    with pytest.raises(IntegrityError, match=message):
        sim.client_state(cid)
    resumed = _sim(path)
    resumed.load_state_dict(state)  # the digests themselves are intact
    with pytest.raises(IntegrityError, match=message):
        resumed._runner.states.get_many([cid])


def test_a_row_moved_to_another_client_is_refused(tmp_path: Path) -> None:
    """The digest covers the client id: a state copied onto another client
    fails it even though its bytes are a valid state."""
    path = tmp_path / "clients.sqlite"
    sim = _sim(path)
    sim.run_sync(rounds=2)
    rows = _sql(path, "SELECT cid, version FROM states ORDER BY cid")
    (a, va), (b, _) = rows[0], rows[1]
    _sql(path, "DELETE FROM states WHERE cid = ?", b)
    _sql(
        path,
        "INSERT INTO states SELECT ?, version, rng, data, digest FROM states "
        "WHERE cid = ? AND version = ?",
        b,
        a,
        va,
    )
    with pytest.raises(IntegrityError, match=rf"state of client {b} .* fails"):
        sim.client_state(b)


def test_resume_refuses_a_file_with_a_deleted_state(tmp_path: Path) -> None:
    """A client state deleted since the checkpoint would silently restart that
    client; the resume's check of the file against the checkpoint refuses it
    and leaves the file as it was."""
    path = tmp_path / "clients.sqlite"
    sim = _sim(path)
    sim.run_sync(rounds=2)
    state = sim.state_dict()
    cid, _, _ = _newest_row(path)
    _sql(path, "DELETE FROM states WHERE cid = ?", cid)
    rows = _sql(path, "SELECT cid, version FROM states")
    clients = len({c for c, _ in rows})
    message = (
        rf"client-state store '{re.escape(str(path))}' does not hold the states "
        rf"the checkpoint after round 2 refers to: it recorded {clients + 1} client "
        rf"states, digest sum [0-9a-f]{{32}}, the file holds {clients} client states"
    )
    with pytest.raises(IntegrityError, match=message):
        _sim(path).load_state_dict(state)
    assert _sql(path, "SELECT cid, version FROM states") == rows


def test_resume_refuses_a_copy_that_went_another_way(tmp_path: Path) -> None:
    """Two copies of one store (same store id, same checkpoint rounds) that
    diverged: a checkpoint of one is refused with the other's file."""
    path, copy = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    sim = _sim(path)
    sim.run_sync(rounds=1)
    first = sim.state_dict()
    shutil.copyfile(path, copy)  # closed: no WAL beside it
    sim.run_sync(rounds=1)
    ours = sim.state_dict()
    theirs = _sim(copy, TinyWork(steps=3))
    theirs.load_state_dict(first)
    theirs.run_sync(rounds=1)
    theirs.state_dict()
    message = (
        rf"client-state store '{re.escape(str(copy))}' is not the file the "
        r"checkpoint after round 2 was taken with: the checkpoint records \d+ "
        r"client states, digest sum [0-9a-f]{32}, the file's record of that "
        r"checkpoint \d+ client states, digest sum [0-9a-f]{32}; use the state "
        r"file that was saved with this checkpoint"
    )
    with pytest.raises(IntegrityError, match=message):
        _sim(copy).load_state_dict(ours)
    _sim(path).load_state_dict(ours)  # its own file is fine


def test_a_checkpoint_without_a_summary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite"
    sim = _sim(path)
    sim.run_sync(rounds=1)
    state = sim.state_dict()
    del state["clients"]["summary"]
    with pytest.raises(IntegrityError, match=r"has no valid summary"):
        _sim(path).load_state_dict(state)


def test_a_store_of_the_previous_format_is_refused(tmp_path: Path) -> None:
    """Format 1 files (no digests) are named as such, not read unchecked."""
    path = tmp_path / "clients.sqlite"
    _sql(path, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    _sql(path, "INSERT INTO meta VALUES ('format', '1')")
    with pytest.raises(
        ConfigurationError, match=r"has format '1'; this blazefl reads 2"
    ):
        _sim(path).run_sync(rounds=1)


def test_the_summary_follows_every_commit_and_rollback(tmp_path: Path) -> None:
    """The incrementally kept summary equals one recomputed from the rows,
    after commits, checkpoints, and a rollback to the previous checkpoint."""
    path = tmp_path / "clients.sqlite"
    sim = _sim(path)
    sim.run_sync(rounds=2)
    second = sim.state_dict()
    sim.run_sync(rounds=1)
    sim.state_dict()
    sim.run_sync(rounds=1)  # committed, never checkpointed
    resumed = _sim(path)
    resumed.load_state_dict(second)  # recomputes and compares
    resumed.run_sync()
    final = resumed.state_dict()
    again = _sim(path)
    again.load_state_dict(final)
    reference = Simulation(
        TinyHandler(12, 5, 6), TinyWork(), executor=InlineExecutor(), seed=SEED
    )
    reference.run_sync()
    assert torch.equal(resumed.handler.params, reference.handler.params)
