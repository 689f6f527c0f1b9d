"""Tests for the reference models and the ModelZoo selector."""

from __future__ import annotations

import pytest
import torch

import blazefl.models
from blazefl import ConfigurationError
from blazefl.models import CNN, MLP, MODEL_NAMES, ModelZoo


def test_public_names() -> None:
    """The package exports exactly its documented names."""
    assert set(blazefl.models.__all__) == {
        "BagOfWordsClassifier",
        "CNN",
        "CNNBN",
        "CifarCNN",
        "LeafCharLSTM",
        "LeafFEMNISTCNN",
        "MLP",
        "MODEL_NAMES",
        "ModelZoo",
        "ResNet18",
        "build_model",
    }
    for name in blazefl.models.__all__:
        assert hasattr(blazefl.models, name)


def test_model_names() -> None:
    """The zoo offers a CNN, an MLP, the two CIFAR models, LEAF's models and
    the CNN with BatchNorm."""
    assert MODEL_NAMES == (
        "cnn",
        "mlp",
        "cifar_cnn",
        "resnet18",
        "femnist_cnn",
        "char_lstm",
        "bow",
        "cnn_bn",
    )


def test_leaf_models_fit_leafs_inputs() -> None:
    """LEAF's FEMNIST CNN, character LSTM and the bag-of-words text model."""
    femnist = ModelZoo((1, 28, 28), 62).select_model("femnist_cnn")
    assert femnist(torch.zeros(2, 1, 28, 28)).shape == (2, 62)
    lstm = ModelZoo((80,), 80).select_model("char_lstm")
    assert lstm(torch.zeros(2, 80, dtype=torch.int64)).shape == (2, 80)
    bow = ModelZoo((25,), 2, vocab_size=100).select_model("bow")
    assert bow(torch.randint(0, 101, (3, 25))).shape == (3, 2)
    with pytest.raises(ConfigurationError, match="needs 1x28x28 inputs"):
        ModelZoo((1, 12, 12)).select_model("femnist_cnn")
    with pytest.raises(ConfigurationError, match=r"needs ModelZoo\(vocab_size"):
        ModelZoo((25,), 2).select_model("bow")
    with pytest.raises(ConfigurationError, match="token-id inputs"):
        ModelZoo((1, 12, 12)).select_model("char_lstm")


# The small models, sized for the default 1x12x12 input (the CIFAR models have
# their own tests in test_cifar_models.py).
SMALL_MODELS = ("cnn", "mlp")


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_select_model_output_shape(name: str) -> None:
    """Every model maps a batch of default-shaped inputs to one logit per class."""
    model = ModelZoo().select_model(name)
    assert model(torch.zeros(5, 1, 12, 12)).shape == (5, 10)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_select_model_custom_shape(name: str) -> None:
    """The zoo sizes its models for the input shape and class count given."""
    model = ModelZoo(input_shape=(3, 28, 20), num_classes=7).select_model(name)
    assert model(torch.zeros(2, 3, 28, 20)).shape == (2, 7)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_select_model_deterministic_under_seed(name: str) -> None:
    """The same global torch seed gives the same initial weights."""
    zoo = ModelZoo()
    torch.manual_seed(5)
    first = zoo.select_model(name).state_dict()
    torch.manual_seed(5)
    second = zoo.select_model(name).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_select_model_returns_fresh_models() -> None:
    """Each call builds a new model rather than handing out a shared one."""
    zoo = ModelZoo()
    assert zoo.select_model("cnn") is not zoo.select_model("cnn")


def test_unknown_model_name_rejected() -> None:
    """An unknown name is rejected, naming it and the allowed names."""
    with pytest.raises(
        ConfigurationError,
        match=r"'resnet'.*\('cnn', 'mlp', 'cifar_cnn', 'resnet18', 'femnist_cnn'",
    ):
        ModelZoo().select_model("resnet")


def test_cnn_needs_image_shape() -> None:
    """A flat input shape cannot build the CNN but can build the MLP."""
    zoo = ModelZoo(input_shape=(20,), num_classes=3)
    assert zoo.select_model("mlp")(torch.zeros(4, 20)).shape == (4, 3)
    with pytest.raises(ConfigurationError, match=r"'cnn' model needs input_shape"):
        zoo.select_model("cnn")


@pytest.mark.parametrize("image_size", [8, 9, 12, 28, 32])
def test_cnn_image_sizes(image_size: int) -> None:
    """The CNN works for square images of side 8 and up."""
    model = CNN(in_channels=2, num_classes=4, image_size=image_size)
    assert model(torch.zeros(3, 2, image_size, image_size)).shape == (3, 4)


def test_cnn_too_small_image_rejected() -> None:
    """An image too small for two 2x2 pools is rejected."""
    with pytest.raises(ConfigurationError, match=r"image height must be .* got 3"):
        CNN(image_size=3)


def test_mlp_hidden_layers() -> None:
    """The MLP has one linear layer per hidden width plus the output layer."""
    model = MLP(10, 3, hidden=(8, 6))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (10, 8),
        (8, 6),
        (6, 3),
    ]


def test_mlp_without_hidden_layers_is_linear() -> None:
    """hidden=() gives a single linear layer (logistic regression)."""
    linears = [
        m for m in MLP(10, 3, hidden=()).modules() if isinstance(m, torch.nn.Linear)
    ]
    assert len(linears) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": ()}, r"input_shape must not be empty"),
        ({"input_shape": (1, 0, 12)}, r"input_shape dimension .* got 0"),
        ({"num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
    ],
)
def test_invalid_zoo_arguments_rejected(
    kwargs: dict[str, object], message: str
) -> None:
    """Bad zoo arguments fail at construction."""
    with pytest.raises(ConfigurationError, match=message):
        ModelZoo(**kwargs)  # type: ignore[arg-type]


def test_cnn_bn_has_batchnorm_and_a_trailing_head() -> None:
    """ "cnn_bn" is the CNN with BatchNorm after each convolution, its last
    two parameters the classifier (FedPer's head), BatchNorm in between."""
    torch.manual_seed(0)
    model = ModelZoo((3, 16, 16), 7).select_model("cnn_bn")
    assert model(torch.randn(5, 3, 16, 16)).shape == (5, 7)
    names = [n for n, _ in model.named_parameters()]
    assert names[-2:] == ["fc2.weight", "fc2.bias"]
    assert {"bn1.running_mean", "bn2.running_var"} <= set(model.state_dict())
    plain = ModelZoo((3, 16, 16), 7).select_model("cnn")
    weights = sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in model.parameters()) == weights + 2 * (16 + 32)
