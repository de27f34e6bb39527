"""Random filter pruning: the sanity baseline. Each prunable conv keeps a uniformly random set
of filters of the same size as l1norm's (same layer-wise ratios and rounding), drawn from the
run's seeded generator. A method that cannot beat it at equal ratios chooses nothing of value.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunebench.method import Method, MethodSettings, PruneContext, Target, register_method
from prunebench.methods._common import prunable_convs
from prunebench.pruning import PruningPlan
from prunebench.targets import TargetRule


class RandomSettings(MethodSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rounding: Literal["li", "wang"] = Field("li", description="filters kept per layer, as in l1norm")


@register_method
class RandomFilters(Method):
    name = "random"
    description = "random filters at l1norm's layer-wise ratios (sanity baseline)"
    Settings = RandomSettings

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, RandomSettings)
        convs = prunable_convs(model, ctx)
        counts = target.keep_counts(ctx.arch, model, settings.rounding)
        return PruningPlan(keep={
            name: tuple(sorted(torch.randperm(convs[name].out_channels, generator=ctx.generator)[:k].tolist()))
            for name, k in counts.items()})

    def target_rule(self, settings: BaseModel) -> TargetRule:
        assert isinstance(settings, RandomSettings)
        return TargetRule(scope="layer", rounding=settings.rounding)
