"""Lottery tickets (Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019).

Magnitude masks are taken from the trained base (globally by default, as the paper does for its
deeper networks); then the surviving weights are rewound to their values at initialisation, or at
epoch `rewind_epoch` of the base training (Frankle et al. 2020's late rewinding), and the masked
network retrains. The rewind is the harness's: it restores the base run's init bit for bit (the
same seeded construction) or replays its first epochs with the same data order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunebench.method import Method, MethodSettings, PruneContext, Target, register_method
from prunebench.methods.magnitude import magnitude_masks, weights
from prunebench.pruning import PruningPlan
from prunebench.targets import TargetRule


class LotterySettings(MethodSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Literal["layer", "global"] = Field("global", description="magnitude threshold per layer or global")
    layers: Literal["conv", "conv+linear"] = Field("conv+linear", description="which weights may be pruned")
    rewind_epoch: int = Field(0, ge=0, description="epoch of the base training the weights rewind to (0: init)")


@register_method
class Lottery(Method):
    name = "lottery"
    description = "lottery ticket (Frankle & Carbin 2019): magnitude masks, weights rewound to init or epoch k"
    Settings = LotterySettings
    granularity = "weight"
    hooks = ("rewind",)

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, LotterySettings)
        return PruningPlan(masks=magnitude_masks(weights(model, settings.layers), target,
                                                 settings.scope))

    def target_rule(self, settings: BaseModel) -> TargetRule:
        assert isinstance(settings, LotterySettings)
        return TargetRule(scope=settings.scope, weights=settings.layers)

    def rewind_epoch(self, settings: BaseModel) -> int | None:
        assert isinstance(settings, LotterySettings)
        return settings.rewind_epoch
