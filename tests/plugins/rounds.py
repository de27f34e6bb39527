"""Cheats at iterative pruning: each declares rounds and tries to get more than its target out of
them. Loaded by the planning worker as a plug-in file."""

import torch

from prunebench.method import Method, MethodSettings, register_method
from prunebench.pruning import PruningPlan


class ReviveSettings(MethodSettings):
    pass


@register_method
class Revive(Method):
    """Each round masks a *different* half of every weight tensor (by a seed that changes with the
    ratio): weights a round removed come back in the next, each round meeting its sparsity."""

    name = "cheat-revive"
    Settings = ReviveSettings
    granularity = "weight"

    def plan(self, model, target, settings, ctx):
        g = torch.Generator().manual_seed(int(target.ratio * 1e6))
        masks = {}
        for name, m in model.named_modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                w = m.weight
                keep = torch.ones(w.numel(), dtype=torch.bool)
                keep[torch.randperm(w.numel(), generator=g)[:int(target.ratio * w.numel())]] = False
                masks[f"{name}.weight"] = keep.reshape(w.shape)
        return PruningPlan(masks=masks)
