"""The on-disk client-state store's file: schema, rows, digests, summaries.

The file holds two tables: ``meta`` (format, seed, store id, the live
summary and the checkpoints it can return to, as JSON values) and
``states``. A row of ``states`` is ``(cid, version, rng, data, digest)``:
the client's RNG suite as JSON text, its ``ctx.state`` dict as a
`torch.save` blob (NULL when empty), and a 16-byte digest (truncated
SHA-256) of all four and the store's id.
The digest is checked whenever a row is read, so a damaged or edited row (a
flipped digit in a stored RNG state) is refused naming the file and the
client instead of being used; hashing in the store id means a row copied
from another store file fails it too, and covering ``cid`` and ``version``
means a row moved to another client or round does.

A *summary* is what a checkpoint records of the states it refers to: how
many clients have a state and the sum, modulo 2**128, of their newest rows'
digests. A sum because it can be kept up to date per round (add the new
row's digest, subtract the one it supersedes) without reading the other
million rows, and is independent of row order; a resume recomputes it from
the digests alone (a covering index, about 40 bytes a client) to tell a
state file with rows deleted, restored or swapped in from another copy from
the one the checkpoint was taken with. It detects accidents and mix-ups,
not an adversary: anyone who can write the file can recompute the digests.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import torch

from blazefl._exceptions import IntegrityError
from blazefl.reproducibility import RNGSuiteState
from blazefl.sim._context import ClientState

__all__ = [
    "DISK_FORMAT",
    "NEWEST",
    "SCHEMA",
    "Row",
    "Summary",
    "Transaction",
    "anchors_of",
    "decode_row",
    "encode_row",
    "has_meta",
    "read_meta",
    "row_digest",
    "set_meta",
]

#: 2: rows carry a digest, checkpoints a summary (format 1 had neither).
DISK_FORMAT = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS states (
    cid INTEGER NOT NULL,
    version INTEGER NOT NULL,
    rng TEXT NOT NULL,
    data BLOB,
    digest BLOB NOT NULL,
    PRIMARY KEY (cid, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS digests ON states (cid, version, digest);
"""

#: Each client's newest row (SQLite takes the bare columns from the max row).
NEWEST = "SELECT {columns}, max(version) FROM states {where} GROUP BY cid"

_MOD = 2**128

#: ``(cid, version, rng JSON, data blob or None, digest)``, as stored.
Row = tuple[int, int, str, bytes | None, bytes]


def row_digest(
    key: bytes, cid: int, version: int, rng: str, data: bytes | None
) -> bytes:
    """The row's digest: SHA-256 of the store id, the row's fields and their
    lengths, cut to 16 bytes. SHA-256 rather than BLAKE2b because CPUs with
    SHA extensions (x86 SHA-NI, ARMv8) run it 2-3 times faster; 128 bits
    leave a chance of 2**-128 that a damaged row still matches."""
    rng_bytes = rng.encode("utf-8")
    h = hashlib.sha256(key)
    h.update(f":{cid}:{version}:{len(rng_bytes)}:".encode("ascii"))
    h.update(rng_bytes)
    if data is not None:
        h.update(data)
    return h.digest()[:16]


def encode_row(key: bytes, cid: int, version: int, state: ClientState) -> Row:
    rng = json.dumps(state.rng.to_dict())
    data = None
    if state.data:
        buffer = BytesIO()
        torch.save(state.data, buffer)
        data = buffer.getvalue()
    return (cid, version, rng, data, row_digest(key, cid, version, rng, data))


def decode_row(key: bytes, row: Row, path: str) -> ClientState:
    """The state a row holds, after checking its digest."""
    cid, version, rng, data, digest = row
    if not isinstance(rng, str) or (data is not None and not isinstance(data, bytes)):
        raise _corrupt(path, cid, version, "a column has the wrong type")
    if digest != row_digest(key, cid, version, rng, data):
        raise _corrupt(path, cid, version, "it fails its digest")
    try:
        suite = RNGSuiteState.from_dict(json.loads(rng))
        loaded: Any = {}
        if data is not None:
            loaded = torch.load(BytesIO(data), weights_only=True)
    except Exception as exc:  # a digest-valid row that does not decode
        raise _corrupt(path, cid, version, f"it does not decode ({exc})") from exc
    if not isinstance(loaded, dict):
        raise _corrupt(path, cid, version, "its data is not a dict")
    return ClientState(suite, loaded)


def _corrupt(path: str, cid: int, version: int, why: str) -> IntegrityError:
    return IntegrityError(
        f"client-state store {path!r}: the stored state of client {cid} "
        f"(committed after round {version}) is damaged: {why}; resume from a "
        "checkpoint whose store is intact, or start a new run with a new path"
    )


@dataclass(frozen=True)
class Summary:
    """How many clients have a state, and the sum of their rows' digests."""

    clients: int = 0
    total: int = 0

    def add(self, digest: bytes) -> Summary:
        return Summary(self.clients + 1, (self.total + _value(digest)) % _MOD)

    def replace(self, old: bytes, new: bytes) -> Summary:
        return Summary(self.clients, (self.total - _value(old) + _value(new)) % _MOD)

    @classmethod
    def of(cls, digests: Any) -> Summary:
        """The summary of an iterable of digests (one per client)."""
        clients = total = 0
        for digest in digests:
            clients += 1
            total += _value(digest)
        return cls(clients, total % _MOD)

    def to_json(self) -> list[Any]:
        return [self.clients, f"{self.total:032x}"]

    @classmethod
    def from_json(cls, data: Any) -> Summary:
        clients, total = data
        return cls(int(clients), int(total, 16))

    def describe(self) -> str:
        return f"{self.clients} client states, digest sum {self.total:032x}"


def _value(digest: bytes) -> int:
    return int.from_bytes(digest, "little")


# -- the meta table and transactions ------------------------------------------


def has_meta(db: sqlite3.Connection) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    return row is not None


def read_meta(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT key, value FROM meta").fetchall())


def anchors_of(meta: dict[str, str]) -> list[tuple[int, Summary]]:
    return [(int(a), Summary.from_json(s)) for a, s in json.loads(meta["anchors"])]


def set_meta(db: sqlite3.Connection, key: str, value: object) -> None:
    db.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))


class Transaction:
    """``with Transaction(db) as cur:`` runs the block in one SQLite transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
