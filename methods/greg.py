"""Growing regularisation, GReg-1 (Wang et al., "Neural Pruning via Growing Regularization",
ICLR 2021).

Before the pruning phase the filters to prune are chosen by L1 norm at the layer-wise ratios
(the `intent`). During the phase those filters, and only those, get an L2 penalty
½·λ·||W_j||² whose λ grows by `delta` every `update_every` steps up to `ceiling` (the paper's
1e-4, 10 and 1; the harness's `growing_l2` penalty): the growing penalty drives them towards
zero while the rest of the network adapts. Then they are removed and the network retrains.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from prunebench.method import Method, PhaseSettings, PruneContext, Target, register_method
from prunebench.methods.l1norm import L1Norm, L1Settings
from prunebench.penalties import GrowingL2
from prunebench.pruning import PruningPlan
from prunebench.targets import TargetRule


class GRegSettings(PhaseSettings):
    delta: float = Field(1e-4, gt=0, description="λ increment")
    update_every: int = Field(10, ge=1, description="steps between λ increments (K_u)")
    ceiling: float = Field(1.0, gt=0, description="the largest λ")
    rounding: Literal["li", "wang"] = Field("wang", description="filters kept per layer, as in l1norm")


@register_method
class GReg(Method):
    name = "greg"
    description = "growing regularisation GReg-1 (Wang et al. 2021): growing L2 on the L1-chosen filters"
    Settings = GRegSettings
    prune_phase = True

    def intent(self, model: nn.Module, target: Target, settings, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, GRegSettings)
        return L1Norm().plan(model, target, L1Settings(rounding=settings.rounding), ctx)

    def penalty(self, settings) -> GrowingL2:
        assert isinstance(settings, GRegSettings)
        return GrowingL2(delta=settings.delta, update_every=settings.update_every, ceiling=settings.ceiling)

    def plan(self, model: nn.Module, target: Target, settings, ctx: PruneContext) -> PruningPlan:
        # the filters regularised in the phase; without a phase (e.g. an S4.x protocol with none),
        # the same L1 choice on the weights as they are
        return ctx.intent if ctx.intent is not None else self.intent(model, target, settings, ctx)

    def target_rule(self, settings) -> TargetRule:
        assert isinstance(settings, GRegSettings)
        return TargetRule(scope="layer", rounding=settings.rounding)
