"""Client state at scale: the on-disk store, a million registered clients, and
10,000 clients in one round."""

from __future__ import annotations

import sqlite3
import tracemalloc
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import torch
from scale_fakes import TinyHandler, TinyWork

from blazefl import ConfigurationError
from blazefl.sim import (
    Executor,
    InlineExecutor,
    Simulation,
    ThreadExecutor,
    load_checkpoint,
    save_checkpoint,
)
from fakes import quick_processes

SEED = 11


def _sim(
    handler: TinyHandler,
    executor: Executor | None = None,
    path: Path | None = None,
    seed: int = SEED,
) -> Simulation[Any, Any]:
    return Simulation(
        handler,
        TinyWork(),
        executor=executor or InlineExecutor(),
        seed=seed,
        client_state_path=path,
    )


def _run(
    rounds: int,
    executor: Executor | None = None,
    path: Path | None = None,
    *,
    clients: int = 12,
    per_round: int = 5,
) -> tuple[TinyHandler, Simulation[Any, Any]]:
    handler = TinyHandler(clients, per_round, rounds)
    sim = _sim(handler, executor, path)
    sim.run_sync()
    return handler, sim


def _visits(sim: Simulation[Any, Any], clients: int = 12) -> dict[int, Any]:
    out = {}
    for cid in range(clients):
        state = sim.client_state(cid)
        if state is not None:
            out[cid] = (state.data["visits"], state.data["drift"], state.rng)
    return out


