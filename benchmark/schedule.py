"""Learning-rate schedules as values, parsed from the papers' notation at the edge.

Wang et al. (App. A) write piecewise-constant schedules as ``0:0.1,30:0.01,60:0.001``: the LR
from each given epoch on. Cosine schedules are written ``cosine:0.1`` (to 0) or ``cosine:0.1:1e-4``.
The LR is set once per epoch, at its start. Wang et al.'s finetuning rule (App. A) is written
``halving:LR`` or ``halving:LR:FINAL`` inside a recipe, which knows the epochs it spans.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LRSchedule(BaseModel):
    """A per-epoch learning-rate schedule."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["piecewise", "cosine"] = Field(
        "piecewise", description="piecewise constant from given epochs, or cosine annealing"
    )
    stages: list[tuple[Annotated[int, Field(ge=0, le=100_000)], float]] = Field(
        default_factory=list,
        description="piecewise: (first epoch, LR) pairs; the first starts at epoch 0",
    )
    lr: float | None = Field(None, gt=0, description="cosine: initial LR")
    final_lr: float = Field(0.0, ge=0, description="cosine: LR reached at the last epoch's end")

    @model_validator(mode="before")
    @classmethod
    def _parse_notation(cls, data: object) -> object:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"stages": [(0, float(data))]}
        if isinstance(data, str):
            return parse_lr_string(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> LRSchedule:
        if self.kind == "piecewise":
            if not self.stages:
                raise ValueError("a piecewise schedule needs at least one 'epoch:lr' stage")
            if self.stages[0][0] != 0:
                raise ValueError(
                    f"the first stage must start at epoch 0, not {self.stages[0][0]} "
                    "(write e.g. '0:0.1,30:0.01')"
                )
            epochs = [e for e, _ in self.stages]
            if any(b <= a for a, b in zip(epochs, epochs[1:])):
                raise ValueError(f"stage epochs must increase strictly, got {epochs}")
            if any(lr <= 0 for _, lr in self.stages):
                raise ValueError("every learning rate must be > 0")
        elif self.lr is None:
            raise ValueError("a cosine schedule needs 'lr'")
        return self

    def lr_at(self, epoch: int, epochs: int) -> float:
        """The LR used during `epoch` (0-based) of a phase that lasts `epochs`."""
        if self.kind == "cosine":
            assert self.lr is not None
            t = epoch / max(epochs, 1)
            return self.final_lr + 0.5 * (self.lr - self.final_lr) * (1 + math.cos(math.pi * t))
        lr = self.stages[0][1]
        for start, value in self.stages:
            if epoch >= start:
                lr = value
        return lr

    def last_start(self) -> int:
        """The epoch at which the last stage begins (0 for cosine)."""
        return self.stages[-1][0] if self.kind == "piecewise" else 0

    def stretched(self, from_epochs: int, to_epochs: int) -> LRSchedule:
        """The same schedule over a different length: stage starts scale with the epochs.

        Rethinking (Liu et al.) trains Scratch-B with the base schedule's decays at the same
        fractions (50%, 75%) of the longer run; this is that rule.
        """
        if self.kind == "cosine" or from_epochs == to_epochs:
            return self
        starts = [int(start * to_epochs / from_epochs) for start, _ in self.stages]
        stages: list[tuple[int, float]] = []
        for start, (_, lr) in zip(starts, self.stages):
            if stages and start <= stages[-1][0]:
                stages[-1] = (stages[-1][0], lr)  # collapsed by a short run: keep the later LR
            else:
                stages.append((start, lr))
        return LRSchedule(stages=stages)

    @classmethod
    def halving(cls, epochs: int, lr: float, final_lr: float = 1e-5, max_stage: int = 30) -> LRSchedule:
        """Wang et al.'s finetuning LR rules (App. A): decay x0.1 from `lr` down to the common
        final LR (rule 1); each stage takes half of the epochs left, rounded up (rule 2, the
        "halving"), and at most `max_stage` epochs (rule 3); the last stage takes the rest.

        P30F90 at 1e-1 gives 0:1e-1,30:1e-2,60:1e-3,75:1e-4,83:1e-5.
        """
        decades = round(math.log10(lr / final_lr))
        if decades < 0 or not math.isclose(lr / final_lr, 10.0**decades, rel_tol=1e-6):
            raise ValueError(f"halving needs the final LR {final_lr:g} to be {lr:g} times a power of 0.1")
        lrs = [float(f"{lr * 10.0**-k:.6g}") for k in range(decades + 1)]
        if epochs < len(lrs):
            raise ValueError(f"halving from {lr:g} to {final_lr:g} needs at least {len(lrs)} epochs, got {epochs}")
        stages, start = [], 0
        for value in lrs[:-1]:
            stages.append((start, value))
            start += min(max_stage, math.ceil((epochs - start) / 2))
        stages.append((start, lrs[-1]))
        return cls(stages=stages)

    def __str__(self) -> str:
        if self.kind == "cosine":
            return f"cosine:{self.lr:g}" + (f":{self.final_lr:g}" if self.final_lr else "")
        return ",".join(f"{e}:{lr:g}" for e, lr in self.stages)


def parse_pf(text: str) -> tuple[int, int]:
    """Wang et al.'s ``P30F90``: prune at epoch 30 of a dense run, then finetune 90 epochs."""
    import re

    match = re.fullmatch(r"\s*P(\d+)\s*/?\s*F(\d+)\s*", text)
    if not match:
        raise ValueError(f"cannot read {text!r}: write e.g. 'P30F90' (prune at epoch 30, finetune 90)")
    return int(match.group(1)), int(match.group(2))


def parse_lr_string(text: str) -> dict:
    """Parse ``0:0.1,30:0.01`` or ``cosine:LR[:FINAL]`` into LRSchedule fields."""
    text = text.strip()
    if text.startswith("halving"):
        raise ValueError(f"{text!r}: the halving rule needs the epochs; use it as a recipe's 'lr'")
    if text.startswith("cosine"):
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"cannot read {text!r}: write 'cosine:LR' or 'cosine:LR:FINAL_LR'")
        try:
            values = [float(p) for p in parts[1:]]
        except ValueError:
            raise ValueError(f"cannot read {text!r}: LRs must be numbers") from None
        return {"kind": "cosine", "lr": values[0], "final_lr": values[1] if len(values) > 1 else 0.0}
    stages = []
    for item in text.split(","):
        epoch, sep, lr = item.partition(":")
        try:
            if not sep:
                raise ValueError
            stages.append((int(epoch), float(lr)))
        except ValueError:
            raise ValueError(
                f"cannot read {item.strip()!r} in LR schedule {text!r}: write 'EPOCH:LR' pairs "
                "separated by commas, e.g. '0:0.1,30:0.01,60:0.001'"
            ) from None
    return {"kind": "piecewise", "stages": stages}
