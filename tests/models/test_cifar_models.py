"""Tests for the CIFAR-sized reference models (CifarCNN, ResNet18)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import structlog
import torch
import torch.nn.functional as F
from torch import nn

from blazefl import ConfigurationError
from blazefl.algorithms import Broadcast, FedAvg, FederatedClient
from blazefl.core import deserialize_model, serialize_model
from blazefl.data import SyntheticPartitionedDataset
from blazefl.models import CifarCNN, ModelZoo, ResNet18, build_model
from blazefl.reproducibility import create_rng_suite
from blazefl.sim import ClientContext
from blazefl.training import train

CIFAR_SHAPE = (3, 32, 32)
# ResNet18 accepts any image size (global average pooling); training steps use
# small images so a CPU step takes a fraction of a second, CifarCNN needs >= 16.
TRAIN_SIDE = {CifarCNN: 32, ResNet18: 8}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run on one intra-op thread: on a busy 2-core machine OpenMP's spinning
    threads make a ResNet18 step ten times slower than one thread does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_cifar_cnn_output_shape() -> None:
    """CifarCNN maps a batch of 3x32x32 images to one logit per class."""
    assert CifarCNN()(torch.zeros(4, 3, 32, 32)).shape == (4, 10)


def test_cifar_cnn_layer_shapes() -> None:
    """CifarCNN has the LeNet shape: 5x5 convs to 6 and 16 maps, fc 400-120-84-10."""
    model = CifarCNN()
    assert model.conv1.weight.shape == (6, 3, 5, 5)
    assert model.conv2.weight.shape == (16, 6, 5, 5)
    linears = [(m.in_features, m.out_features) for m in (model.fc1, model.fc2)]
    assert linears == [(400, 120), (120, 84)]
    assert (model.fc3.in_features, model.fc3.out_features) == (84, 10)


def test_cifar_cnn_parameter_count() -> None:
    """CifarCNN has 456 + 2416 + 48120 + 10164 + 850 = 62006 parameters."""
    assert _num_params(CifarCNN()) == 62006


def test_cifar_cnn_other_sizes() -> None:
    """CifarCNN sizes its first linear layer for the input and class count."""
    model = CifarCNN(num_classes=7, in_channels=1, image_size=(28, 20))
    assert model(torch.zeros(2, 1, 28, 20)).shape == (2, 7)


def test_cifar_cnn_too_small_image_rejected() -> None:
    """An image side below 16 is rejected, naming the side."""
    with pytest.raises(ConfigurationError, match=r"image width must be .* got 15"):
        CifarCNN(image_size=(32, 15))


def test_resnet18_output_shape() -> None:
    """ResNet18 maps a batch of 3x32x32 images to one logit per class."""
    model = ResNet18().eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_parameter_count() -> None:
    """ResNet18 (CIFAR variant, ten classes) has 11,173,962 parameters."""
    count = _num_params(ResNet18())
    assert 11_100_000 < count < 11_300_000
    assert count == 11_173_962


def test_resnet18_has_batchnorm_and_no_maxpool() -> None:
    """ResNet18 uses BatchNorm, a 3x3 stride-1 stem and no max-pool."""
    model = ResNet18()
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1)
    modules = list(model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in modules) == 20
    assert not any(isinstance(m, nn.MaxPool2d) for m in modules)


def test_resnet18_in_channels_and_classes() -> None:
    """ResNet18 takes the input channel and class counts given."""
    model = ResNet18(num_classes=5, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ResNet18, {"num_classes": 1}, r"num_classes must be an integer >= 2"),
        (ResNet18, {"in_channels": 0}, r"in_channels must be an integer >= 1"),
        (CifarCNN, {"num_classes": 1}, r"num_classes must be an integer >= 2"),
        (CifarCNN, {"in_channels": True}, r"in_channels must be an integer >= 1"),
    ],
)
def test_bad_constructor_arguments_rejected(
    cls: type[nn.Module], kwargs: dict[str, object], match: str
) -> None:
    """Bad class or channel counts are rejected at construction, naming them."""
    with pytest.raises(ConfigurationError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [CifarCNN, ResNet18])
def test_forward_backward_step_lowers_loss(cls: type[nn.Module]) -> None:
    """A few SGD steps on a fixed batch lower its loss (gradients flow)."""
    torch.manual_seed(0)
    model = cls()
    side = TRAIN_SIDE[cls]
    x = torch.randn(8, 3, side, side)
    y = torch.arange(8) % 10
    model.train()
    before = F.cross_entropy(model(x), y).item()
    train(model, [(x, y)], epochs=3, lr=0.05)
    assert all(p.grad is None for p in model.parameters())
    after = F.cross_entropy(model(x), y).item()
    assert after < before


def test_resnet18_train_updates_batchnorm_buffers() -> None:
    """Training ResNet18 moves its BatchNorm running statistics and counters."""
    torch.manual_seed(0)
    model = ResNet18()
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    train(model, [(x, y)], epochs=2, lr=0.01)
    assert model.bn1.num_batches_tracked.item() == 2
    assert not torch.equal(model.bn1.running_mean, torch.zeros(64))


@pytest.mark.parametrize("cls", [CifarCNN, ResNet18])
def test_serialize_round_trip(cls: type[nn.Module]) -> None:
    """serialize → deserialize into a fresh model reproduces every state tensor."""
    torch.manual_seed(1)
    source = cls()
    # Make the buffers non-trivial so the round trip checks them too.
    side = TRAIN_SIDE[cls]
    batch = (torch.randn(4, 3, side, side), torch.tensor([0, 1, 2, 3]))
    train(source, [batch], epochs=1, lr=0.01)
    flat = serialize_model(source)
    expected_numel = sum(t.numel() for t in source.state_dict().values())
    assert flat.shape == (expected_numel,)
    assert flat.dtype == torch.float32
    target = cls()
    deserialize_model(target, flat)
    src_state, dst_state = source.state_dict(), target.state_dict()
    assert src_state.keys() == dst_state.keys()
    for key, value in src_state.items():
        assert torch.equal(value, dst_state[key]), key
        assert value.dtype == dst_state[key].dtype, key


def test_resnet18_vector_includes_batchnorm_buffers() -> None:
    """ResNet18's flat vector holds the parameters plus 3 buffers per BatchNorm."""
    model = ResNet18()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    buffers = sum(2 * bn.num_features + 1 for bn in bns)
    assert serialize_model(model).numel() == 11_173_962 + buffers


