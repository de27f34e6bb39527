"""L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

Each prunable conv keeps its filters of largest L1 norm (sum of absolute kernel weights), chosen
independently per layer. In ResNets only the inner convs of each residual block are pruned (the
architecture's `prunable`), so the residual additions keep their width. The layer-wise ratio is
the target's uniform ratio, or per stage (`stage_ratios`, Wang et al.'s ResNet-50 setting
`[0, 0.6, 0.6, 0.6, 0.21, 0]` for stem, four stages, fc); the filter count per layer follows
Li et al.'s rounding (keep int(C(1-p))) or Wang et al.'s (prune min(ceil(pC), C-1)).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunebench.errors import UserError
from prunebench.method import Method, MethodSettings, PruneContext, Target, register_method
from prunebench.methods._common import layer_plan, prunable_convs, top_k
from prunebench.pruning import PruningPlan
from prunebench.targets import TargetRule


class L1Settings(MethodSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rounding: Literal["li", "wang"] = Field(
        "li", description="filters kept per layer: 'li' keeps int(C(1-p)); 'wang' prunes min(ceil(pC), C-1)")
    stage_ratios: list[float] | None = Field(
        None, description="a ratio per stage instead of the uniform one: stem, each residual stage, fc "
        "(Wang et al.'s ResNet-50: [0, 0.6, 0.6, 0.6, 0.21, 0]); needs an architecture with stages. The "
        "target's uniform ratio is then not used (the row's label carries the stage ratios)")


def l1_keep(weight: torch.Tensor, keep: int) -> tuple[int, ...]:
    """Indices of the `keep` filters with the largest L1 norm, in ascending index order.

    Ties go to the lower index (a stable sort), so the choice is deterministic.
    """
    return top_k(weight.detach().abs().flatten(1).sum(1), keep)


def layer_ratios(model: nn.Module, ctx: PruneContext, target: Target,
                 stage_ratios: list[float] | None) -> dict[str, float] | None:
    """Each prunable conv's ratio from its stage's, or None for the uniform target ratio."""
    if stage_ratios is None:
        return None
    if target.config is not None:
        raise UserError("l1norm: give stage_ratios or a named config (--config), not both")
    if ctx.arch.stage_of is None:
        raise UserError(f"stage_ratios needs an architecture with stages (ResNets); {ctx.arch.name!r} has none")
    convs = ctx.arch.prunable(model)
    stages = {name: ctx.arch.stage_of(name) for name in convs}
    # stem, the residual stages, fc: one more than the last residual stage's index
    wanted = max(ctx.arch.stage_of(n) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) + 2
    if len(stage_ratios) != wanted:
        raise UserError(f"stage_ratios has {len(stage_ratios)} entries; {ctx.arch.name} needs {wanted} "
                        "(stem, each residual stage, fc)")
    if not all(0 <= r < 1 for r in stage_ratios):
        raise UserError(f"stage_ratios {stage_ratios} must each be in [0, 1)")
    return {name: stage_ratios[stage] for name, stage in stages.items()}


@register_method
class L1Norm(Method):
    name = "l1norm"
    description = "L1-norm filter pruning (Li et al. 2017): smallest-L1 filters per layer, predefined ratios"
    Settings = L1Settings

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, L1Settings)
        convs = prunable_convs(model, ctx)
        counts = target.keep_counts(ctx.arch, model, settings.rounding,
                                    layer_ratios(model, ctx, target, settings.stage_ratios))
        return layer_plan({n: convs[n].weight.abs().flatten(1).sum(1) for n in counts}, counts)

    def target_rule(self, settings: BaseModel) -> TargetRule:
        assert isinstance(settings, L1Settings)
        stages = tuple(settings.stage_ratios) if settings.stage_ratios is not None else None
        return TargetRule(scope="layer", rounding=settings.rounding, stage_ratios=stages)
