"""Read the JSON files LEAF writes: ``train/*.json`` and ``test/*.json``, per user.

LEAF (Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018) stores
each data set as JSON files of the form ``{"users": [...], "num_samples":
[...], "user_data": {user: {"x": [...], "y": [...]}}}`` in a ``train`` and a
``test`` folder (``leaf/data/<name>/data/{train,test}`` after its
``preprocess.sh``). `read_leaf_folder` reads both folders of one data set into
per-user raw samples, checking the structure as it goes, so that a malformed
file fails with its path and the user at fault rather than deep inside a
decoder. It never downloads anything.

Both of LEAF's split modes are kept: with ``-t sample`` every user has train
and test samples (the per-user test split is natural); with ``-t user`` some
users appear only in ``test`` (held-out users that never train).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blazefl._exceptions import ConfigurationError

__all__ = ["LeafFolder", "LeafUser", "read_leaf_folder"]

StrPath = str | os.PathLike[str]

_LAYOUT = (
    "a LEAF data folder holds train/*.json and test/*.json, as LEAF's "
    "preprocess.sh writes them to leaf/data/<name>/data/"
)


@dataclass(frozen=True, slots=True)
class LeafUser:
    """One user's raw samples from one split, in file order."""

    name: str
    x: list[Any]
    y: list[Any]
    file: Path


@dataclass(frozen=True, slots=True)
class LeafFolder:
    """Every user of a LEAF data set: `train` and `test` in the files' order."""

    root: Path
    train: list[LeafUser]
    test: list[LeafUser]


def _load_json(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigurationError(
            f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: "
            f"{e.msg}); {_LAYOUT}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not UTF-8 JSON; {_LAYOUT}") from None
    except OSError as e:
        raise ConfigurationError(f"cannot read {path}: {e.strerror}") from None


def _users_of(path: Path, doc: Any) -> list[LeafUser]:
    if not isinstance(doc, dict):
        raise ConfigurationError(
            f"{path} must hold a JSON object with 'users', 'num_samples' and "
            f"'user_data', got a {type(doc).__name__}"
        )
    missing = [k for k in ("users", "num_samples", "user_data") if k not in doc]
    if missing:
        raise ConfigurationError(
            f"{path} lacks the LEAF key(s) {', '.join(map(repr, missing))}"
        )
    names, counts, data = doc["users"], doc["num_samples"], doc["user_data"]
    if not isinstance(names, list) or not isinstance(counts, list):
        raise ConfigurationError(f"{path}: 'users' and 'num_samples' must be lists")
    if len(names) != len(counts):
        raise ConfigurationError(
            f"{path} lists {len(names)} users but {len(counts)} num_samples"
        )
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: 'user_data' must be an object")
    users = []
    for name, count in zip(names, counts, strict=True):
        if not isinstance(name, str):
            raise ConfigurationError(f"{path}: user names must be strings: {name!r}")
        record = data.get(name)
        if not isinstance(record, dict) or not {"x", "y"} <= record.keys():
            raise ConfigurationError(
                f"{path}: user {name!r} has no 'x' and 'y' in 'user_data'"
            )
        x, y = record["x"], record["y"]
        if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y):
            raise ConfigurationError(
                f"{path}: user {name!r} must have lists 'x' and 'y' of one length"
            )
        if isinstance(count, bool) or count != len(x):
            raise ConfigurationError(
                f"{path}: user {name!r} has {len(x)} samples but num_samples "
                f"says {count!r}"
            )
        users.append(LeafUser(name, x, y, path))
    return users


def _read_split(root: Path, split: str) -> list[LeafUser]:
    folder = root / split
    if not folder.is_dir():
        raise ConfigurationError(
            f"no {split}/ folder in {root}; {_LAYOUT}. blazefl never downloads "
            "data sets"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    if not files:
        raise ConfigurationError(f"no .json files in {folder}; {_LAYOUT}")
    users: list[LeafUser] = []
    seen: dict[str, Path] = {}
    for path in files:
        for user in _users_of(path, _load_json(path)):
            if user.name in seen:
                raise ConfigurationError(
                    f"user {user.name!r} appears in both {seen[user.name]} and "
                    f"{path} ({split} split); each user belongs to one file"
                )
            seen[user.name] = path
            users.append(user)
    if not users:
        raise ConfigurationError(f"the {split} files in {folder} list no users")
    return users


def read_leaf_folder(root: StrPath) -> LeafFolder:
    """Every user's raw train and test samples under `root` (see module docstring)."""
    path = Path(root)
    if not path.is_dir():
        raise ConfigurationError(f"LEAF data folder {path} does not exist; {_LAYOUT}")
    return LeafFolder(path, _read_split(path, "train"), _read_split(path, "test"))
