"""LEAF's FEMNIST, Shakespeare, Sent140 and CelebA, read from local files.

Each class reads the folder LEAF's ``preprocess.sh`` writes
(``leaf/data/<name>/data``, holding ``train/*.json`` and ``test/*.json``; see
`blazefl.data._leaf_files`) and keeps LEAF's natural partition: one client per
user that has training data, in the files' order (`users` maps a client id
back to LEAF's user name). A user's test samples are that client's own test
partition (``get_dataset("test", cid)``), and users that appear only in the
test files (LEAF's ``-t user`` mode) are held out: `heldout_dataset` holds
them, and they never train. The server-side test partition
(``get_dataset("test", None)``) is every test sample, as LEAF evaluates.

Decoding follows LEAF's own models: FEMNIST is 28x28 grey images in 62
classes; Shakespeare is 80-character windows over LEAF's 80-letter vocabulary,
labelled with the next character; Sent140 tweets are the text field (index 4
of each sample), split into at most 25 words as LEAF does, each word hashed
into `Sent140Vocabulary.size` ids (no GloVe download: see
`sent140_token_ids`); CelebA is the "Smiling" label of each image, read from
`image_dir` and resized to 84x84 RGB as LEAF's CelebA model expects.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from blazefl._exceptions import ConfigurationError
from blazefl.data._leaf_files import LeafUser, StrPath, read_leaf_folder
from blazefl.data._loader import TensorView
from blazefl.data._partitioned import TensorPartitionedDataset, check_int

__all__ = [
    "LEAF_LETTERS",
    "LeafCelebA",
    "LeafDataset",
    "LeafFEMNIST",
    "LeafSent140",
    "LeafShakespeare",
    "sent140_token_ids",
]

#: LEAF's Shakespeare vocabulary (``ALL_LETTERS`` in its language utilities).
LEAF_LETTERS = (
    "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
)
_LETTER_IDS = {c: i for i, c in enumerate(LEAF_LETTERS)}
_SEQ_LEN = 80
_FEMNIST_CLASSES = 62
_WORDS = re.compile(r"[\w']+|[.,!?;]")
_TWEET_WORDS = 25
_CELEBA_SIZE = 84

Decoded = tuple[torch.Tensor, torch.Tensor]


def _where(user: LeafUser, row: int | None = None) -> str:
    at = f", sample {row}" if row is not None else ""
    return f"{user.file}: user {user.name!r}{at}"


def _int_labels(user: LeafUser, num_classes: int) -> torch.Tensor:
    for row, label in enumerate(user.y):
        if isinstance(label, bool) or not isinstance(label, int):
            raise ConfigurationError(
                f"{_where(user, row)}: label {label!r} is not an integer"
            )
        if not 0 <= label < num_classes:
            raise ConfigurationError(
                f"{_where(user, row)}: label {label} is outside range(0, {num_classes})"
            )
    return torch.tensor(user.y, dtype=torch.int64).reshape(-1)


def _femnist(user: LeafUser) -> Decoded:
    try:
        pixels = np.asarray(user.x, dtype=np.float32)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{_where(user)}: every x must be a list of 784 numbers (28x28 pixels)"
        ) from None
    if pixels.ndim != 2 or pixels.shape[1] != 28 * 28:
        raise ConfigurationError(
            f"{_where(user)}: every x must be a list of 784 numbers (28x28 "
            f"pixels), got shape {pixels.shape}"
        )
    images = torch.from_numpy(pixels).reshape(-1, 1, 28, 28)
    return images, _int_labels(user, _FEMNIST_CLASSES)


def _letters(user: LeafUser, row: int, text: object, length: int) -> list[int]:
    if not isinstance(text, str) or len(text) != length:
        raise ConfigurationError(
            f"{_where(user, row)}: expected a string of {length} characters, "
            f"got {text!r:.60}"
        )
    try:
        return [_LETTER_IDS[c] for c in text]
    except KeyError as e:
        raise ConfigurationError(
            f"{_where(user, row)}: character {e.args[0]!r} is not in LEAF's "
            "80-letter Shakespeare vocabulary (LEAF_LETTERS)"
        ) from None


def _shakespeare(user: LeafUser) -> Decoded:
    x = [_letters(user, row, t, _SEQ_LEN) for row, t in enumerate(user.x)]
    y = [_letters(user, row, t, 1)[0] for row, t in enumerate(user.y)]
    return (
        torch.tensor(x, dtype=torch.int64).reshape(-1, _SEQ_LEN),
        torch.tensor(y, dtype=torch.int64),
    )


def sent140_token_ids(text: str, vocab_size: int, max_words: int = 25) -> list[int]:
    """A tweet as `max_words` word ids in ``1 .. vocab_size`` (0 pads).

    Words are split as LEAF's ``split_line`` does (``[\\w']+`` and single
    punctuation marks), lower-cased, and hashed with CRC-32 into `vocab_size`
    buckets: a fixed, documented tokenizer that needs no download (LEAF's own
    model looks words up in GloVe embeddings instead).
    """
    words = _WORDS.findall(text.lower())[:max_words]
    ids = [zlib.crc32(w.encode("utf-8")) % vocab_size + 1 for w in words]
    return ids + [0] * (max_words - len(ids))


def _sent140(user: LeafUser, vocab_size: int) -> Decoded:
    rows = []
    for row, sample in enumerate(user.x):
        if not isinstance(sample, list) or len(sample) < 5:
            raise ConfigurationError(
                f"{_where(user, row)}: a Sent140 x is LEAF's list of tweet fields "
                f"with the text at index 4, got {sample!r:.60}"
            )
        if not isinstance(sample[4], str):
            raise ConfigurationError(f"{_where(user, row)}: the text is not a string")
        rows.append(sent140_token_ids(sample[4], vocab_size, _TWEET_WORDS))
    x = torch.tensor(rows, dtype=torch.int64).reshape(-1, _TWEET_WORDS)
    return x, _int_labels(user, 2)


def _celeba(user: LeafUser, image_dir: Path) -> Decoded:
    from PIL import Image, UnidentifiedImageError

    images = []
    for row, name in enumerate(user.x):
        if not isinstance(name, str) or Path(name).name != name:
            raise ConfigurationError(
                f"{_where(user, row)}: expected an image file name, got {name!r:.60}"
            )
        path = image_dir / name
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB").resize((_CELEBA_SIZE, _CELEBA_SIZE))
                images.append(np.asarray(rgb, dtype=np.uint8))
        except FileNotFoundError:
            raise ConfigurationError(
                f"{_where(user, row)}: image {path} does not exist (image_dir is "
                f"{image_dir}; LEAF keeps them in data/raw/img_align_celeba)"
            ) from None
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigurationError(
                f"{_where(user, row)}: cannot read image {path}: {e}"
            ) from None
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return pixels.to(torch.float32).div_(255.0), _int_labels(user, 2)


def _stack(parts: Sequence[Decoded], like: Decoded) -> Decoded:
    if not parts:
        x, _ = like
        empty = torch.empty((0, *x.shape[1:]), dtype=x.dtype)
        return empty, torch.empty(0, dtype=torch.int64)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _rows(sizes: Sequence[int]) -> list[torch.Tensor]:
    ends = np.cumsum([0, *sizes])
    return [torch.arange(int(a), int(b)) for a, b in itertools.pairwise(ends)]


class LeafDataset(TensorPartitionedDataset):
    """A LEAF data set: one client per training user, LEAF's own test split kept.

    Use a subclass (`LeafFEMNIST`, `LeafShakespeare`, `LeafSent140`,
    `LeafCelebA`); each reads `root`, the folder holding ``train/`` and
    ``test/``. `users[cid]` is the LEAF user of client `cid`;
    `heldout_users` are the users found only in the test files. `max_users`
    keeps only the first that many training users (in file order), to
    simulate a subset of a large federation.
    """

    NUM_CLASSES: ClassVar[int]

    def __init__(self, root: StrPath, *, max_users: int | None = None) -> None:
        folder = read_leaf_folder(root)
        decode = self._decoder()
        train_users = folder.train
        if max_users is not None:
            check_int("max_users", max_users, 1)
            if max_users > len(train_users):
                raise ConfigurationError(
                    f"max_users={max_users} is more than the {len(train_users)} "
                    f"training users in {folder.root}"
                )
            train_users = train_users[:max_users]
        names = [u.name for u in train_users]
        index = {name: cid for cid, name in enumerate(names)}
        every = {u.name for u in folder.train}
        # Test rows: the training users' own test samples first, in client
        # order, then the held-out users' (those never in train). Test rows of
        # training users left out by max_users are dropped with them.
        test_users = sorted(
            (u for u in folder.test if u.name in index or u.name not in every),
            key=lambda u: index.get(u.name, len(index)),
        )
        own = {u.name: i for i, u in enumerate(test_users) if u.name in index}
        test_rows = _rows([len(u.y) for u in test_users])
        empty = torch.empty(0, dtype=torch.int64)
        train = [decode(u) for u in train_users]
        self.users: tuple[str, ...] = tuple(names)
        self.heldout_users: tuple[str, ...] = tuple(
            u.name for u in test_users if u.name not in index
        )
        self._heldout_start = sum(len(u.y) for u in test_users if u.name in index)
        self._heldout_rows = [
            rows
            for u, rows in zip(test_users, test_rows, strict=True)
            if u.name not in index
        ]
        super().__init__(
            *_stack(train, train[0]),
            _rows([len(u.y) for u in train_users]),
            *_stack([decode(u) for u in test_users], train[0]),
            num_classes=self.NUM_CLASSES,
            client_test_indices=[
                test_rows[own[name]] if name in own else empty for name in names
            ],
        )

    def _decoder(self) -> Callable[[LeafUser], Decoded]:
        raise NotImplementedError

    def _build_views(self) -> None:
        super()._build_views()
        rows = torch.arange(self._heldout_start, int(self._test[1].shape[0]))
        self._heldout = TensorView(*self._test, rows)
        self._heldout_users = [TensorView(*self._test, r) for r in self._heldout_rows]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        del state["_heldout"]  # rebuilt by _build_views, like the other views
        del state["_heldout_users"]
        return state

    def heldout_dataset(self) -> Dataset[Any]:
        """Test samples of users that never train (empty in LEAF's sample mode)."""
        return self._heldout

    def heldout_user_dataset(self, index: int) -> Dataset[Any]:
        """The test samples of held-out user ``heldout_users[index]``, for
        per-client evaluation of clients that never trained."""
        if not 0 <= index < len(self._heldout_users):
            raise ConfigurationError(
                f"held-out user index must be in range(0, "
                f"{len(self._heldout_users)}), got {index!r}"
            )
        return self._heldout_users[index]


class LeafFEMNIST(LeafDataset):
    """LEAF's FEMNIST: handwritten digits and letters by writer, 62 classes.

    Pair it with `blazefl.models.LeafFEMNISTCNN` (LEAF's own CNN).
    """

    NUM_CLASSES = _FEMNIST_CLASSES

    def _decoder(self) -> Callable[[LeafUser], Decoded]:
        return _femnist


class LeafShakespeare(LeafDataset):
    """LEAF's Shakespeare: next-character prediction per speaking role.

    Samples are 80 character ids (`LEAF_LETTERS`), labels the next character's
    id; pair it with `blazefl.models.LeafCharLSTM`.
    """

    NUM_CLASSES = len(LEAF_LETTERS)

    def _decoder(self) -> Callable[[LeafUser], Decoded]:
        return _shakespeare


class LeafSent140(LeafDataset):
    """LEAF's Sent140: tweet sentiment (0 negative, 1 positive) per Twitter user.

    Samples are 25 word ids from `sent140_token_ids` with `vocab_size`
    buckets; pair it with `blazefl.models.BagOfWordsClassifier`.
    """

    NUM_CLASSES = 2

    def __init__(
        self,
        root: StrPath,
        *,
        vocab_size: int = 10_000,
        max_users: int | None = None,
    ) -> None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise ConfigurationError(f"vocab_size must be an int, got {vocab_size!r}")
        if vocab_size < 2:
            raise ConfigurationError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size = vocab_size
        super().__init__(root, max_users=max_users)

    def _decoder(self) -> Callable[[LeafUser], Decoded]:
        return lambda user: _sent140(user, self.vocab_size)


class LeafCelebA(LeafDataset):
    """LEAF's CelebA: "Smiling" or not per celebrity, 84x84 RGB images.

    `image_dir` holds the images the JSON files name (default:
    ``root/raw/img_align_celeba``, where LEAF's preprocessing leaves them);
    they are decoded with Pillow once, at construction.
    """

    NUM_CLASSES = 2

    def __init__(
        self,
        root: StrPath,
        *,
        image_dir: StrPath | None = None,
        max_users: int | None = None,
    ) -> None:
        self.image_dir = (
            Path(image_dir)
            if image_dir is not None
            else Path(root) / "raw" / "img_align_celeba"
        )
        if not self.image_dir.is_dir():
            raise ConfigurationError(
                f"CelebA image folder {self.image_dir} does not exist; pass "
                "image_dir (LEAF keeps the images in data/raw/img_align_celeba)"
            )
        super().__init__(root, max_users=max_users)

    def _decoder(self) -> Callable[[LeafUser], Decoded]:
        return lambda user: _celeba(user, self.image_dir)
