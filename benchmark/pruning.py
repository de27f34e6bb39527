"""Structured pruning mechanics: a `PruningPlan` (which filters each conv keeps) applied to a
model produces a small-dense model with real smaller tensors.

The cutting is Torch-Pruning's dependency graph (Fang et al. 2023): removing a conv's output
filters also cuts the BatchNorm after it and the input channels of every layer that consumes
them, for any traceable model, so a user's own architecture works without hand-written surgery.
Scoring (which filters) is the method's job; this module only cuts.
"""

from __future__ import annotations

import json

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from benchmark.errors import UserError


class PruningPlan(BaseModel):
    """For each pruned conv (by module name), the indices of the output filters it keeps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep: dict[str, tuple[int, ...]] = Field(description="conv name -> kept filter indices")

    def widths(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.keep.items()}

    def validate_for(self, model: nn.Module) -> None:
        """Check the plan names real convs and valid, distinct, non-empty index sets."""
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
    """Physically remove the filters `plan` drops, in place; returns the model."""
    plan.validate_for(model)
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
