"""Attacks as client behaviours: who attacks, what an attacker uploads, what
its data looks like, and how success is measured."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import structlog
import torch
from torch import nn

from blazefl import ConfigurationError
from blazefl.algorithms import Broadcast, FedAvg, FederatedClient, FederatedServer
from blazefl.data import LeafSyntheticDataset, SyntheticPartitionedDataset
from blazefl.models import ModelZoo
from blazefl.reproducibility import create_client_rng_suite
from blazefl.robust import (
    AttackedClient,
    Backdoor,
    GaussianNoise,
    LabelFlip,
    PoisonedDataset,
    ScaledUpdate,
    SignFlip,
    draw_attackers,
    make_attack,
)
from blazefl.sim import ClientContext

CLIENTS = 6


def _data() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(
        CLIENTS, seed=0, samples_per_client=12, test_samples=40
    )


def _ctx(cid: int) -> ClientContext:
    return ClientContext(
        cid=cid,
        round=0,
        slot=0,
        device="cpu",
        rng=create_client_rng_suite(0, cid),
        state={},
        stop_event=threading.Event(),
        log=structlog.get_logger("test"),
        cache={},
    )


def _honest(data: Any = None) -> FederatedClient:
    return FederatedClient(FedAvg(), ModelZoo(), "mlp", data or _data(), epochs=1)


def _broadcast() -> Broadcast:
    server = FederatedServer(
        FedAvg(), ModelZoo(), "mlp", dataset=_data(), num_clients=CLIENTS, rounds=1
    )
    return server.downlink_package()


def test_attackers_are_drawn_once_from_the_seed() -> None:
    """⌊0.2·20⌋ = 4 distinct sorted ids; the same seed, the same ids."""
    first = draw_attackers(20, 0.2, seed=7)
    assert len(first) == 4
    assert list(first) == sorted(set(first))
    assert draw_attackers(20, 0.2, seed=7) == first
    assert draw_attackers(20, 0.2, seed=8) != first
    assert draw_attackers(20, 0.0, seed=7) == ()


@pytest.mark.parametrize("fraction", [1.0, -0.1, float("nan"), "0.2"])
def test_attack_fraction_outside_zero_one_is_refused(fraction: Any) -> None:
    """The fraction must be in [0, 1): all clients attacking is no federation."""
    with pytest.raises(
        ConfigurationError,
        match=r"the attack fraction must be a "
        r"finite number in \[0, 1\), got",
    ):
        draw_attackers(20, fraction, seed=0)


def test_honest_clients_run_the_work_unchanged() -> None:
    """A client not in the attackers sends bit for bit the bare work's update."""
    work = _honest()
    attacked = AttackedClient(work, SignFlip(), {1})
    broadcast = _broadcast()
    assert torch.equal(
        attacked(_ctx(0), broadcast).params, work(_ctx(0), broadcast).params
    )


@pytest.mark.parametrize(
    ("attack", "factor"), [(SignFlip(), -4.0), (ScaledUpdate(scale=3.0), 3.0)]
)
def test_model_attacks_rescale_the_honest_delta(attack: Any, factor: float) -> None:
    """sign-flip uploads x − 4·Δ, scale x + s·Δ, Δ the honestly trained delta."""
    work = _honest()
    broadcast = _broadcast()
    honest = work(_ctx(2), broadcast).params
    sent = AttackedClient(work, attack, [2])(_ctx(2), broadcast).params
    x = broadcast.params
    assert torch.equal(sent, x + factor * (honest - x))


def test_noise_comes_from_the_attackers_own_rng() -> None:
    """The same client and RNG state draw the same noise; another client other."""
    work = AttackedClient(_honest(), GaussianNoise(std=0.5), [1, 2])
    broadcast = _broadcast()
    a = work(_ctx(1), broadcast).params
    assert torch.equal(a, work(_ctx(1), broadcast).params)
    assert not torch.equal(a, work(_ctx(2), broadcast).params)
    assert 0.4 < float((a - broadcast.params).std()) < 0.6


