"""Lottery tickets (Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019).

Iterative magnitude pruning, as the paper finds tickets: magnitude masks are taken from the
trained network (globally by default, as the paper does for its deeper networks), the surviving
weights are rewound to their values at initialisation, or at epoch `rewind_epoch` of the base
training (Frankle et al. 2020's late rewinding), and the masked network trains again; each round
removes `per_round` (the paper's 20%) of the weights that remain, until the target, after which
the masked, rewound network retrains. `rounds` fixes the number of rounds instead (the fraction
per round then reaches the target in that many); `rounds=1` is the one-shot ticket. The rounds
and the rewind are the harness's: it restores the base run's init bit for bit (the same seeded
construction) or replays its first epochs with the same data order, and trains every round as a
phase of the run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from prunebench.config import Rounds
from prunebench.method import Method, MethodSettings, PruneContext, Target, register_method
from prunebench.methods.magnitude import magnitude_masks, weights
from prunebench.pruning import PruningPlan
from prunebench.targets import TargetRule


class LotterySettings(MethodSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Literal["layer", "global"] = Field("global", description="magnitude threshold per layer or global")
    layers: Literal["conv", "conv+linear"] = Field("conv+linear", description="which weights may be pruned")
    rewind_epoch: int = Field(0, ge=0, description="epoch of the base training the weights rewind to (0: init)")
    per_round: float = Field(0.2, gt=0, lt=1, description="fraction of the remaining weights each round removes "
                             "(the paper's 20%), when `rounds` is not given")

    @model_validator(mode="after")
    def _one_schedule(self) -> LotterySettings:
        if self.rounds is not None and "per_round" in self.model_fields_set:
            raise ValueError("give 'rounds' (that many equal rounds) or 'per_round' (that fraction a round), not both")
        return self


@register_method
class Lottery(Method):
    name = "lottery"
    description = ("lottery ticket (Frankle & Carbin 2019): iterative magnitude pruning, 20% per round, weights "
                   "rewound to init or epoch k")
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

    def rounds(self, settings: BaseModel) -> Rounds | None:
        assert isinstance(settings, LotterySettings)
        if settings.rounds == 1:
            return None  # the one-shot ticket
        return Rounds(rounds=settings.rounds, per_round=None if settings.rounds else settings.per_round,
                      epochs=settings.round_epochs, between="rewind")
