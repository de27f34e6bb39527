"""Scoring helpers shared by several methods (not a method: modules starting with '_' only help)."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.errors import UserError
from prunebench.method import PruneContext, Target
from prunebench.pruning import PruningPlan


def top_k(scores: torch.Tensor, k: int) -> tuple[int, ...]:
    """Indices of the `k` largest scores, ascending; ties go to the lower index (stable sort)."""
    order = torch.sort(-scores.detach().float().cpu(), stable=True).indices
    return tuple(sorted(order[:k].tolist()))


def layer_plan(scores: dict[str, torch.Tensor], counts: dict[str, int]) -> PruningPlan:
    """Each layer keeps its `counts[layer]` filters of highest score."""
    return PruningPlan(keep={name: top_k(scores[name], k) for name, k in counts.items()})


def global_plan(scores: dict[str, torch.Tensor], target: Target) -> PruningPlan:
    """Remove the int(N·p) lowest-scoring filters of all N prunable filters together (one global
    threshold), each layer's `target.floor(C)` best filters protected (the protocol's protected
    layers; at least one, so no layer disappears). Ties: layer order, then filter index."""
    if not scores:
        raise UserError("nothing to rank: the architecture has no prunable layer this method can score")
    ratio = ratio_of(target, "a global method")
    protected = {name: set(top_k(s, target.floor(s.numel()))) for name, s in scores.items()}
    flat = torch.cat([s.detach().float().cpu().flatten() for s in scores.values()])
    guard = torch.cat([torch.tensor([i in protected[name] for i in range(s.numel())], dtype=torch.bool)
                       for name, s in scores.items()])
    n_prune = min(int(flat.numel() * ratio), int((~guard).sum()))
    order = torch.sort(flat, stable=True).indices  # ascending: the first n_prune unprotected go
    order = order[~guard[order]]
    dropped = torch.zeros(flat.numel(), dtype=torch.bool)
    dropped[order[:n_prune]] = True
    keep, offset = {}, 0
    for name, s in scores.items():
        n = s.numel()
        keep[name] = tuple((~dropped[offset:offset + n]).nonzero().flatten().tolist())
        offset += n
    return PruningPlan(keep=keep)


def ratio_of(target: Target, method: str) -> float:
    if target.ratio is None:
        raise UserError(f"{method} prunes to a ratio, not to a named layer-wise config: pass --ratio")
    return target.ratio


def prunable_convs(model: nn.Module, ctx: PruneContext) -> dict[str, nn.Conv2d]:
    modules = dict(model.named_modules())
    return {name: modules[name] for name in ctx.arch.prunable(model)}
