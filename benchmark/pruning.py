"""Pruning mechanics: a `PruningPlan` says what a method removes; applying it to a model gives
either a small-dense model with real smaller tensors (filter pruning) or a masked model whose
pruned weights are zero and stay zero while it trains (unstructured pruning).

The cutting is Torch-Pruning's dependency graph (Fang et al. 2023): removing a conv's output
filters also cuts the BatchNorm after it and the input channels of every layer that consumes
them, for any traceable model, so a user's own architecture works without hand-written surgery.
Scoring (which filters, which weights) is the method's job; this module only cuts and masks.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

from prunebench._atomic import write_atomic
from prunebench.errors import UserError

Masks = dict[str, torch.Tensor]  # parameter name -> bool tensor of its shape, True = kept


@dataclass(frozen=True, eq=False)
class PruningPlan:
    """What a method prunes: for filter pruning, the output filters each conv keeps (by module
    name); for unstructured pruning, a boolean mask per weight (by parameter name)."""

    keep: dict[str, tuple[int, ...]] = field(default_factory=dict)
    masks: Masks = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keep and self.masks:
            raise ValueError("a pruning plan either keeps filters or masks weights, not both")
        object.__setattr__(self, "keep", {k: tuple(int(i) for i in v) for k, v in self.keep.items()})
        object.__setattr__(self, "masks", {k: v.detach().to("cpu", torch.bool) for k, v in self.masks.items()})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PruningPlan):
            return NotImplemented
        return self.keep == other.keep and self.masks.keys() == other.masks.keys() and all(
            torch.equal(m, other.masks[k]) for k, m in self.masks.items())

    @property
    def structured(self) -> bool:
        return not self.masks

    def widths(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.keep.items()}

    def density(self) -> float:
        """Fraction of the masked weights kept (1.0 for a filter plan)."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total if total else 1.0

    def validate_for(self, model: nn.Module) -> None:
        """Check the plan names real convs and valid, distinct, non-empty index sets, or real
        weights and masks of their shape."""
        modules = dict(model.named_modules())
        for name, idx in self.keep.items():
            conv = modules.get(name)
            if not isinstance(conv, nn.Conv2d):
                raise UserError(f"pruning plan names {name!r}, which is not a Conv2d of the model")
            if not idx:
                raise ValueError(f"pruning plan keeps no filter of {name!r}")
            if len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= conv.out_channels:
                raise ValueError(
                    f"pruning plan for {name!r} has invalid indices for {conv.out_channels} filters"
                )
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            if name not in params:
                raise UserError(f"pruning plan masks {name!r}, which is not a parameter of the model")
            if mask.shape != params[name].shape:
                raise ValueError(f"mask of {name!r} has shape {tuple(mask.shape)}, the weight "
                                 f"{tuple(params[name].shape)}")

    def save(self, directory: Path) -> None:
        """`plan.json` (kept filters) and, for masks, `masks.pt`; each written atomically."""
        if self.masks:
            buffer = io.BytesIO()
            torch.save(self.masks, buffer)
            write_atomic(directory / "masks.pt", buffer.getvalue())
        write_atomic(directory / "plan.json", self.to_json().encode())

    @classmethod
    def load(cls, directory: Path) -> PruningPlan | None:
        if not (directory / "plan.json").exists():
            return None
        plan = cls.from_json((directory / "plan.json").read_text())
        if (directory / "masks.pt").exists():
            plan = cls(masks=torch.load(directory / "masks.pt", weights_only=True))
        return plan

    def sha256(self) -> str:
        """A digest of the plan's content (the filters each conv keeps, or the masks): what a
        one-shot pruned run's computation records of it."""
        if self.masks:
            return f"masks:{self.masks_sha256()}"
        text = json.dumps({name: list(idx) for name, idx in self.keep.items()}, sort_keys=True)  # order as cut
        return hashlib.sha256(text.encode()).hexdigest()

    def masks_sha256(self) -> str | None:
        """A digest of the masks (None for a filter plan): what a run's id records of them."""
        if not self.masks:
            return None
        h = hashlib.sha256()
        for name in sorted(self.masks):
            h.update(name.encode())
            h.update(self.masks[name].numpy().tobytes())
        return h.hexdigest()

    def to_json(self) -> str:
        return json.dumps({k: list(v) for k, v in sorted(self.keep.items())})

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        return cls(keep={k: tuple(v) for k, v in json.loads(text).items()})

    @classmethod
    def first_k(cls, widths: dict[str, int]) -> PruningPlan:
        """A plan with the given widths, keeping the first filters: for building architectures."""
        return cls(keep={name: tuple(range(w)) for name, w in widths.items()})


def apply_plan(model: nn.Module, plan: PruningPlan, input_shape: tuple[int, ...]) -> nn.Module:
    """Physically remove the filters `plan` drops, or zero the weights its masks drop; in place."""
    plan.validate_for(model)
    if plan.masks:
        apply_masks(model, plan.masks)
        return model
    param = next(model.parameters())
    example = torch.zeros(2, *input_shape, device=param.device)
    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    modules = dict(model.named_modules())
    for name, keep in plan.keep.items():
        conv = modules[name]
        drop = sorted(set(range(conv.out_channels)) - set(keep))
        if not drop:
            continue
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop)
        if not graph.check_pruning_group(group):
            raise ValueError(f"cannot remove {len(drop)} filters of {name!r}: nothing would be left")
        group.prune()
    model.train(was_training)
    return model


