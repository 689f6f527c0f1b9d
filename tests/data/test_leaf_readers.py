"""LEAF's FEMNIST, Shakespeare, Sent140 and CelebA read from files in LEAF's format."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest
import torch
from tests.data.leaf_files import (
    femnist_user,
    sent140_user,
    shakespeare_user,
    write_split,
)

from blazefl._exceptions import ConfigurationError
from blazefl.data import (
    LEAF_LETTERS,
    LeafCelebA,
    LeafFEMNIST,
    LeafSent140,
    LeafShakespeare,
    sent140_token_ids,
)
from blazefl.models import ModelZoo


def _femnist(root: Path, *, heldout: bool = False) -> dict[str, tuple[list, list]]:
    rng = random.Random(0)
    users = {f"f{i:04d}_{i}": femnist_user(rng, 3 + i) for i in range(4)}
    tests = {u: femnist_user(rng, 2) for u in users}
    write_split(
        root / "train", [dict(list(users.items())[:2]), dict(list(users.items())[2:])]
    )
    if heldout:
        tests = {"held_1": femnist_user(rng, 5), "held_2": femnist_user(rng, 1)}
        tests.update({u: femnist_user(rng, 2) for u in list(users)[1:3]})
    write_split(root / "test", [tests])
    return users


def test_femnist_keeps_leafs_natural_split(tmp_path: Path) -> None:
    users = _femnist(tmp_path)
    data = LeafFEMNIST(tmp_path)
    assert data.users == tuple(users)
    assert data.num_clients == 4
    assert data.num_classes == 62
    assert data.input_shape == (1, 28, 28)
    assert data.has_client_tests
    assert data.heldout_users == ()
    for cid, (x, y) in enumerate(users.values()):
        train = data.get_dataset("train", cid)
        assert len(train) == len(y)  # type: ignore[arg-type]
        img, label = train[0]
        assert torch.equal(img.flatten(), torch.tensor(x[0], dtype=torch.float32))
        assert int(label) == y[0]
        assert len(data.get_dataset("test", cid)) == 2  # type: ignore[arg-type]
    assert len(data.get_dataset("test", None)) == 8  # type: ignore[arg-type]
    assert len(data.heldout_dataset()) == 0  # type: ignore[arg-type]


def test_user_mode_holds_out_users_that_never_train(tmp_path: Path) -> None:
    users = _femnist(tmp_path, heldout=True)
    data = LeafFEMNIST(tmp_path)
    assert data.heldout_users == ("held_1", "held_2")
    assert len(data.heldout_dataset()) == 6  # type: ignore[arg-type]
    sizes = [len(data.get_dataset("test", c)) for c in range(4)]  # type: ignore[arg-type]
    assert sizes == [0, 2, 2, 0]
    assert len(data.get_dataset("test", None)) == 10  # type: ignore[arg-type]
    assert data.users == tuple(users)


def test_max_users_keeps_the_first_users(tmp_path: Path) -> None:
    users = _femnist(tmp_path)
    data = LeafFEMNIST(tmp_path, max_users=2)
    assert data.users == tuple(users)[:2]
    assert len(data.get_dataset("test", None)) == 4  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_users=9 is more than the 4"):
        LeafFEMNIST(tmp_path, max_users=9)


def test_a_pickled_leaf_data_set_keeps_its_partitions(tmp_path: Path) -> None:
    _femnist(tmp_path, heldout=True)
    data = LeafFEMNIST(tmp_path)
    copy = pickle.loads(pickle.dumps(data))
    for cid in range(4):
        for kind in ("train", "test"):
            a, b = data.get_dataset(kind, cid), copy.get_dataset(kind, cid)
            assert len(a) == len(b)  # type: ignore[arg-type]
    assert len(copy.heldout_dataset()) == 6  # type: ignore[arg-type]


def test_shakespeare_decodes_leafs_80_letters(tmp_path: Path) -> None:
    rng = random.Random(1)
    users = {
        "THE_TEMPEST_PROSPERO": shakespeare_user(rng, 4),
        "HAMLET": shakespeare_user(rng, 2),
    }
    write_split(tmp_path / "train", [users])
    write_split(tmp_path / "test", [{"HAMLET": shakespeare_user(rng, 3)}])
    data = LeafShakespeare(tmp_path)
    assert len(LEAF_LETTERS) == 80
    assert data.num_classes == 80
    x, y = data.get_dataset("train", 0)[1]
    text, nxt = users["THE_TEMPEST_PROSPERO"][0][1], users["THE_TEMPEST_PROSPERO"][1][1]
    assert "".join(LEAF_LETTERS[i] for i in x.tolist()) == text
    assert LEAF_LETTERS[int(y)] == nxt
    model = ModelZoo(data.input_shape, data.num_classes).select_model("char_lstm")
    assert model(x.unsqueeze(0)).shape == (1, 80)


def test_sent140_tokenizer_is_fixed_and_documented(tmp_path: Path) -> None:
    ids = sent140_token_ids("Good day, it's GOOD!", 100)
    assert len(ids) == 25
    assert ids[6:] == [0] * 19
    assert ids[0] == ids[4]
    assert all(1 <= i <= 100 for i in ids[:6])
    rng = random.Random(2)
    write_split(tmp_path / "train", [{"alice": sent140_user(rng, 3, "alice")}])
    write_split(tmp_path / "test", [{"alice": sent140_user(rng, 2, "alice")}])
    data = LeafSent140(tmp_path, vocab_size=50)
    x, _y = data.get_dataset("train", 0)[0]
    assert x.dtype == torch.int64
    assert x.shape == (25,)
    assert int(x.max()) <= 50
    model = ModelZoo(data.input_shape, 2, vocab_size=data.vocab_size).select_model(
        "bow"
    )
    assert model(x.unsqueeze(0)).shape == (1, 2)


def test_celeba_reads_images_from_the_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "raw" / "img_align_celeba"
    images.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (178, 218), (10 * i, 100, 200)).save(images / f"00000{i}.jpg")
    write_split(tmp_path / "train", [{"7": (["000000.jpg", "000001.jpg"], [0, 1])}])
    write_split(tmp_path / "test", [{"7": (["000002.jpg"], [1])}])
    data = LeafCelebA(tmp_path)
    x, y = data.get_dataset("train", 0)[1]
    assert x.shape == (3, 84, 84)
    assert int(y) == 1
    assert abs(float(x[2].mean()) - 200 / 255) < 0.02
    write_split(tmp_path / "test", [{"7": (["missing.jpg"], [1])}])
    with pytest.raises(
        ConfigurationError, match=r"user '7', sample 0: image .*missing"
    ):
        LeafCelebA(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["num_samples"].__setitem__(0, 99),
            r"user 'a' has 2 samples but num_samples says 99",
        ),
        (lambda d: d.pop("user_data"), r"lacks the LEAF key\(s\) 'user_data'"),
        (lambda d: d["user_data"]["a"].pop("y"), r"user 'a' has no 'x' and 'y'"),
        (
            lambda d: d["user_data"]["a"]["y"].__setitem__(1, 62),
            r"user 'a', sample 1: label 62 is outside",
        ),
        (
            lambda d: d["user_data"]["a"]["x"][0].pop(),
            r"user 'a': every x must be a list of 784",
        ),
    ],
)
def test_a_malformed_file_names_the_file_and_user(
    tmp_path: Path, edit, message
) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    write_split(tmp_path / "train", [{"a": femnist_user(rng, 2)}])
    write_split(tmp_path / "test", [{"a": femnist_user(rng, 1)}])
    path = next((tmp_path / "train").iterdir())
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match=message) as info:
        LeafFEMNIST(tmp_path)
    assert str(path) in str(info.value)


def test_missing_folders_and_bad_json_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"no train/ folder in .*train/\*\.json"
    ):
        LeafFEMNIST(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "x.json").write_text('{"users": [')
    (tmp_path / "test").mkdir()
    with pytest.raises(ConfigurationError, match=r"x\.json is not valid JSON \(line 1"):
        LeafFEMNIST(tmp_path)
    rng = random.Random(4)
    write_split(tmp_path / "train", [{"a": femnist_user(rng, 1)}])
    (tmp_path / "train" / "x.json").unlink()
    write_split(tmp_path / "train2", [{"a": femnist_user(rng, 1)}])
    (tmp_path / "train" / "dup.json").write_text(
        (next((tmp_path / "train2").iterdir())).read_text()
    )
    write_split(tmp_path / "test", [{"a": femnist_user(rng, 1)}])
    with pytest.raises(ConfigurationError, match=r"user 'a' appears in both"):
        LeafFEMNIST(tmp_path)
