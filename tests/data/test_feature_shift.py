"""`feature_shift`: each client's images through its own transformation,
drawn from the seed, with a shifted test share of its own."""

from __future__ import annotations

import pytest
import torch

import blazefl.data
from blazefl import ConfigurationError
from blazefl.data import (
    ClientShift,
    SyntheticPartitionedDataset,
    TensorPartitionedDataset,
    client_shifts,
    feature_shift,
    partition_report,
)

CLIENTS = 5


def _base() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(
        CLIENTS, seed=1, samples_per_client=12, test_samples=23
    )


def _rows(data: TensorPartitionedDataset, kind: str, cid: int | None) -> tuple:
    view = data.get_dataset(kind, cid)
    return view.data[view.indices], view.targets[view.indices]  # type: ignore[attr-defined]


def test_public_names() -> None:
    """The package exports the shift, its draws and its kinds."""
    for name in ("FEATURE_SHIFTS", "ClientShift", "client_shifts", "feature_shift"):
        assert name in blazefl.data.__all__


@pytest.mark.parametrize("kind", ["rotation", "contrast"])
def test_each_client_sees_its_own_shift(kind: str) -> None:
    """Client c's training rows are its original rows through shift c, its
    labels unchanged; its test share is shifted alike; shifts differ."""
    base = _base()
    shifted = feature_shift(base, kind, seed=7)
    shifts = client_shifts(kind, CLIENTS, 7)
    assert len(set(shifts)) > 1
    test_total = 0
    for cid, shift in enumerate(shifts):
        x, y = _rows(base, "train", cid)
        sx, sy = _rows(shifted, "train", cid)
        assert torch.equal(sy, y)
        assert torch.equal(sx, shift.apply(x))
        tx, _ = _rows(shifted, "test", cid)
        test_total += tx.shape[0]
        assert tx.shape[0] in (4, 5)  # 23 test samples dealt over 5 clients
    assert test_total == 23
    assert len(shifted.get_dataset("test", None)) == 23
    assert shifted.has_client_tests


def test_shifts_are_drawn_from_the_seed() -> None:
    """Same seed, same shifts and data; another seed, other shifts."""
    a = feature_shift(_base(), "contrast", seed=3)
    b = feature_shift(_base(), "contrast", seed=3)
    assert torch.equal(_rows(a, "train", 2)[0], _rows(b, "train", 2)[0])
    assert client_shifts("contrast", 8, 3) != client_shifts("contrast", 8, 4)
    for s in client_shifts("contrast", 50, 0):
        assert 0.25 <= s.contrast <= 4.0
        assert -4.0 <= s.brightness <= 4.0


def test_rotation_is_an_exact_quarter_turn() -> None:
    """A rotation shift permutes pixels: nothing is interpolated."""
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    turned = ClientShift(quarter_turns=1).apply(x)
    assert torch.equal(turned, torch.rot90(x, 1, dims=(-2, -1)))
    assert str(ClientShift(quarter_turns=2)) == "rot180"
    assert str(ClientShift(contrast=2.0, brightness=-1.5)) == "x*2.00-1.50"


def test_partition_report_shows_the_shifts() -> None:
    """partition_report(..., shifts=...) adds each client's shift to its row."""
    labels = torch.tensor([0, 1, 1, 2])
    shifts = [ClientShift(quarter_turns=1), ClientShift(contrast=0.5)]
    report = partition_report(labels, [[0, 1], [2, 3]], shifts=shifts)
    assert report.shifts == ("rot90", "x*0.50+0.00")
    table = report.table()
    assert "feature shift" in table
    assert table.splitlines()[-1].endswith("| x*0.50+0.00")
    with pytest.raises(ConfigurationError, match=r"shifts lists 1 clients"):
        partition_report(labels, [[0, 1], [2, 3]], shifts=shifts[:1])


def test_bad_input_is_refused() -> None:
    """Unknown kinds, non-images, non-square rotations, too few test samples."""
    with pytest.raises(ConfigurationError, match=r"unknown feature shift 'blur'"):
        feature_shift(_base(), "blur", seed=0)
    flat = TensorPartitionedDataset(
        torch.zeros(4, 6),
        torch.zeros(4, dtype=torch.int64),
        [[0, 1], [2, 3]],
        torch.zeros(2, 6),
        torch.zeros(2, dtype=torch.int64),
    )
    with pytest.raises(ConfigurationError, match=r"transforms images"):
        feature_shift(flat, "contrast", seed=0)
    wide = SyntheticPartitionedDataset(2, samples_per_client=4, image_shape=(1, 4, 6))
    with pytest.raises(ConfigurationError, match=r"square images, got 4x6"):
        feature_shift(wide, "rotation", seed=0)
    few = SyntheticPartitionedDataset(CLIENTS, samples_per_client=4, test_samples=3)
    with pytest.raises(ConfigurationError, match=r"3 samples, fewer than the 5"):
        feature_shift(few, "contrast", seed=0)
