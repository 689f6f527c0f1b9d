"""`DiskStateStore`: client states in a SQLite file, for a million clients.

It holds nothing in memory between rounds, so memory stays proportional to the
clients of one round after any number of distinct clients took part; a round's
states are committed in one transaction, so a round is never half-applied.
The file is claimed by one run at a time (`blazefl._claims`), every row
carries a digest checked when it is read, and a checkpoint records a summary
of the rows it refers to, checked on resume (`blazefl.sim._disk_format`).
See `blazefl.sim._states` for the store interface and the in-memory default.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from blazefl._claims import Claim, claim
from blazefl._exceptions import ConfigurationError, IntegrityError
from blazefl.sim._context import ClientState
from blazefl.sim._disk_format import (
    DISK_FORMAT,
    NEWEST,
    SCHEMA,
    Summary,
    Transaction,
    anchors_of,
    decode_row,
    encode_row,
    has_meta,
    read_meta,
    set_meta,
)
from blazefl.sim._states import ClientStateStore

__all__ = ["DiskStateStore"]

_CHUNK = 500  # ids per query: well under SQLite's limit of bound parameters


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
    While a simulation runs (`open` to `close`) it holds the file's claim;
    outside a run each call claims it for its own duration, so a second
    store on the same file fails with `InUseError` naming the holder.
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
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._claim: Claim | None = None
        self._held = False  # between open() and close()
        self._key = b""
        self._checked = False  # set once the file is known to belong to this run
        self._claimed().release()  # in use elsewhere: refuse now, not at round 1

    # -- the claim and the connection -------------------------------------------

    def _claimed(self) -> Claim:
        return claim(
            self.lock_path,
            f"client_state_path {str(self.path)!r}",
            "one run at a time may use a client-state file: wait for that run "
            "to end or stop it, or use another path",
        )

    def open(self) -> None:
        """Claim the file and keep it open until `close` (a simulation's run)."""
        with self._lock:
            self._held = True
            self._connect()

    def close(self) -> None:
        with self._lock:
            self._held = False
            self._disconnect()

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """The open connection, or one claimed and opened for this call only."""
        with self._lock:
            db = self._connect()
            try:
                yield db
            finally:
                if not self._held:
                    self._disconnect()

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self._claim = self._claimed()
        try:
            self._db = self._open_file()
        except BaseException:
            self._claim.release()
            raise
        return self._db

    def _disconnect(self) -> None:
        if self._db is not None:
            self._finalizer()  # closes the connection, once
            self._db = None
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def _open_file(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # A store used outside a running simulation and never closed is closed
        # when it is collected, not leaked.
        self._finalizer = weakref.finalize(self, db.close)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            meta = read_meta(db) if has_meta(db) else {}
            if meta and meta.get("format") != str(DISK_FORMAT):
                raise ConfigurationError(
                    f"client-state store {str(self.path)!r} has format "
                    f"{meta.get('format')!r}; this blazefl reads {DISK_FORMAT}"
                )
            db.executescript(SCHEMA)
            if not meta:
                meta = {
                    "format": str(DISK_FORMAT),
                    "seed": str(self._seed),
                    "store_id": uuid.uuid4().hex,
                    "anchors": "[]",
                    "live": json.dumps(Summary().to_json()),
                }
                with Transaction(db) as tx:
                    tx.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        except sqlite3.DatabaseError as exc:
            self._finalizer()
            raise ConfigurationError(
                f"client_state_path {str(self.path)!r} is not a usable SQLite "
                f"client-state store: {exc}"
            ) from None
        except BaseException:
            self._finalizer()
            raise
        if meta.get("seed") != str(self._seed):
            self._finalizer()
            raise ConfigurationError(
                f"client-state store {str(self.path)!r} holds states of seed "
                f"{meta.get('seed')}, this run's seed is {self._seed}"
            )
        self._key = meta["store_id"].encode("ascii")
        return db

    def _ready(self, db: sqlite3.Connection) -> sqlite3.Connection:
        """``db``, refusing a file left by another (or an earlier) run."""
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

    # -- reading and committing ------------------------------------------------

    def get_many(self, cids: Sequence[int]) -> list[ClientState]:
        with self._session() as db:
            self._ready(db)
            found: dict[int, ClientState] = {}
            for chunk in _chunks(cids):
                where = f"WHERE cid IN ({','.join('?' * len(chunk))})"
                columns = "cid, version, rng, data, digest"
                query = NEWEST.format(columns=columns, where=where)
                for cid, version, rng, data, digest, _ in db.execute(query, chunk):
                    row = (cid, version, rng, data, digest)
                    found[cid] = decode_row(self._key, row, str(self.path))
            return [
                state if (state := found.get(cid)) is not None else self.fresh(cid)
                for cid in cids
            ]

    def commit_round(
        self, rounds: int, states: Iterable[tuple[int, ClientState]]
    ) -> None:
        with self._session() as db:
            self._ready(db)
            rows = [encode_row(self._key, cid, rounds, s) for cid, s in states]
            meta = read_meta(db)
            newest_anchor = max((a for a, _ in anchors_of(meta)), default=-1)
            live = Summary.from_json(json.loads(meta["live"]))
            with Transaction(db) as tx:
                superseded: dict[int, bytes] = {}
                for chunk in _chunks([row[0] for row in rows]):
                    where = f"WHERE cid IN ({','.join('?' * len(chunk))})"
                    query = NEWEST.format(columns="cid, digest", where=where)
                    superseded.update((c, d) for c, d, _ in tx.execute(query, chunk))
                for cid, *_, digest in rows:
                    old = superseded.get(cid)
                    live = (
                        live.add(digest) if old is None else live.replace(old, digest)
                    )
                # A client's rows newer than every checkpoint are superseded.
                tx.executemany(
                    "DELETE FROM states WHERE cid = ? AND version > ?",
                    [(row[0], newest_anchor) for row in rows],
                )
                tx.executemany("INSERT INTO states VALUES (?, ?, ?, ?, ?)", rows)
                set_meta(tx, "live", live.to_json())

    def __len__(self) -> int:
        with self._session() as db:
            (n,) = db.execute("SELECT count(DISTINCT cid) FROM states").fetchone()
            return int(n)

    def __contains__(self, cid: object) -> bool:
        if isinstance(cid, bool) or not isinstance(cid, int):
            return False
        with self._session() as db:
            row = db.execute(
                "SELECT 1 FROM states WHERE cid = ? LIMIT 1", (cid,)
            ).fetchone()
            return row is not None

    # -- checkpoints -------------------------------------------------------------

    def state_dict(self, rounds: int) -> dict[str, Any]:
        """A reference to the store at ``rounds`` (the states stay in the file),
        with the summary of the rows it refers to."""
        with self._session() as db:
            self._ready(db)
            meta = read_meta(db)
            old = anchors_of(meta)
            live = Summary.from_json(json.loads(meta["live"]))
            anchors = [(a, s) for a, s in old if a < rounds][-1:]
            anchors.append((rounds, live))
            with Transaction(db) as tx:
                set_meta(tx, "anchors", [[a, s.to_json()] for a, s in anchors])
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
                    (anchors[0][0], min((a for a, _ in old), default=-1)),
                )
            return {
                "seed": self._seed,
                "store": "disk",
                "path": str(self.path),
                "store_id": meta["store_id"],
                "rounds": rounds,
                "summary": live.to_json(),
            }

    def load_state_dict(self, state: dict[str, Any], rounds: int) -> None:
        self._check_seed(state.get("seed"))
        if state.get("store") != "disk":
            raise ConfigurationError(
                "the checkpoint holds its client states in memory form, but this "
                f"simulation keeps them on disk at {str(self.path)!r}; resume "
                "without client_state_path"
            )
        with self._session() as db:
            meta = read_meta(db)
            if state.get("store_id") != meta["store_id"]:
                raise ConfigurationError(
                    f"the checkpoint refers to client-state store "
                    f"{state.get('store_id')!r} (at {state.get('path')!r}), but "
                    f"{str(self.path)!r} is store {meta['store_id']!r}"
                )
            anchors = dict(anchors_of(meta))
            if rounds not in anchors:
                raise ConfigurationError(
                    f"client-state store {str(self.path)!r} can return to the "
                    f"checkpoints after rounds {sorted(anchors)}, not to round "
                    f"{rounds}: only the two most recent checkpoints of an "
                    "on-disk store can be resumed"
                )
            expected = self._expected(state, anchors[rounds], rounds)
            with Transaction(db) as tx:
                tx.execute("DELETE FROM states WHERE version > ?", (rounds,))
                kept = [[a, s.to_json()] for a, s in anchors.items() if a <= rounds]
                set_meta(tx, "anchors", kept)
                set_meta(tx, "live", expected.to_json())
                query = NEWEST.format(columns="digest", where="")
                found = Summary.of(digest for digest, _ in tx.execute(query))
                if found != expected:
                    raise IntegrityError(
                        f"client-state store {str(self.path)!r} does not hold the "
                        f"states the checkpoint after round {rounds} refers to: it "
                        f"recorded {expected.describe()}, the file holds "
                        f"{found.describe()}; client states were deleted, "
                        "restored from another copy or edited since (the file is "
                        "left as it was)"
                    )
            self._checked = True

    def _expected(
        self, state: dict[str, Any], recorded: Summary, rounds: int
    ) -> Summary:
        """The checkpoint's summary, which must be the one the file recorded."""
        try:
            theirs = Summary.from_json(state["summary"])
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(
                f"the checkpoint's reference to client-state store "
                f"{str(self.path)!r} has no valid summary of its states (written "
                "by an older blazefl?)"
            ) from None
        if theirs != recorded:
            raise IntegrityError(
                f"client-state store {str(self.path)!r} is not the file the "
                f"checkpoint after round {rounds} was taken with: the checkpoint "
                f"records {theirs.describe()}, the file's record of that "
                f"checkpoint {recorded.describe()}; use the state file that was "
                "saved with this checkpoint"
            )
        return theirs


def _chunks(cids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(cids), _CHUNK):
        yield list(cids[start : start + _CHUNK])
