"""Small reference models and the `ModelSelector` that builds them by name.

They are sized for the built-in synthetic data (12x12 single-channel images)
and for MNIST-like inputs: big enough to learn, small enough that a hundred
simulated clients train in seconds on a CPU.
"""

from __future__ import annotations

import itertools
import math
from typing import Final

import torch
import torch.nn.functional as F
from torch import nn

from blazefl._exceptions import ConfigurationError
from blazefl._validate import check_int
from blazefl.models._cifar import CifarCNN, ResNet18
from blazefl.models._leaf import BagOfWordsClassifier, LeafCharLSTM, LeafFEMNISTCNN

__all__ = ["CNN", "CNNBN", "MLP", "MODEL_NAMES", "ModelZoo"]

MODEL_NAMES: Final = (
    "cnn",
    "mlp",
    "cifar_cnn",
    "resnet18",
    "femnist_cnn",
    "char_lstm",
    "bow",
    "cnn_bn",
)


class CNN(nn.Module):
    """A LeNet-style net: two 3x3 conv + 2x2 max-pool stages, then two linear layers.

    `image_size` is the side of square inputs, or `(height, width)`; each side
    must be at least 4 (the two pools halve it twice).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int | tuple[int, int] = 12,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("num_classes", num_classes, 2)
        height, width = (
            (image_size, image_size) if isinstance(image_size, int) else image_size
        )
        check_int("image height", height, 4)
        check_int("image width", width, 4)
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * (height // 4) * (width // 4), 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)  # type: ignore[no-any-return]


class CNNBN(nn.Module):
    """`CNN` with BatchNorm after each convolution (``bn1``, ``bn2``).

    For FedBN (local BatchNorm) and feature-shifted clients: the same sizes as
    `CNN`, plus each BatchNorm layer's affine parameters and running
    statistics. The cohort executor refuses it (a batched step does not
    update running statistics).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int | tuple[int, int] = 12,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("num_classes", num_classes, 2)
        height, width = (
            (image_size, image_size) if isinstance(image_size, int) else image_size
        )
        check_int("image height", height, 4)
        check_int("image width", width, 4)
        # Declared in forward order, so the last parameters are the head.
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * (height // 4) * (width // 4), 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)  # type: ignore[no-any-return]


class MLP(nn.Module):
    """A fully connected net over flattened inputs, ReLU between `hidden` layers.

    `hidden=()` gives multinomial logistic regression.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int = 10,
        hidden: tuple[int, ...] = (64,),
    ) -> None:
        super().__init__()
        check_int("in_features", in_features)
        check_int("num_classes", num_classes, 2)
        for width in hidden:
            check_int("hidden layer width", width)
        widths = (in_features, *hidden, num_classes)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(fan_in, fan_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


class ModelZoo:
    """Builds the reference models by name for inputs of `input_shape`.

    A `ModelSelector[str]`: pass it to a server handler or client trainer with
    a name from `MODEL_NAMES`. Initial weights come from the global torch RNG,
    so seed it (`blazefl.reproducibility.seed_everything`) before selecting.
    `vocab_size` is the number of word ids of text inputs (the ``"bow"``
    model; `blazefl.data.LeafSent140` has it as ``vocab_size``).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 12, 12),
        num_classes: int = 10,
        *,
        vocab_size: int | None = None,
    ) -> None:
        if not input_shape:
            raise ConfigurationError("input_shape must not be empty")
        for dim in input_shape:
            check_int("every input_shape dimension", dim)
        check_int("num_classes", num_classes, 2)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.vocab_size = vocab_size

    def select_model(self, model_name: str) -> nn.Module:
        """A freshly initialised model `model_name` (one of `MODEL_NAMES`).

        "cnn" and "mlp" are small models for the built-in synthetic data
        ("cnn_bn", `CNNBN`: "cnn" with BatchNorm, for FedBN);
        "cifar_cnn" (`CifarCNN`, sides >= 16) and "resnet18" (`ResNet18`) are
        sized for 3x32x32 CIFAR images; "femnist_cnn" (`LeafFEMNISTCNN`, 1x28x28),
        "char_lstm" (`LeafCharLSTM`, character ids, one class per character)
        and "bow" (`BagOfWordsClassifier`, word ids) are for LEAF's data sets.
        """
        if model_name in ("femnist_cnn", "char_lstm", "bow"):
            return self._leaf_model(model_name)
        if model_name == "mlp":
            return MLP(math.prod(self.input_shape), self.num_classes)
        if model_name in ("cnn", "cnn_bn", "cifar_cnn", "resnet18"):
            if len(self.input_shape) != 3:
                raise ConfigurationError(
                    f"the {model_name!r} model needs input_shape (channels, height, "
                    f"width), got {self.input_shape!r}; use 'mlp' for flat inputs"
                )
            channels, height, width = self.input_shape
            if model_name == "cifar_cnn":
                return CifarCNN(self.num_classes, channels, (height, width))
            if model_name == "resnet18":
                return ResNet18(self.num_classes, channels)
            if model_name == "cnn_bn":
                return CNNBN(channels, self.num_classes, (height, width))
            return CNN(channels, self.num_classes, (height, width))
        raise ConfigurationError(
            f"unknown model name {model_name!r}; expected one of {MODEL_NAMES}"
        )

    def _leaf_model(self, model_name: str) -> nn.Module:
        if model_name == "femnist_cnn":
            if self.input_shape != (1, 28, 28):
                raise ConfigurationError(
                    "the 'femnist_cnn' model needs 1x28x28 inputs, got "
                    f"input_shape {self.input_shape!r}"
                )
            return LeafFEMNISTCNN(self.num_classes)
        if len(self.input_shape) != 1:
            raise ConfigurationError(
                f"the {model_name!r} model needs token-id inputs of shape "
                f"(length,), got input_shape {self.input_shape!r}"
            )
        if model_name == "char_lstm":
            return LeafCharLSTM(self.num_classes)
        if self.vocab_size is None:
            raise ConfigurationError(
                "the 'bow' model needs ModelZoo(vocab_size=...), the number of "
                "word ids of the data set"
            )
        return BagOfWordsClassifier(self.vocab_size, self.num_classes)