def test_label_flip_poisons_only_the_attackers_training_rows() -> None:
    """Training labels become C − 1 − y; the data, and the test split, stay."""
    data = _data()
    poisoned = PoisonedDataset(data, LabelFlip())
    clean, bad = data.get_dataset("train", 3), poisoned.get_dataset("train", 3)
    x, y = clean[list(range(len(clean)))]
    px, py = bad[list(range(len(bad)))]
    assert torch.equal(px, x)
    assert torch.equal(py, 9 - y)
    assert poisoned.get_dataset("test", None) is data.get_dataset("test", None)
    assert poisoned.num_classes == data.num_classes


def test_backdoor_stamps_the_trigger_on_a_fraction_with_the_target() -> None:
    """Half the rows carry the 2x2 corner at the data's maximum, labelled 0."""
    data = _data()
    attack = Backdoor(target=0, size=2, fraction=0.5)
    bad = PoisonedDataset(data, attack).get_dataset("train", 0)
    clean = data.get_dataset("train", 0)
    x, y = bad[list(range(len(bad)))]
    cx, cy = clean[list(range(len(clean)))]
    top = float(data.get_dataset("train", None).data.max())
    assert bool((x[:6, :, -2:, -2:] == top).all())
    assert bool((y[:6] == 0).all())
    assert torch.equal(x[6:], cx[6:])
    assert torch.equal(y[6:], cy[6:])


class _Constant(nn.Module):
    """Predicts class ``label`` for every input."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 10)
        logits[:, self.label] = 1.0
        return logits


def test_backdoor_success_is_the_share_of_triggered_inputs_sent_to_target() -> None:
    """A model always saying 'target' has success 1; one never saying it, 0."""
    attack, data = Backdoor(target=3), _data()
    assert attack.success_rate(_Constant(3), data, "cpu", 16) == 1.0
    assert attack.success_rate(_Constant(4), data, "cpu", 16) == 0.0


def test_untargeted_success_is_the_test_error_rate() -> None:
    """sign-flip's success rate is 1 − accuracy on the test split."""
    data = _data()
    y = data.get_dataset("test", None).targets
    rate = SignFlip().success_rate(_Constant(0), data, "cpu", 7)
    assert rate == pytest.approx(float((y != 0).double().mean()))


def test_server_summary_reports_the_attack_success_rate() -> None:
    """An attack handed to the server is measured in get_summary."""
    server = FederatedServer(
        FedAvg(),
        ModelZoo(),
        "mlp",
        dataset=_data(),
        num_clients=CLIENTS,
        rounds=1,
        attack=Backdoor(target=1),
    )
    summary = server.get_summary()
    assert set(summary) == {"server_acc", "server_loss", "attack_success_rate"}
    assert 0.0 <= summary["attack_success_rate"] <= 1.0


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: AttackedClient(lambda c, p: p, LabelFlip(), [0]),
            r"LabelFlip\(\) "
            r"poisons the attackers' training data, so the work must be a dataclass "
            r"with a dataset field",
        ),
        (
            lambda: AttackedClient(
                _honest(LeafSyntheticDataset(4, seed=0)), Backdoor(), [0]
            ),
            r"stamps a 2x2 trigger on images "
            r"\(channels, height, width\); the data set's samples have shape \(60,\)",
        ),
        (
            lambda: AttackedClient(_honest(), Backdoor(target=10), [0]),
            r"target label 10 is not a class of the data set \(labels 0 \.\. 9\)",
        ),
        (
            lambda: AttackedClient(_honest(), "sign-flip", [0]),  # type: ignore[arg-type]
            r"attack must be a blazefl\.robust\.Attack, got 'sign-flip'",
        ),
        (
            lambda: SignFlip(scale=0),
            r"SignFlip\(scale=0\): scale must be a finite "
            r"number > 0",
        ),
        (
            lambda: Backdoor(fraction=0),
            r"the share of an attacker's rows that carry "
            r"the trigger must be in \(0, 1\]",
        ),
        (
            lambda: make_attack("label-flip", strength=2.0),
            r"attack 'label-flip' "
            r"takes no strength",
        ),
        (
            lambda: make_attack("flip"),
            r"unknown attack 'flip'; expected one of "
            r"'sign-flip', 'label-flip', 'scale', 'noise', 'backdoor'",
        ),
    ],
)
def test_bad_attacks_are_refused(build: Any, match: str) -> None:
    """Each mistake is refused at construction, naming the value."""
    with pytest.raises(ConfigurationError, match=match):
        build()
