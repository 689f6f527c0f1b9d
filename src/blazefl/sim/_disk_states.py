"""`DiskStateStore`: client states in a SQLite file, for a million clients.

It holds nothing in memory between rounds, so memory stays proportional to the
clients of one round after any number of distinct clients took part; a round's
states are committed in one transaction, so a round is never half-applied.
See `blazefl.sim._states` for the store interface and the in-memory default.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import torch

from blazefl._exceptions import ConfigurationError
from blazefl.reproducibility import RNGSuiteState
from blazefl.sim._context import ClientState
from blazefl.sim._states import ClientStateStore

__all__ = ["DiskStateStore"]

_DISK_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS states (
    cid INTEGER NOT NULL,
    version INTEGER NOT NULL,
    rng TEXT NOT NULL,
    data BLOB,
    PRIMARY KEY (cid, version)
) WITHOUT ROWID;
"""


def _encode_data(data: dict[str, Any]) -> bytes | None:
    if not data:
        return None
    buffer = BytesIO()
    torch.save(data, buffer)
    return buffer.getvalue()


def _decode_data(blob: bytes | None) -> dict[str, Any]:
    if blob is None:
        return {}
    data = torch.load(BytesIO(blob), weights_only=True)
    if not isinstance(data, dict):
        raise ConfigurationError("a client state in the on-disk store is corrupt")
    return data


