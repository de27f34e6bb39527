"""DenseNet for CIFAR (Huang et al. 2017), the basic version: depth 3n+4, growth rate k, no
bottleneck and no compression, as in Liu et al.'s (2017) network-slimming code.

A 3x3 stem conv of 16 filters (Huang et al. Sec. 3: 16 for the basic DenseNet, 2k only for
DenseNet-BC; Liu et al.'s code uses 2k = 24 here, whose FLOPs match their Tab. 1 less well);
three dense blocks of n layers BN-ReLU-conv3x3(k), each concatenating its k new channels to its
input; between blocks a transition BN-ReLU-conv1x1 (same width) and 2x2 average pool; a final
BN-ReLU, global average pool and linear classifier. No dropout (the papers' setting with data
augmentation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.models._arch import ARCHS, Arch, conv_layers


class DenseLayer(nn.Module):
    def __init__(self, in_planes: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv1(F.relu(self.bn1(x)))], 1)


class Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class CifarDenseNet(nn.Module):
    def __init__(self, depth: int = 40, growth: int = 12, num_classes: int = 10, in_channels: int = 3,
                 stem: int = 16) -> None:
        super().__init__()
        if (depth - 4) % 3:
            raise ValueError(f"DenseNet depth must be 3n+4, got {depth}")
        n = (depth - 4) // 3
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        planes = stem
        for b in (1, 2, 3):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(planes, growth))
                planes += growth
            setattr(self, f"dense{b}", nn.Sequential(*layers))
            if b < 3:
                setattr(self, f"trans{b}", Transition(planes, planes))
        self.bn = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.trans1(self.dense1(self.conv1(x)))
        out = self.dense3(self.trans2(self.dense2(out)))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def dense_and_transition_convs(model: nn.Module) -> list[str]:
    """Every conv but the stem: the dense layers' and the transitions'."""
    return [name for name in conv_layers(model) if name.startswith(("dense", "trans"))]


ARCHS.register(
    "densenet40",
    Arch(
        name="densenet40",
        build=lambda num_classes, in_channels: CifarDenseNet(40, 12, num_classes, in_channels),
        input_shape=(3, 32, 32),
        num_classes=10,
        description="CIFAR DenseNet-40, growth 12, no bottleneck or compression (Huang et al. 2017)",
        prunable=dense_and_transition_convs,
    ),
)
