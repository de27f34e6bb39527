"""The architecture registry entry and helpers shared by every architecture family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from benchmark._registry import Registry

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


ARCHS: Registry[Arch] = Registry("architecture")


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d layers in network (registration) order; conv id k is index k-1."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def reinitialise(model: nn.Module) -> nn.Module:
    """Fresh standard PyTorch init of every layer, as at construction (Scratch-E/B)."""
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return model
