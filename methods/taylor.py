"""First-order Taylor importance (Molchanov et al., "Importance Estimation for Neural Network
Pruning", CVPR 2019).

The importance of a filter is the squared first-order Taylor estimate of the loss change when it
is removed, per mini-batch, averaged over `batches` mini-batches of training data:
  'weight' (Taylor-FO on the conv weights): I = (Σ_s g_s·w_s)², s over the filter's weights;
  'bn' (Taylor-FO-BN, the paper's main variant, a gate after BN): I = (γ·g_γ + β·g_β)².
Filters are ranked globally across layers (the paper's scheme; `scope: layer` keeps l1norm's
per-layer counts instead). One-shot: the paper's iterative prune-finetune loop is the harness's
retraining, so the scores are accumulated once, on the base model.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunebench.errors import UserError
from prunebench.method import Method, MethodSettings, PruneContext, Target, register_method
from prunebench.methods._common import global_plan, layer_plan, prunable_convs
from prunebench.pruning import PruningPlan, bn_after
from prunebench.targets import TargetRule


class TaylorSettings(MethodSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batches: int = Field(10, ge=1, description="mini-batches the importance is averaged over")
    criterion: Literal["bn", "weight"] = Field("bn", description="'bn': Taylor-FO-BN; 'weight': on conv weights")
    scope: Literal["global", "layer"] = Field("global", description="rank all filters together, or per layer")


def taylor_scores(model: nn.Module, convs: list[str], batches, criterion: str,
                  input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Mean over mini-batches of each filter's squared first-order Taylor term."""
    modules = dict(model.named_modules())
    if criterion == "bn":
        bns = bn_after(model, convs, input_shape)
        missing = [c for c in convs if c not in bns]
        if missing:
            raise UserError(f"taylor criterion 'bn' needs a BatchNorm after every pruned conv; {missing[0]!r} has "
                            "none: use taylor:criterion=weight")
    model.train()
    total: dict[str, torch.Tensor] = {}
    n = 0
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for name in convs:
            if criterion == "weight":
                w = modules[name].weight
                term = (w.grad * w).flatten(1).sum(1)
            else:
                bn = modules[bns[name]]
                term = bn.weight.grad * bn.weight + bn.bias.grad * bn.bias
            total[name] = total.get(name, 0) + term.detach() ** 2
        n += 1
    if not n:
        raise UserError("taylor got no training batches to score filters on")
    model.zero_grad(set_to_none=True)
    return {name: total[name] / n for name in convs}


@register_method
class Taylor(Method):
    name = "taylor"
    description = "first-order Taylor importance (Molchanov et al. 2019), averaged over mini-batches"
    Settings = TaylorSettings
    needs_data = True

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, TaylorSettings)
        convs = list(prunable_convs(model, ctx))
        scores = taylor_scores(model, convs, ctx.batches(settings.batches), settings.criterion, ctx.input_shape)
        if settings.scope == "global":
            return global_plan(scores, target)
        return layer_plan(scores, target.keep_counts(ctx.arch, model))

    def target_rule(self, settings: BaseModel) -> TargetRule:
        assert isinstance(settings, TaylorSettings)
        return TargetRule(scope=settings.scope)
