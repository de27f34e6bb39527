"""The narrow interface a pruning method plugs in through, and the method registry.

A method scores and plans (which filters each layer keeps); the harness owns the training loop,
the cutting and the audit. Optional hooks extend the loop without forking it: a regulariser
added to the loss during the pruning phase (e.g. network slimming's L1 on BN scales).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from benchmark._registry import Registry
from benchmark.config import Protocol, Recipe
from benchmark.errors import UserError
from benchmark.models import Arch
from benchmark.pruning import PruningPlan


class NoSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Choices(BaseModel):
    """A method's own choices for what its protocol's setup leaves free (None: the protocol's).

    Declaring a choice for something the setup fixes is not refused up front: the run trains as
    declared and the audit stops it with the rule it broke, so an unfair claim cannot pass.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: Recipe | None = Field(None, description="own base recipe (free under S1 only)")
    prune: Recipe | None = Field(None, description="own pruning-phase recipe")
    retrain: Recipe | None = Field(None, description="own retraining recipe (e.g. its LR schedule under S3.1)")


@dataclass(frozen=True)
class Target:
    """What to prune to: a uniform ratio over the prunable layers, or a named layer-wise config."""

    ratio: float | None = None
    config: str | None = None

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.config is None):
            raise UserError("give either a pruning ratio (--ratio) or a named config (--config), not both")
        if self.ratio is not None and not 0 <= self.ratio < 1:
            raise UserError(f"pruning ratio {self.ratio} is outside [0, 1): pass e.g. --ratio 0.5")

    def keep_counts(self, arch: Arch, model: nn.Module) -> dict[str, int]:
        """Filters each prunable conv keeps: Li et al.'s int(C(1-p)), at least one."""
        if self.config is not None:
            if self.config not in arch.configs:
                raise UserError(
                    f"architecture {arch.name!r} has no named config {self.config!r}. "
                    f"Valid configs: {', '.join(sorted(arch.configs)) or '(none)'}."
                )
            return arch.configs[self.config](model)
        modules = dict(model.named_modules())
        assert self.ratio is not None
        # the epsilon keeps e.g. 10 x (1 - 0.3) = 6.9999... from rounding down to 6
        return {
            name: max(1, int(modules[name].out_channels * (1 - self.ratio) + 1e-9))
            for name in arch.prunable(model)
        }

    def label(self) -> str:
        return f"config {self.config}" if self.config is not None else f"{self.ratio:g}"


@dataclass
class PruneContext:
    """What a method may read when it plans: never the protocol's mutable state."""

    arch: Arch
    input_shape: tuple[int, int, int]
    generator: torch.Generator


class Method:
    """Base class of a registered pruning method."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Settings: ClassVar[type[BaseModel]] = NoSettings
    granularity: ClassVar[str] = "filter"
    needs_data: ClassVar[bool] = False
    # True for baselines that train the pruned architecture from a fresh init (Scratch-E/B).
    from_scratch: ClassVar[bool] = False

    def settings(self, raw: dict) -> BaseModel:
        return self.Settings(**raw)

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        raise NotImplementedError

    def choices(self, protocol: Protocol, settings: BaseModel) -> Choices:
        """What the method chooses where the setup leaves it free. `protocol` is read-only: the
        harness checks it is unchanged afterwards."""
        return Choices()

    def regularizer(self, model: nn.Module, settings: BaseModel) -> torch.Tensor | None:
        """A term added to the loss during the pruning phase; None for one-shot methods."""
        return None


METHODS: Registry[Method] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    METHODS.register(cls.name, cls())
    return cls


def load_builtin_methods() -> Registry[Method]:
    """Import every module of the `methods` package (registration happens on import)."""
    import methods

    for info in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"methods.{info.name}")
    return METHODS
