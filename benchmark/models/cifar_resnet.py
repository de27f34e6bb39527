"""CIFAR ResNets of He et al. (2016), Sec. 4.2: 6n+2 layers, option-A shortcuts.

Option A: where the shape changes, the shortcut subsamples with stride 2 and zero-pads the new
channels (no parameters). Depths 20, 32, 44, 56, 110 (He et al.'s Tab. 6); named configs are
Li et al.'s (2017) ResNet-56/110-A/B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.models._arch import ARCHS, Arch, ResNetStages, conv_layers


class ShortcutA(nn.Module):
    """Stride-2 subsample plus zero-padded channels (He et al.'s option A)."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes = stride != 1 or in_planes != planes
        self.shortcut = ShortcutA((planes - in_planes) // 2) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def first_convs(model: nn.Module) -> list[str]:
    """The first conv of every residual block: the only ones Li et al. prune in ResNets."""
    return [name for name in conv_layers(model) if name.endswith(".conv1")]


def li_config(skip: list[int], stage_ratios: list[float]):
    """Li et al.'s ResNet config: per-stage ratio p, skipped conv ids, keep int(C(1-p)).

    Conv ids count convs in network order: the stem is 1, block j's first conv is 2+2j; a
    block's stage is 1 if its id <= 2n, 2 if <= 4n, else 3 (n blocks per stage).
    """

    def keep(model: nn.Module) -> dict[str, int]:
        convs = dict(model.named_modules())
        names = conv_layers(model)
        n = len(model.layer1)
        out = {}
        for conv_id, name in enumerate(names, start=1):
            if not name.endswith(".conv1") or conv_id in skip:
                continue
            stage = 0 if conv_id <= 2 * n else 1 if conv_id <= 4 * n else 2
            channels = convs[name].out_channels
            out[name] = int(channels * (1 - stage_ratios[stage]))
        return out

    return keep


def _register(depth: int, configs: dict) -> None:
    name = f"resnet{depth}"
    ARCHS.register(
        name,
        Arch(
            name=name,
            build=lambda num_classes, in_channels: CifarResNet(depth, num_classes, in_channels),
            input_shape=(3, 32, 32),
            num_classes=10,
            description=f"CIFAR ResNet-{depth} (He et al. 2016, option-A shortcuts)",
            prunable=first_convs,
            configs=configs,
            stage_of=ResNetStages(3),
        ),
    )


_register(20, {})
_register(32, {})
_register(44, {})
_register(56, {
    "A": li_config([16, 20, 38, 54], [0.1, 0.1, 0.1]),
    "B": li_config([16, 18, 20, 34, 38, 54], [0.6, 0.3, 0.1]),
})
_register(110, {
    "A": li_config([36], [0.5, 0.0, 0.0]),
    "B": li_config([36, 38, 74], [0.5, 0.4, 0.3]),
})
