"""Plug-ins whose plans miss their target: each is a "pruning target" violation before it trains."""

import torch
from torch import nn

from prunebench.method import Method, register_method
from prunebench.methods.l1norm import L1Norm
from prunebench.pruning import PruningPlan
from prunebench.targets import TargetRule


def _convs(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _trained(model):
    """Whether the weights were trained (BN statistics moved off their init), not a fresh model."""
    return any(float(b.abs().sum()) > 0 for n, b in model.named_buffers() if n.endswith("running_mean"))


def _dropping(p, n):
    """A keep-mask of `p`'s shape without its first `n` entries."""
    m = torch.ones_like(p, dtype=torch.bool)
    m.view(-1)[:n] = False
    return m


@register_method
class KeepsAll(Method):
    name = "cheat-keeps-all"
    description = "declared at the run's ratio, keeps every filter"

    def plan(self, model, target, settings, ctx):
        return PruningPlan(keep={n: tuple(range(m.out_channels)) for n, m in _convs(model).items()})


@register_method
class KeepsNinety(Method):
    name = "cheat-keeps-90"
    description = "declares a global threshold, keeps 90% of the filters"

    def target_rule(self, settings):
        return TargetRule(scope="global")

    def plan(self, model, target, settings, ctx):
        return PruningPlan(keep={n: tuple(range(max(1, int(m.out_channels * 0.9)))) for n, m in _convs(model).items()})


@register_method
class DenseMasks(Method):
    name = "cheat-dense-masks"
    description = "weight masks of density 0.999"
    granularity = "weight"

    def plan(self, model, target, settings, ctx):
        return PruningPlan(masks={name: _dropping(p, max(1, p.numel() // 1000)) for name, p in model.named_parameters()
                                  if name.endswith("weight") and p.dim() > 1})


@register_method
class OneLayerMask(Method):
    name = "cheat-one-layer-mask"
    description = "masks half of one layer's weights, none of the others"
    granularity = "weight"

    def plan(self, model, target, settings, ctx):
        name, p = next((n, p) for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)
        return PruningPlan(masks={name: _dropping(p, p.numel() // 2)})


@register_method
class UndeclaredStages(L1Norm):
    name = "cheat-undeclared-stages"
    description = "declares stage ratios its settings (and so its row) do not show"

    def target_rule(self, settings):
        return TargetRule(stage_ratios=(0.0, 0.0, 0.0, 0.0, 0.0))


@register_method
class TrainedOnly(Method):
    name = "cheat-trained-only"
    description = "l1norm on an untrained model (the dry run); keeps every filter of a trained one"

    def plan(self, model, target, settings, ctx):
        if _trained(model):
            return PruningPlan(keep={n: tuple(range(m.out_channels)) for n, m in _convs(model).items()})
        return L1Norm().plan(model, target, L1Norm.Settings(), ctx)


@register_method
class TrainedLopsided(Method):
    name = "cheat-trained-lopsided"
    description = "l1norm on an untrained model; on a trained one, declared per layer, it moves a filter from the last conv to the first"

    def plan(self, model, target, settings, ctx):
        plan = L1Norm().plan(model, target, L1Norm.Settings(), ctx)
        if not _trained(model):
            return plan
        convs = _convs(model)
        first, last = list(convs)[0], list(convs)[-1]
        keep = dict(plan.keep)
        keep[first] = tuple(range(min(convs[first].out_channels, len(keep[first]) + 1)))
        keep[last] = tuple(range(max(1, len(keep[last]) - 1)))
        return PruningPlan(keep=keep)


def _floor_only(model, target):
    """Each conv's best filters by L1, as few as the protected floor allows: far below any target."""
    return PruningPlan(keep={n: tuple(sorted(torch.sort(-m.weight.detach().abs().flatten(1).sum(1), stable=True)
                                             .indices[:target.floor(m.out_channels)].tolist()))
                             for n, m in _convs(model).items()})


@register_method
class FloorJump(Method):
    name = "cheat-floor-jump"
    description = "honest l1norm below ratio 0.3, the protected floor only from there: a gap of its own making"

    def plan(self, model, target, settings, ctx):
        if target.ratio is not None and target.ratio >= 0.3:
            return _floor_only(model, target)
        return L1Norm().plan(model, target, L1Norm.Settings(), ctx)


@register_method
class GlobalFloorJump(Method):
    name = "cheat-global-floor-jump"
    description = "an honest global L1 threshold below ratio 0.3, the protected floor only from there"

    def target_rule(self, settings):
        return TargetRule(scope="global")

    def plan(self, model, target, settings, ctx):
        from prunebench.methods._common import global_plan

        if target.ratio is not None and target.ratio >= 0.3:
            return _floor_only(model, target)
        return global_plan({n: m.weight.detach().abs().flatten(1).sum(1) for n, m in _convs(model).items()
                            if n in ctx.arch.prunable(model)}, target)
