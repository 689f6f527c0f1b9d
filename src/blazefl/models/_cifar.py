"""CIFAR-sized reference models: the classic LeNet-style CNN and a ResNet-18.

`CifarCNN` is the small CNN of McMahan et al. (2017) and the PyTorch CIFAR-10
tutorial (about 62 thousand parameters); `ResNet18` is the CIFAR variant of He
et al.'s ResNet-18 (3x3 stem, no max-pool, about 11.2 million parameters), for
benchmarks where communication and aggregation cost matter. Both are written
here, not downloaded.

`ResNet18` uses BatchNorm: its running statistics and ``num_batches_tracked``
are buffers, so they are part of `blazefl.core.serialize_model`'s vector and
are averaged (or stepped by a server optimizer) like the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blazefl._validate import check_int

__all__ = ["BasicBlock", "CifarCNN", "ResNet18"]


class CifarCNN(nn.Module):
    """conv5x5(→6) · max-pool · conv5x5(6→16) · max-pool · fc120 · fc84 · fc.

    The LeNet-style CIFAR CNN: 62,006 parameters for 3x32x32 inputs and ten
    classes. `image_size` is the side of square inputs, or `(height, width)`;
    each side must be at least 16 (two unpadded 5x5 convolutions and two 2x2
    pools).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        check_int("in_channels", in_channels, 1)
        height, width = (
            (image_size, image_size) if isinstance(image_size, int) else image_size
        )
        check_int("image height", height, 16)
        check_int("image width", width, 16)
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        out_h = ((height - 4) // 2 - 4) // 2
        out_w = ((width - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * out_h * out_w, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)  # type: ignore[no-any-return]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BatchNorm stages with an identity (or 1x1 projection) skip."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant: 3x3 stem, no max-pool, BasicBlocks [2, 2, 2, 2].

    11,173,962 parameters for ten classes (plus BatchNorm buffers). Global
    average pooling makes it accept any input of at least 1x1 pixels, but it is
    sized for 32x32.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        check_int("in_channels", in_channels, 1)
        self.conv1 = nn.Conv2d(
            in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(64)
        stages: list[nn.Module] = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(
                nn.Sequential(
                    BasicBlock(in_planes, planes, stride),
                    BasicBlock(planes, planes, 1),
                )
            )
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)  # type: ignore[no-any-return]
