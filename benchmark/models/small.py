"""A small CNN for the default suite: three 3x3 conv-BN-ReLU blocks, global pool, linear head.

Sized so that the default suite's main job (3 seeds of base, pruned + retrained, and Scratch-B)
finishes in minutes on two CPU cores. It downsamples with strided convs (the stem and the last
conv) rather than max-pooling: on CPU a full-resolution first layer and max-pool dominated the
step time, and the strided stem halved it.
"""

from __future__ import annotations

import torch
from torch import nn

from prunebench.models._arch import ARCHS, Arch, conv_layers


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 widths: tuple[int, int, int] = (8, 16, 32)) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, a, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(a), nn.ReLU(),
            nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
            nn.Conv2d(b, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        )
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


ARCHS.register(
    "smallcnn",
    Arch(
        name="smallcnn",
        build=lambda num_classes, in_channels: SmallCNN(num_classes, in_channels),
        input_shape=(1, 28, 28),
        num_classes=10,
        description="small CNN, 3 conv-BN-ReLU blocks of 8/16/32 filters, strided (default suite)",
        prunable=conv_layers,
    ),
)
