"""Network slimming (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017).

A sparsity-training phase adds λ·Σ|γ| over the scaling factors γ of every BatchNorm2d to the
loss (the harness's `bn_l1` penalty, λ = `sparsity`, the paper's 1e-4). Then one *global* threshold over
the |γ| of the BNs after the prunable convs removes the int(N·p) channels of smallest |γ|; each
layer keeps at least its largest. The pruned architecture is what falls out of the threshold
(automatic architecture), so layers end up with different widths.

In the harness the sparsity phase starts from the shared base model (Wang et al.'s pipeline);
the paper trains with sparsity from scratch. Under S4.x the protocol's pruning phase is used.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from prunebench.errors import UserError
from prunebench.method import Method, PhaseSettings, PruneContext, Target, register_method
from prunebench.methods._common import global_plan
from prunebench.penalties import BnL1
from prunebench.pruning import PruningPlan, bn_after
from prunebench.targets import TargetRule


class SlimmingSettings(PhaseSettings):
    sparsity: float = Field(1e-4, ge=0, description="λ of the L1 penalty on BN scaling factors")


def bn_scales(model: nn.Module, ctx: PruneContext) -> dict[str, torch.Tensor]:
    """|γ| of the BatchNorm after each prunable conv, by conv name, in network order."""
    modules = dict(model.named_modules())
    convs = ctx.arch.prunable(model)
    bns = bn_after(model, convs, ctx.input_shape)
    missing = [c for c in convs if c not in bns]
    if missing:
        raise UserError(f"slimming needs a BatchNorm over each pruned conv's output channels alone; "
                        f"{missing[0]!r} of {ctx.arch.name} has none (no BN, or BNs over concatenations as "
                        "in DenseNet)")
    return {conv: modules[bns[conv]].weight.detach().abs() for conv in convs}


@register_method
class Slimming(Method):
    name = "slimming"
    description = "network slimming (Liu et al. 2017): L1 on BN scales, then a global threshold"
    Settings = SlimmingSettings
    prune_phase = True

    def penalty(self, settings) -> BnL1:
        assert isinstance(settings, SlimmingSettings)
        return BnL1(lam=settings.sparsity)

    def plan(self, model: nn.Module, target: Target, settings, ctx: PruneContext) -> PruningPlan:
        return global_plan(bn_scales(model, ctx), target)

    def target_rule(self, settings) -> TargetRule:
        return TargetRule(scope="global")