def _same_states(a: dict[int, Any], b: dict[int, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[c][0] == b[c][0] and torch.equal(a[c][1], b[c][1]) and a[c][2] == b[c][2]
        for c in a
    )


def _rows(path: Path) -> list[tuple[int, int]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT cid, version FROM states ORDER BY 1, 2").fetchall()


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_disk_store_is_bitwise_equal_to_memory(kind: str, tmp_path: Path) -> None:
    """Same model and same client states (RNG suites, tensors) either way."""
    reference, ref_sim = _run(6)
    executor = ThreadExecutor(2) if kind == "threads" else quick_processes(2)
    handler, sim = _run(6, executor, tmp_path / "clients.sqlite")
    assert torch.equal(handler.params, reference.params)
    assert _same_states(_visits(sim), _visits(ref_sim))
    assert len(sim._runner.states) == len(ref_sim._runner.states)


def test_disk_store_keeps_nothing_in_memory(tmp_path: Path) -> None:
    """Between rounds the states are in the file only."""
    _, sim = _run(4, path=tmp_path / "clients.sqlite")
    store = sim._runner.states
    assert not hasattr(store, "_states")
    assert len(store) == len({cid for cid, _ in _rows(tmp_path / "clients.sqlite")})


def test_resume_from_the_disk_store_after_a_crash_is_bitwise(tmp_path: Path) -> None:
    """Checkpoint after round 3, one more round commits, the process "dies":
    resuming from the checkpoint rolls the store back and ends bit for bit
    where the undisturbed run ends."""
    reference, ref_sim = _run(6)
    path = tmp_path / "clients.sqlite"
    handler = TinyHandler(12, 5, 6)
    sim = _sim(handler, path=path)
    sim.run_sync(rounds=3)
    save_checkpoint(tmp_path / "ckpt", sim.state_dict())
    sim.run_sync(rounds=1)  # committed to the store, never checkpointed
    assert max(v for _, v in _rows(path)) == 4

    resumed = TinyHandler(12, 5, 6)
    sim = _sim(resumed, path=path)
    sim.load_state_dict(load_checkpoint(tmp_path / "ckpt"))
    assert max(v for _, v in _rows(path)) == 3
    sim.run_sync()
    assert torch.equal(resumed.params, reference.params)
    assert _same_states(_visits(sim), _visits(ref_sim))


def test_the_previous_checkpoint_stays_resumable(tmp_path: Path) -> None:
    """If the newest checkpoint's write failed, the one before still works;
    the one before that is refused, naming the rounds that can be resumed."""
    reference, _ = _run(6)
    path = tmp_path / "clients.sqlite"
    sim = _sim(TinyHandler(12, 5, 6), path=path)
    sim.run_sync(rounds=1)
    first = sim.state_dict()
    sim.run_sync(rounds=1)
    second = sim.state_dict()
    sim.run_sync(rounds=1)
    sim.state_dict()  # round 3: the "failed" write

    resumed = TinyHandler(12, 5, 6)
    sim = _sim(resumed, path=path)
    sim.load_state_dict(second)
    sim.run_sync()
    assert torch.equal(resumed.params, reference.params)

    sim = _sim(TinyHandler(12, 5, 6), path=path)
    with pytest.raises(ConfigurationError, match=r"not to round 1"):
        sim.load_state_dict(first)


def test_rows_stay_bounded_with_a_checkpoint_every_round(tmp_path: Path) -> None:
    """At most three rows per client: two checkpoints' and the newest."""
    path = tmp_path / "clients.sqlite"
    sim = _sim(TinyHandler(6, 5, 12), path=path)

    async def main() -> None:
        async with sim:
            while not sim.handler.is_stopped():
                await sim.run_round()
                sim.state_dict()

    import anyio

    anyio.run(main)
    rows = _rows(path)
    per_client: dict[int, int] = {}
    for cid, _ in rows:
        per_client[cid] = per_client.get(cid, 0) + 1
    assert max(per_client.values()) <= 2
    assert len(per_client) == 6


def test_rows_stay_bounded_without_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite"
    _run(10, path=path, clients=6)
    rows = _rows(path)
    assert len(rows) == len({cid for cid, _ in rows}) == 6


def test_a_fresh_run_refuses_a_used_store(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite"
    _run(2, path=path)
    sim = _sim(TinyHandler(12, 5, 4), path=path)
    with pytest.raises(ConfigurationError, match=r"already holds \d+ client states"):
        sim.run_sync()


def test_a_store_of_another_seed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite"
    _run(1, path=path)
    sim = _sim(TinyHandler(12, 5, 4), path=path, seed=SEED + 1)
    with pytest.raises(ConfigurationError, match=rf"seed {SEED}, this run's seed"):
        sim.run_sync()


def test_a_checkpoint_of_another_store_is_refused(tmp_path: Path) -> None:
    sim = _sim(TinyHandler(12, 5, 4), path=tmp_path / "a.sqlite")
    sim.run_sync(rounds=1)
    state = sim.state_dict()
    other = _sim(TinyHandler(12, 5, 4), path=tmp_path / "b.sqlite")
    with pytest.raises(ConfigurationError, match=r"refers to client-state store"):
        other.load_state_dict(state)


def test_memory_and_disk_checkpoints_do_not_mix(tmp_path: Path) -> None:
    memory = _sim(TinyHandler(12, 5, 4))
    memory.run_sync(rounds=1)
    disk = _sim(TinyHandler(12, 5, 4), path=tmp_path / "c.sqlite")
    with pytest.raises(ConfigurationError, match=r"memory form"):
        disk.load_state_dict(memory.state_dict())
    disk.run_sync(rounds=1)
    with pytest.raises(ConfigurationError, match=r"pass client_state_path"):
        _sim(TinyHandler(12, 5, 4)).load_state_dict(disk.state_dict())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda tmp: tmp, r"is a directory"),
        (lambda tmp: tmp / "missing" / "c.sqlite", r"does not exist"),
    ],
)
def test_bad_store_paths_are_refused_at_construction(
    tmp_path: Path, make: Any, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        _sim(TinyHandler(12, 5, 4), path=make(tmp_path))


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigurationError, match=r"not a usable SQLite"):
        _sim(TinyHandler(12, 5, 4), path=path).run_sync()


def _traced_peak(clients: int, path: Path | None) -> tuple[int, int]:
    """Peak Python heap of 4 rounds sampling 100 of ``clients``; store size."""
    handler = TinyHandler(clients, 100, 4)
    sim = _sim(handler, path=path)
    tracemalloc.start()
    try:
        sim.run_sync()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, len(sim._runner.states)


def test_memory_does_not_grow_with_registered_clients(tmp_path: Path) -> None:
    """1,000,000 registered clients cost what 1,000 do (100 sampled a round)."""
    small, touched_small = _traced_peak(1_000, tmp_path / "small.sqlite")
    large, touched_large = _traced_peak(1_000_000, tmp_path / "large.sqlite")
    assert touched_small <= 400
    assert 390 <= touched_large <= 400
    assert large < 1.25 * small, (small, large)


@pytest.mark.slow
def test_ten_thousand_clients_in_one_round_on_threads_and_processes() -> None:
    """10,000 sampled clients complete on both, bit for bit alike."""
    on_threads, sim = _run(1, ThreadExecutor(2), clients=20_000, per_round=10_000)
    assert len(sim._runner.states) == 10_000
    on_processes, sim = _run(1, quick_processes(2), clients=20_000, per_round=10_000)
    assert len(sim._runner.states) == 10_000
    assert torch.equal(on_threads.params, on_processes.params)
