"""Write small data sets in exactly LEAF's JSON layout, for the LEAF reader tests."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from blazefl.data import LEAF_LETTERS


def write_split(
    folder: Path, files: list[dict[str, tuple[list[Any], list[Any]]]]
) -> None:
    """One JSON file per dict of ``user -> (x, y)``, as LEAF's split scripts write."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, users in enumerate(files):
        doc = {
            "users": list(users),
            "num_samples": [len(x) for x, _ in users.values()],
            "user_data": {u: {"x": x, "y": y} for u, (x, y) in users.items()},
        }
        (folder / f"all_data_{i}_niid_0_keep_0_{folder.name}_9.json").write_text(
            json.dumps(doc)
        )


def femnist_user(rng: random.Random, n: int) -> tuple[list[Any], list[Any]]:
    x = [[round(rng.random(), 3) for _ in range(784)] for _ in range(n)]
    return x, [rng.randrange(62) for _ in range(n)]


def shakespeare_user(rng: random.Random, n: int) -> tuple[list[Any], list[Any]]:
    x = ["".join(rng.choice(LEAF_LETTERS) for _ in range(80)) for _ in range(n)]
    return x, [rng.choice(LEAF_LETTERS) for _ in range(n)]


def sent140_user(rng: random.Random, n: int, user: str) -> tuple[list[Any], list[Any]]:
    words = ["good", "bad", "day", "awful", "love", "hate", "!", "it's"]
    x = [
        [
            "1467810369",
            "Mon Apr 06 22:19:45 PDT 2009",
            "NO_QUERY",
            user,
            " ".join(rng.choice(words) for _ in range(rng.randrange(3, 30))),
            [],
        ]
        for _ in range(n)
    ]
    return x, [rng.randrange(2) for _ in range(n)]