class DiskStateStore(ClientStateStore):
    """Client states in a SQLite file: memory independent of the federation.

    A committed state is a row ``(cid, version)`` where ``version`` is the
    round count it was committed at. Rows are kept only where they can still
    be read: each client's newest row, plus, for the last two checkpoints
    (`state_dict` calls), the row that was newest at that checkpoint. That is
    what lets `load_state_dict` roll the store back to either of those two
    checkpoints (e.g. after a crash, or when the newest checkpoint's write
    failed), and nothing older: loading an older checkpoint is refused.

    The file is tied to one run: it records the seed and a random store id
    that checkpoints carry, and a fresh simulation refuses a file that
    already holds states (resume with `load_state_dict`, or pick a new path).
    """

    def __init__(self, seed: int, path: str | os.PathLike[str]) -> None:
        super().__init__(seed)
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigurationError(
                f"client_state_path {str(self.path)!r} is a directory; expected "
                "a file path for the SQLite client-state store"
            )
        if not self.path.parent.is_dir():
            raise ConfigurationError(
                f"client_state_path {str(self.path)!r}: the folder "
                f"{str(self.path.parent)!r} does not exist"
            )
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._checked = False  # set once the file is known to belong to this run

    # -- connection ----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                db.close()
                raise ConfigurationError(
                    f"client_state_path {str(self.path)!r} is not a usable SQLite "
                    f"client-state store: {exc}"
                ) from None
            self._db = db
            # A store used outside a running simulation (state_dict() between
            # runs, client_state()) is closed when it is collected, not leaked.
            self._finalizer = weakref.finalize(self, db.close)
            meta = self._meta()
            if not meta:
                with self._transaction() as tx:
                    tx.executemany(
                        "INSERT INTO meta VALUES (?, ?)",
                        [
                            ("format", str(_DISK_FORMAT)),
                            ("seed", str(self._seed)),
                            ("store_id", uuid.uuid4().hex),
                            ("anchors", "[]"),
                        ],
                    )
            elif meta.get("format") != str(_DISK_FORMAT):
                raise ConfigurationError(
                    f"client-state store {str(self.path)!r} has format "
                    f"{meta.get('format')!r}; this blazefl reads {_DISK_FORMAT}"
                )
            elif meta.get("seed") != str(self._seed):
                raise ConfigurationError(
                    f"client-state store {str(self.path)!r} holds states of seed "
                    f"{meta.get('seed')}, this run's seed is {self._seed}"
                )
        return self._db

    def _meta(self) -> dict[str, str]:
        assert self._db is not None
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _transaction(self) -> _Transaction:
        assert self._db is not None
        return _Transaction(self._db)

    def _ready(self) -> sqlite3.Connection:
        """The connection, refusing a file left by another (or an earlier) run."""
        db = self._conn()
        if not self._checked:
            (rows,) = db.execute("SELECT count(*) FROM states").fetchone()
            if rows:
                raise ConfigurationError(
                    f"client-state store {str(self.path)!r} already holds {rows} "
                    "client states from an earlier run; resume it by loading that "
                    "run's checkpoint (load_state_dict), or use a new path"
                )
            self._checked = True
        return db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._finalizer()  # closes the connection, once
                self._db = None

    # -- reading and committing ------------------------------------------------

    def get_many(self, cids: Sequence[int]) -> list[ClientState]:
        with self._lock:
            db = self._ready()
            found: dict[int, ClientState] = {}
            for start in range(0, len(cids), 500):
                chunk = list(cids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT cid, rng, data FROM states WHERE cid IN ({marks}) "
                    "ORDER BY cid, version",
                    chunk,
                ).fetchall()
                for cid, rng, data in rows:  # the newest version comes last
                    found[cid] = ClientState(
                        RNGSuiteState.from_dict(json.loads(rng)), _decode_data(data)
                    )
            return [
                state if (state := found.get(cid)) is not None else self.fresh(cid)
                for cid in cids
            ]

    def commit_round(
        self, rounds: int, states: Iterable[tuple[int, ClientState]]
    ) -> None:
        rows = [
            (cid, rounds, json.dumps(state.rng.to_dict()), _encode_data(state.data))
            for cid, state in states
        ]
        with self._lock:
            db = self._ready()
            anchors = json.loads(self._meta()["anchors"])
            newest_anchor = max(anchors, default=-1)
            with _Transaction(db) as tx:
                # A client's rows newer than every checkpoint are superseded.
                tx.executemany(
                    "DELETE FROM states WHERE cid = ? AND version > ?",
                    [(row[0], newest_anchor) for row in rows],
                )
                tx.executemany("INSERT INTO states VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            (n,) = (
                self._conn()
                .execute("SELECT count(DISTINCT cid) FROM states")
                .fetchone()
            )
            return int(n)

    def __contains__(self, cid: object) -> bool:
        if isinstance(cid, bool) or not isinstance(cid, int):
            return False
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT 1 FROM states WHERE cid = ? LIMIT 1", (cid,))
                .fetchone()
            )
            return row is not None

    # -- checkpoints -------------------------------------------------------------

    def state_dict(self, rounds: int) -> dict[str, Any]:
        """A reference to the store at ``rounds`` (the states stay in the file)."""
        with self._lock:
            db = self._ready()
            meta = self._meta()
            old = json.loads(meta["anchors"])
            anchors = [a for a in old if a < rounds][-1:]
            anchors.append(rounds)
            with _Transaction(db) as tx:
                tx.execute(
                    "UPDATE meta SET value = ? WHERE key = 'anchors'",
                    (json.dumps(anchors),),
                )
                # Keep, per client and per checkpoint interval, only the newest
                # row: older ones can no longer be read or rolled back to.
                tx.execute(
                    """
                    DELETE FROM states WHERE (cid, version) IN (
                        SELECT cid, version FROM (
                            SELECT cid, version, row_number() OVER (
                                PARTITION BY cid,
                                    CASE WHEN version <= ? THEN 0 ELSE 1 END
                                ORDER BY version DESC) AS newer
                            FROM states WHERE cid IN (
                                SELECT cid FROM states WHERE version > ?)
                        ) WHERE newer > 1
                    )
                    """,
                    # Only clients touched since the oldest checkpoint still
                    # kept can have more than one row per interval.
                    (anchors[0], min(old, default=-1)),
                )
            return {
                "seed": self._seed,
                "store": "disk",
                "path": str(self.path),
                "store_id": meta["store_id"],
                "rounds": rounds,
            }

    def load_state_dict(self, state: dict[str, Any], rounds: int) -> None:
        self._check_seed(state.get("seed"))
        if state.get("store") != "disk":
            raise ConfigurationError(
                "the checkpoint holds its client states in memory form, but this "
                f"simulation keeps them on disk at {str(self.path)!r}; resume "
                "without client_state_path"
            )
        with self._lock:
            db = self._conn()
            meta = self._meta()
            if state.get("store_id") != meta["store_id"]:
                raise ConfigurationError(
                    f"the checkpoint refers to client-state store "
                    f"{state.get('store_id')!r} (at {state.get('path')!r}), but "
                    f"{str(self.path)!r} is store {meta['store_id']!r}"
                )
            anchors = json.loads(meta["anchors"])
            if rounds not in anchors:
                raise ConfigurationError(
                    f"client-state store {str(self.path)!r} can return to the "
                    f"checkpoints after rounds {anchors}, not to round {rounds}: "
                    "only the two most recent checkpoints of an on-disk store "
                    "can be resumed"
                )
            with _Transaction(db) as tx:
                tx.execute("DELETE FROM states WHERE version > ?", (rounds,))
                tx.execute(
                    "UPDATE meta SET value = ? WHERE key = 'anchors'",
                    (json.dumps([a for a in anchors if a <= rounds]),),
                )
            self._checked = True


class _Transaction:
    """``with _Transaction(db) as cur:`` runs the block in one SQLite transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
