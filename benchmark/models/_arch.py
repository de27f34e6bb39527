"""The architecture registry entry and helpers shared by every architecture family."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from prunebench._registry import Registry

# A named layer-wise config maps a built model to {conv layer name: filters kept}.
NamedConfig = Callable[[nn.Module], dict[str, int]]


@dataclass(frozen=True)
class Arch:
    """How to build an architecture and which of its convs filter pruning may cut."""

    name: str
    build: Callable[[int, int], nn.Module]  # (num_classes, in_channels) -> model
    input_shape: tuple[int, int, int]  # (C, H, W) the architecture is designed for
    num_classes: int
    description: str
    # Convs whose output filters the pruning convention of Li et al. may remove.
    prunable: Callable[[nn.Module], list[str]]
    configs: dict[str, NamedConfig] = field(default_factory=dict)
    # For residual networks: a layer's module name -> its stage, in Wang et al.'s convention
    # (stage-wise pruning ratios): 0 = the stem, 1..k = the residual stages (layer1..layerk),
    # k+1 = the classifier. None for architectures without stages.
    stage_of: Callable[[str], int] | None = None


ARCHS: Registry[Arch] = Registry("architecture")


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d layers in network (registration) order; conv id k is index k-1."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def block_inner_convs(model: nn.Module) -> list[str]:
    """Every conv of every residual block (`layerI.J`) but its last, shortcut excluded:
    conv1 of a basic block, conv1 and conv2 of a bottleneck. Cutting only these leaves the
    residual widths, and hence every shortcut, unchanged."""
    out = []
    for name, block in model.named_modules():
        if re.fullmatch(r"layer\d+\.\d+", name):
            convs = [n for n, m in block.named_children()
                     if isinstance(m, nn.Conv2d) and re.fullmatch(r"conv\d+", n)]
            out += [f"{name}.{n}" for n in convs[:-1]]
    return out


@dataclass(frozen=True)
class ResNetStages:
    """`Arch.stage_of` for a network laid out as torchvision's ResNet: stem modules, then
    `layer1` .. `layer{stages}`, then a head (`fc`)."""

    stages: int
    stem: tuple[str, ...] = ("conv1", "bn1")
    head: tuple[str, ...] = ("fc",)

    def __call__(self, name: str) -> int:
        match = re.match(r"layer(\d+)(\.|$)", name)
        if match and 1 <= int(match.group(1)) <= self.stages:
            return int(match.group(1))
        if name in self.stem:
            return 0
        if name in self.head:
            return self.stages + 1
        raise ValueError(f"{name!r} is in no stage: expected a stem module ({', '.join(self.stem)}), "
                         f"one under layer1 .. layer{self.stages}, or the head ({', '.join(self.head)})")


def reinitialise(model: nn.Module) -> nn.Module:
    """Fresh standard PyTorch init of every layer, as at construction (Scratch-E/B)."""
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return model
