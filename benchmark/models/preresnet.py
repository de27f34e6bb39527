"""Pre-activation ResNet for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual
Networks"), bottleneck version, depth 9n+2, as in the `preresnet` of Liu et al.'s (2017)
network-slimming code: stem 3x3 conv of 16; three stages of n bottlenecks BN-ReLU-1x1,
BN-ReLU-3x3 (the stride), BN-ReLU-1x1 with widths 16/32/64 and expansion 4; where the shape
changes the shortcut is a 1x1 conv of the block's input; a final BN-ReLU before the pool.
Liu et al.'s channel-selection layers (a slimming device) are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.models._arch import ARCHS, Arch, ResNetStages, block_inner_convs

EXPANSION = 4


class PreActBottleneck(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out_planes = planes * EXPANSION
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        changes = stride != 1 or in_planes != out_planes
        self.downsample = (nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False))
                           if changes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class PreResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"bottleneck pre-activation ResNet depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(PreActBottleneck(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes * EXPANSION
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


ARCHS.register(
    "preresnet164",
    Arch(
        name="preresnet164",
        build=lambda num_classes, in_channels: PreResNet(164, num_classes, in_channels),
        input_shape=(3, 32, 32),
        num_classes=10,
        description="CIFAR pre-activation ResNet-164, bottleneck (He et al. 2016; Liu et al. 2017's code)",
        prunable=block_inner_convs,
        stage_of=ResNetStages(3, stem=("conv1",)),
    ),
)
