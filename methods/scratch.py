"""Training the pruned architecture from scratch (Liu et al., "Rethinking the Value of Network
Pruning", ICLR 2019): Scratch-E trains it for the same epochs as the pruning pipeline, Scratch-B
for the same training FLOPs. The architecture is the source method's (for unstructured pruning:
the same weight masks); the weights are a fresh standard init. Which variant runs, and for how
long, is the protocol's (SX-A or SX-B). When the source has a pruning phase, the harness takes
the architecture from the source's pruned run, so it is the one that phase led to.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunebench.method import METHODS, Method, PruneContext, Target, register_method
from prunebench.pruning import PruningPlan


class ScratchSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field("l1norm", description="method whose pruned architecture is trained")
    source_settings: dict[str, Any] = Field({}, description="that method's settings")


@register_method
class Scratch(Method):
    name = "scratch"
    description = "the source method's pruned architecture trained from a fresh init (Scratch-E/B)"
    Settings = ScratchSettings
    from_scratch = True

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, ScratchSettings)
        source = METHODS.get(settings.source)
        plan = source.plan(model, target, source.settings(settings.source_settings), ctx)
        return plan if plan.masks else PruningPlan.first_k(plan.widths())
