"""Magnitude weight pruning (Han et al., "Learning both Weights and Connections for Efficient
Neural Networks", NeurIPS 2015), unstructured.

The weights of smallest |w| are masked: per layer (each conv and linear weight loses int(p·n) of
its n weights) or globally (int(p·N) of all N such weights together). The masks stay applied
through retraining (the harness re-applies them after every optimizer step), the model keeps
its dense shapes, and the harness reports dense MACs beside effective (density-weighted) MACs.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunebench.method import Method, MethodSettings, PruneContext, Target, register_method
from prunebench.methods._common import ratio_of
from prunebench.pruning import Masks, PruningPlan
from prunebench.targets import TargetRule


class MagnitudeSettings(MethodSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Literal["layer", "global"] = Field("layer", description="one threshold per layer, or one for all")
    layers: Literal["conv", "conv+linear"] = Field("conv+linear", description="which weights may be pruned")


def weights(model: nn.Module, layers: str) -> dict[str, torch.Tensor]:
    kinds = (nn.Conv2d, nn.Linear) if layers == "conv+linear" else (nn.Conv2d,)
    return {f"{name}.weight": m.weight.detach() for name, m in model.named_modules() if isinstance(m, kinds)}


def drop_smallest(scores: torch.Tensor, n_drop: int, protected: torch.Tensor | None = None) -> torch.Tensor:
    """Keep-mask of `scores`' shape without its `n_drop` smallest entries (ties: lower index
    first), never dropping a `protected` one (a bool tensor of the same shape)."""
    flat = scores.flatten().float().cpu()
    order = torch.sort(flat, stable=True).indices
    if protected is not None:
        order = order[~protected.flatten()[order]]
    mask = torch.ones(flat.numel(), dtype=torch.bool)
    mask[order[:n_drop]] = False
    return mask.reshape(scores.shape)


def magnitude_masks(params: dict[str, torch.Tensor], target: Target, scope: str) -> Masks:
    """Masks dropping the int(N·p) smallest |w| per tensor (`layer`) or of all tensors together
    (`global`); each tensor keeps its `protect.weight_floor(n)` largest weights at least (the
    protocol's protected layers)."""
    ratio, protect = ratio_of(target, "magnitude pruning"), target.protect
    if scope == "layer":
        return {name: drop_smallest(w.abs(), min(int(ratio * w.numel()), w.numel() - protect.weight_floor(w.numel())))
                for name, w in params.items()}
    guard = []
    for w in params.values():
        g = torch.zeros(w.numel(), dtype=torch.bool)
        g[torch.sort(-w.abs().flatten().float().cpu(), stable=True).indices[:protect.weight_floor(w.numel())]] = True
        guard.append(g)
    flat = torch.cat([w.abs().flatten().cpu() for w in params.values()])
    protected = torch.cat(guard)
    keep = drop_smallest(flat, min(int(ratio * flat.numel()), int((~protected).sum())), protected)
    masks, offset = {}, 0
    for name, w in params.items():
        masks[name] = keep[offset:offset + w.numel()].reshape(w.shape)
        offset += w.numel()
    return masks


@register_method
class Magnitude(Method):
    name = "magnitude"
    description = "magnitude weight pruning (Han et al. 2015), unstructured, masks kept through retraining"
    Settings = MagnitudeSettings
    granularity = "weight"

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, MagnitudeSettings)
        return PruningPlan(masks=magnitude_masks(weights(model, settings.layers), target,
                                                 settings.scope))

    def target_rule(self, settings: BaseModel) -> TargetRule:
        assert isinstance(settings, MagnitudeSettings)
        return TargetRule(scope=settings.scope, weights=settings.layers)