@pytest.mark.parametrize(
    ("name", "cls"), [("cifar_cnn", CifarCNN), ("resnet18", ResNet18)]
)
def test_model_zoo_builds_for_cifar_shape(name: str, cls: type[nn.Module]) -> None:
    """ModelZoo((3, 32, 32)) builds each CIFAR model by name, ready for 32x32 input."""
    model = ModelZoo(input_shape=CIFAR_SHAPE).select_model(name)
    assert type(model) is cls
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, *CIFAR_SHAPE)).shape == (2, 10)


@pytest.mark.parametrize("name", ["cifar_cnn", "resnet18"])
def test_model_zoo_cifar_models_need_image_shape(name: str) -> None:
    """A flat input shape cannot build the CIFAR models; the error names the model."""
    with pytest.raises(ConfigurationError, match=rf"'{name}' model needs input_shape"):
        ModelZoo(input_shape=(3072,)).select_model(name)


def test_model_zoo_cifar_cnn_honours_class_count() -> None:
    """ModelZoo passes its class count and channels on to CifarCNN."""
    model = ModelZoo(input_shape=(1, 28, 28), num_classes=4).select_model("cifar_cnn")
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 4)


def test_resnet18_trains_as_a_federated_client() -> None:
    """A FederatedClient trains ResNet18 from a broadcast vector, buffers included."""
    data = SyntheticPartitionedDataset(
        2, seed=0, image_shape=CIFAR_SHAPE, samples_per_client=4, test_samples=10
    )
    zoo = ModelZoo(input_shape=CIFAR_SHAPE)
    global_model = build_model(zoo, "resnet18", seed=0)
    x = serialize_model(global_model)
    client = FederatedClient(FedAvg(), zoo, "resnet18", data, batch_size=4, lr=0.01)
    ctx = ClientContext(
        cid=1,
        round=0,
        slot=0,
        device="cpu",
        rng=create_rng_suite(1),
        state={},
        stop_event=threading.Event(),
        log=structlog.get_logger("test"),
        cache={},
    )
    update = client(ctx, Broadcast(0, x))
    assert update.params.shape == x.shape
    assert update.num_samples == 4
    assert update.metrics["num_samples"] == 4.0
    # One step: every num_batches_tracked in the vector went from 0 to 1 ...
    offset, counters = 0, []
    for name, tensor in global_model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            counters.append(offset)
        offset += tensor.numel()
    assert len(counters) == 20
    assert update.params[counters].tolist() == [1.0] * 20
    # ... and the update loads back into a fresh model.
    deserialize_model(global_model, update.params)
    assert torch.equal(serialize_model(global_model), update.params)
