"""Tests for the shared local-training and evaluation routine."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from blazefl import ConfigurationError
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import MLP
from blazefl.training import TrainResult, evaluate, train


@pytest.fixture(scope="module")
def dataset() -> SyntheticPartitionedDataset:
    return SyntheticPartitionedDataset(num_clients=4, seed=3, test_samples=200)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(144, 10)


def _loader(
    dataset: SyntheticPartitionedDataset, seed: int = 0, cid: int = 0
) -> torch.utils.data.DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    return dataset.get_dataloader("train", cid, 16, torch.Generator().manual_seed(seed))


class _StopAfter:
    """A stop event that becomes set after `n` checks."""

    def __init__(self, n: int) -> None:
        self.checks = 0
        self.n = n

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks > self.n


def test_train_reduces_loss(dataset: SyntheticPartitionedDataset) -> None:
    """Training on a client's data lowers the cross-entropy on that data."""
    model = _model()
    before, _ = evaluate(model, dataset.get_dataloader("train", 0, 64))
    train(model, _loader(dataset), epochs=5, lr=0.05)
    after, _ = evaluate(model, dataset.get_dataloader("train", 0, 64))
    assert after < 0.5 * before


def test_train_result_counts(dataset: SyntheticPartitionedDataset) -> None:
    """The result counts every sample and step of every epoch."""
    result = train(_model(), _loader(dataset), epochs=3, lr=0.01)
    size = dataset.client_size(0)
    assert result.samples == 3 * size
    assert result.steps == 3 * -(-size // 16)
    assert not result.stopped
    assert result.loss > 0


def test_train_loss_is_sample_weighted_mean() -> None:
    """The reported loss weights each batch's mean loss by its batch size."""
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    batches = [
        (torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64)),
        (torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64)),
    ]
    # The second batch sees weights updated by the first, but with zero inputs
    # the logits stay zero, so every sample's loss is log(2).
    result = train(model, batches, epochs=1, lr=0.1)
    assert result.loss == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert result.samples == 4


def test_train_is_bitwise_deterministic(dataset: SyntheticPartitionedDataset) -> None:
    """Same initial model and same generator seed give identical parameters."""
    first, second = _model(7), _model(7)
    r1 = train(first, _loader(dataset, seed=11), epochs=2, lr=0.05)
    r2 = train(second, _loader(dataset, seed=11), epochs=2, lr=0.05)
    assert r1 == r2
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_train_order_depends_on_generator(dataset: SyntheticPartitionedDataset) -> None:
    """A different shuffle seed gives different parameters."""
    first, second = _model(7), _model(7)
    train(first, _loader(dataset, seed=1), epochs=1, lr=0.05)
    train(second, _loader(dataset, seed=2), epochs=1, lr=0.05)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(first.parameters(), second.parameters(), strict=True)
    )


def test_stop_event_stops_training(dataset: SyntheticPartitionedDataset) -> None:
    """A stop event set midway ends training early with stopped=True."""
    result = train(
        _model(), _loader(dataset), epochs=5, lr=0.05, stop_event=_StopAfter(3)
    )
    assert result.stopped
    assert result.steps == 3
    assert result.samples == 3 * 16


def test_stop_event_set_before_start_trains_nothing(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """An already-set threading.Event leaves the model untouched."""
    model = _model()
    before = [p.clone() for p in model.parameters()]
    event = threading.Event()
    event.set()
    result = train(model, _loader(dataset), epochs=2, lr=0.05, stop_event=event)
    assert result == TrainResult(loss=0.0, samples=0, steps=0, stopped=True)
    for a, b in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_before_step_called_once_per_step(dataset: SyntheticPartitionedDataset) -> None:
    """The hook runs once per step, with gradients already computed."""
    seen: list[bool] = []

    def hook(model: nn.Module) -> None:
        seen.append(all(p.grad is not None for p in model.parameters()))

    result = train(_model(), _loader(dataset), epochs=2, lr=0.05, before_step=hook)
    assert len(seen) == result.steps
    assert all(seen)


def test_before_step_can_change_the_update(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """Zeroing gradients in the hook leaves the parameters unchanged."""
    model = _model()
    before = [p.clone() for p in model.parameters()]

    def zero_grads(model: nn.Module) -> None:
        for p in model.parameters():
            assert p.grad is not None
            p.grad.zero_()

    train(model, _loader(dataset), epochs=1, lr=0.05, before_step=zero_grads)
    for a, b in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_train_restores_mode_and_clears_grads(
    dataset: SyntheticPartitionedDataset,
) -> None:
    """Training leaves the model in its previous mode with no gradients held."""
    model = _model().eval()
    train(model, _loader(dataset), epochs=1, lr=0.05)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True])
def test_invalid_epochs_rejected(
    dataset: SyntheticPartitionedDataset, epochs: object
) -> None:
    """Epochs that are not an integer >= 1 are rejected, naming the value."""
    with pytest.raises(ConfigurationError, match=rf"epochs .* got {epochs!r}"):
        train(_model(), _loader(dataset), epochs=epochs, lr=0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_invalid_lr_rejected(dataset: SyntheticPartitionedDataset, lr: float) -> None:
    """A learning rate that is not positive and finite is rejected."""
    with pytest.raises(ConfigurationError, match=rf"lr .* got {lr!r}"):
        train(_model(), _loader(dataset), epochs=1, lr=lr)


def test_empty_training_data_rejected() -> None:
    """A loader that yields no batch is an error, not a silent no-op."""
    with pytest.raises(ConfigurationError, match=r"no batch in epoch 0"):
        train(_model(), [], epochs=1, lr=0.1)


class _Oracle(nn.Module):
    """Predicts the label stored in the first input feature."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.one_hot(x[:, 0].long(), 3).float()


def test_evaluate_perfect_model() -> None:
    """A model that is always right scores accuracy 1 and near-zero loss."""
    y = torch.tensor([0, 1, 2, 2, 1])
    batches = [(y[:3, None].float(), y[:3]), (y[3:, None].float(), y[3:])]
    loss, accuracy = evaluate(_Oracle(), batches)
    assert accuracy == 1.0
    assert loss < 1e-6


def test_evaluate_accuracy_is_sample_weighted() -> None:
    """Accuracy counts samples, not batches."""
    y = torch.tensor([0, 1, 2, 2])
    wrong = torch.tensor([1, 1, 1, 1])
    batches = [(y[:3, None].float(), y[:3]), (wrong[3:, None].float(), y[3:])]
    _, accuracy = evaluate(_Oracle(), batches)
    assert accuracy == 0.75


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_restores_mode(training: bool) -> None:
    """Evaluation runs in eval mode and gives the model back in its old mode."""
    modes: list[bool] = []
    model = _Oracle()
    model.register_forward_pre_hook(lambda m, _: modes.append(m.training))
    model.train(training)
    evaluate(model, [(torch.zeros(2, 1), torch.zeros(2, dtype=torch.int64))])
    assert modes == [False]
    assert model.training is training


def test_evaluate_empty_data_rejected() -> None:
    """Evaluating on no data is an error rather than a made-up score."""
    with pytest.raises(ConfigurationError, match=r"empty evaluation data"):
        evaluate(_Oracle(), [])
