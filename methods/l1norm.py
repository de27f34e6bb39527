"""L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

Each prunable conv keeps its int(C(1-p)) filters of largest L1 norm (sum of absolute kernel
weights), chosen independently per layer. In ResNets only the first conv of each residual block
is pruned (the architecture's `prunable`), so the residual additions keep their width.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel
from torch import nn

from benchmark.method import Method, PruneContext, Target, register_method
from benchmark.pruning import PruningPlan


def l1_keep(weight: torch.Tensor, keep: int) -> tuple[int, ...]:
    """Indices of the `keep` filters with the largest L1 norm, in ascending index order.

    Ties go to the lower index (a stable sort), so the choice is deterministic.
    """
    norms = weight.detach().abs().flatten(1).sum(1)
    order = torch.sort(-norms, stable=True).indices
    return tuple(sorted(order[:keep].tolist()))


@register_method
class L1Norm(Method):
    name = "l1norm"
    description = "L1-norm filter pruning (Li et al. 2017), keep int(C(1-p)) per layer"

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        modules = dict(model.named_modules())
        counts = target.keep_counts(ctx.arch, model)
        return PruningPlan(keep={name: l1_keep(modules[name].weight, k) for name, k in counts.items()})