def filter_masks(model: nn.Module, plan: PruningPlan, input_shape: tuple[int, ...]) -> Masks:
    """Weight masks that silence the filters a filter plan drops without removing them: each
    dropped filter's weights, its BatchNorm scale and shift, and the input channels that consume
    it are held at zero, so the model computes what the cut model computes while keeping its
    shapes (between pruning rounds, where a method plans on the full-size model; the filters are
    cut after the last round). The dependencies are Torch-Pruning's, as `apply_plan` cuts them."""
    plan.validate_for(model)
    param = next(model.parameters())
    example = torch.zeros(2, *input_shape, device=param.device)
    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    model.train(was_training)
    modules = dict(model.named_modules())
    names = {id(m): n for n, m in modules.items()}
    masks: Masks = {}

    def drop(name: str, tensor: torch.Tensor, idxs: list[int], dim: int) -> None:
        mask = masks.setdefault(name, torch.ones_like(tensor, dtype=torch.bool, device="cpu"))
        mask.index_fill_(dim, torch.tensor(idxs, dtype=torch.long), False)

    for conv_name, keep in plan.keep.items():
        dropped = sorted(set(range(modules[conv_name].out_channels)) - set(keep))
        if not dropped:
            continue
        for dep, idxs in graph.get_pruning_group(modules[conv_name], tp.prune_conv_out_channels, idxs=dropped):
            module, idxs = dep.target.module, [int(i) for i in idxs]
            name = names.get(id(module))
            if name is None or not idxs:
                continue
            outward = "out" in getattr(dep.handler, "__name__", "")
            if isinstance(module, nn.Conv2d | nn.Linear):
                drop(f"{name}.weight", module.weight, idxs, 0 if outward else 1)
                if outward and module.bias is not None:
                    drop(f"{name}.bias", module.bias, idxs, 0)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                drop(f"{name}.weight", module.weight, idxs, 0)
                drop(f"{name}.bias", module.bias, idxs, 0)
    return masks


def revived(plan: PruningPlan, before: PruningPlan, widths: dict[str, int]) -> tuple[str, int] | None:
    """What `plan` keeps that `before` removed (masks and kept filters only tighten across pruning
    rounds), as (what, how many), else None. `widths`: each conv's output channels, for a layer a
    plan leaves whole."""
    if bool(plan.masks) != bool(before.masks) or plan.masks.keys() != before.masks.keys():
        return "a plan of another kind or other layers", 1
    for name, mask in plan.masks.items():
        if count := int((mask & ~before.masks[name]).sum()):
            return f"weights of {name}", count
    for name in set(plan.keep) | set(before.keep):
        everything = tuple(range(widths.get(name, 0)))
        if count := len(set(plan.keep.get(name, everything)) - set(before.keep.get(name, everything))):
            return f"filters of {name}", count
    return None


def plan_macs(model: nn.Module, plan: PruningPlan, input_shape: tuple[int, ...]) -> int:
    """MACs of the architecture `plan` makes of `model` (a fresh build, changed in place): the
    forward MACs of its widths for a filter plan, density-weighted by the masks alone for a weight
    plan. A function of the plan, never of the weights: a fresh build's weights are random draws,
    and one exactly 0.0 among them (a float32 uniform draw is, once in 2^24 weights) would count
    as pruned, so that two counts of one plan could differ and a search's record fail its re-check."""
    from prunebench.flops import effective_macs, forward_macs

    if not plan.masks:
        return forward_macs(apply_plan(model, PruningPlan.first_k(plan.widths()), input_shape), input_shape)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    apply_masks(model, plan.masks)
    return effective_macs(model, input_shape)


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the masked-out weights (after every optimizer step, so that masks survive training)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            p = params[name]
            p.mul_(mask if mask.device == p.device and mask.dtype == p.dtype else mask.to(p.device, p.dtype))


def bn_after(model: nn.Module, convs: list[str], input_shape: tuple[int, ...]) -> dict[str, str]:
    """For each conv, the BatchNorm2d normalising its output channels (for BN-scale criteria),
    found through the dependency graph; convs without one are left out."""
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=torch.zeros(2, *input_shape, device=param.device))
    model.train(was_training)
    names = {m: n for n, m in model.named_modules()}
    modules = dict(model.named_modules())
    out = {}
    for conv in convs:
        group = graph.get_pruning_group(modules[conv], tp.prune_conv_out_channels, idxs=[0])
        for dep, _ in group:
            layer = dep.target.module
            # a BN over these channels alone (not, as in DenseNet, over a concatenation with others)
            if isinstance(layer, nn.BatchNorm2d) and layer.num_features == modules[conv].out_channels:
                out[conv] = names[layer]
                break
    return out
