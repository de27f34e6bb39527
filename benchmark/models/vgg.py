"""VGG for CIFAR as in Li et al. (2017) and Liu et al. (2019): 3x3 conv-BN-ReLU stacks,
2x2 average pool, classifier Linear(512,512)-BN1d-ReLU-Linear(512,classes).

The conv stacks are Simonyan & Zisserman's (2015) configurations A (VGG-11), B (VGG-13),
D (VGG-16) and E (VGG-19)."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.models._arch import ARCHS, Arch, conv_layers

CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512],
}
# Li et al.'s VGG-16-A: the filters each conv keeps.
VGG16_A = [32, 64, "M", 128, 128, "M", 256, 256, 256, "M", 256, 256, 256, "M", 256, 256, 256]


class CifarVGG(nn.Module):
    def __init__(self, cfg: list[int | str], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1, bias=False),
                           nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                channels = int(v)
        layers.append(nn.AvgPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(channels, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def widths_config(cfg: list[int | str]):
    def keep(model: nn.Module) -> dict[str, int]:
        return dict(zip(conv_layers(model), [int(v) for v in cfg if v != "M"]))

    return keep


NAMED_CONFIGS = {"vgg11": {}, "vgg13": {}, "vgg16": {"A": widths_config(VGG16_A)}, "vgg19": {}}
for _name, _configs in NAMED_CONFIGS.items():
    ARCHS.register(
        _name,
        Arch(
            name=_name,
            build=lambda num_classes, in_channels, cfg=CFGS[_name]: CifarVGG(cfg, num_classes, in_channels),
            input_shape=(3, 32, 32),
            num_classes=10,
            description=f"{_name.upper()} for CIFAR (conv-BN-ReLU, avg pool, 2-layer classifier)",
            prunable=conv_layers,
            configs=_configs,
        ),
    )
