"""Growing regularisation, GReg-1 (Wang et al., "Neural Pruning via Growing Regularization",
ICLR 2021).

Before the pruning phase the filters to prune are chosen by L1 norm at the layer-wise ratios
(the `intent`). During the phase those filters, and only those, get an L2 penalty
½·λ·||W_j||² whose λ grows by `delta` every `update_every` steps up to `ceiling` (the paper's
1e-4, 10 and 1): the growing penalty drives them towards zero while the rest of the network
adapts. Then they are removed and the network retrains.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from prunebench.method import Method, PhaseSettings, PruneContext, Target, register_method
from prunebench.methods.l1norm import L1Norm, L1Settings
from prunebench.pruning import PruningPlan


class GRegSettings(PhaseSettings):
    delta: float = Field(1e-4, gt=0, description="λ increment")
    update_every: int = Field(10, ge=1, description="steps between λ increments (K_u)")
    ceiling: float = Field(1.0, gt=0, description="the largest λ")
    rounding: Literal["li", "wang"] = Field("wang", description="filters kept per layer, as in l1norm")


def penalty(step: int, settings: GRegSettings) -> float:
    """λ at `step` of the pruning phase: δ·floor(step / K_u), capped at the ceiling."""
    return min(settings.ceiling, settings.delta * (step // settings.update_every))


@register_method
class GReg(Method):
    name = "greg"
    description = "growing regularisation GReg-1 (Wang et al. 2021): growing L2 on the L1-chosen filters"
    Settings = GRegSettings
    prune_phase = True
    hooks = ("regularizer",)

    def intent(self, model: nn.Module, target: Target, settings, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, GRegSettings)
        return L1Norm().plan(model, target, L1Settings(rounding=settings.rounding), ctx)

    def regularizer(self, model: nn.Module, settings, step: int, intent: PruningPlan | None) -> torch.Tensor | None:
        assert isinstance(settings, GRegSettings)
        lam = penalty(step, settings)
        if intent is None or not lam:
            return None
        modules = dict(model.named_modules())
        terms = []
        for name, keep in intent.keep.items():
            w = modules[name].weight
            dropped = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
            dropped[list(keep)] = False
            terms.append(w[dropped].pow(2).sum())
        return 0.5 * lam * sum(terms) if terms else None

    def plan(self, model: nn.Module, target: Target, settings, ctx: PruneContext) -> PruningPlan:
        # the filters regularised in the phase; without a phase (e.g. an S4.x protocol with none),
        # the same L1 choice on the weights as they are
        return ctx.intent if ctx.intent is not None else self.intent(model, target, settings, ctx)
