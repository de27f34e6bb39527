"""The regularisers a closed-division method may train under, owned by the harness.

A method declares one as data (`Method.penalty`): which penalty, its parameters and its λ
schedule. The harness builds the loss term itself, so no method code runs inside the training
loop. The penalty is part of the run's spec, hence of its id.

- `bn_l1`: λ·Σ|γ| over the scaling factors γ of every BatchNorm2d (network slimming, Liu et al.
  2017).
- `growing_l2`: ½·λ·Σ‖W_j‖² over the filters j the method's intent drops, λ = δ·⌊step/K_u⌋
  capped at a ceiling (GReg-1, Wang et al. 2021).
- `group_lasso`: λ·Σ‖W_j‖₂ over filters j (filter-wise L2 norms, the group lasso of structured
  sparsity learning, Wen et al. 2016), on every prunable conv or on the filters the intent drops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # torch is imported when a loss term is built, not when a spec is read
    from torch import nn

    from prunebench.pruning import PruningPlan


class Frozen(BaseModel):
    """A penalty's `kind` has no default, so a canonical dump (defaults dropped) keeps it; it is
    filled in from the class when not given (`BnL1(lam=1e-4)`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            return {**data, "kind": cls.model_fields["kind"].annotation.__args__[0]}
        return data


class BnL1(Frozen):
    """λ·Σ|γ| over every BatchNorm2d's scaling factors."""

    kind: Literal["bn_l1"]
    lam: float = Field(ge=0, le=1e6, description="λ of the L1 penalty on BN scaling factors")


class GrowingL2(Frozen):
    """½·λ·Σ‖W_j‖² over the filters the intent drops; λ grows by δ every K_u steps to a ceiling."""

    kind: Literal["growing_l2"]
    delta: float = Field(gt=0, le=1e6, description="λ increment")
    update_every: int = Field(ge=1, le=2**40, description="steps between λ increments (K_u)")
    ceiling: float = Field(gt=0, le=1e6, description="the largest λ")

    def lam(self, step: int) -> float:
        return min(self.ceiling, self.delta * (step // self.update_every))


class GroupLasso(Frozen):
    """λ·Σ‖W_j‖₂ over filters: every prunable conv's, or those the intent drops."""

    kind: Literal["group_lasso"]
    lam: float = Field(ge=0, le=1e6, description="λ of the filter-wise group lasso")
    on: Literal["prunable", "intent"] = Field("prunable", description="every filter of the prunable convs, or "
                                              "only the filters the method's intent drops")


Penalty = Annotated[BnL1 | GrowingL2 | GroupLasso, Field(discriminator="kind")]
PENALTY_KINDS = ("bn_l1", "growing_l2", "group_lasso")

# (model, step within the pruning phase) -> a term added to the loss, or None
Regularizer = Callable[["nn.Module", int], Any]


def needs_intent(penalty: Penalty) -> bool:
    return isinstance(penalty, GrowingL2) or (isinstance(penalty, GroupLasso) and penalty.on == "intent")


def regularizer(penalty: Penalty, intent: PruningPlan | None, prunable: list[str]) -> Regularizer:
    """The loss term of `penalty`: `intent` gives the filters a penalty on dropped filters acts
    on, `prunable` the convs `group_lasso` covers by default."""
    import torch
    from torch import nn
    if needs_intent(penalty) and (intent is None or not intent.keep):
        raise ValueError(f"penalty {penalty.kind!r} acts on the filters the method's intent drops, but the method "
                         "declared no filter intent")

    def dropped(model: nn.Module) -> list[torch.Tensor]:
        """Per layer of the intent, in its order, the weight rows of the filters it drops."""
        assert intent is not None
        modules = dict(model.named_modules())
        rows = []
        for name, keep in intent.keep.items():
            w = modules[name].weight
            mask = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
            mask[list(keep)] = False
            rows.append(w[mask])
        return rows

    if isinstance(penalty, BnL1):
        def bn_l1(model: nn.Module, step: int) -> torch.Tensor | None:
            if not penalty.lam:
                return None
            gammas = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]
            return penalty.lam * sum(g.abs().sum() for g in gammas)
        return bn_l1

    if isinstance(penalty, GrowingL2):
        def growing_l2(model: nn.Module, step: int) -> torch.Tensor | None:
            lam = penalty.lam(step)
            if not lam:
                return None
            terms = [w.pow(2).sum() for w in dropped(model)]
            return 0.5 * lam * sum(terms) if terms else None
        return growing_l2

    def group_lasso(model: nn.Module, step: int) -> torch.Tensor | None:
        if not penalty.lam:
            return None
        if penalty.on == "intent":
            groups = dropped(model)
        else:
            modules = dict(model.named_modules())
            groups = [modules[name].weight for name in prunable]
        terms = [w.flatten(1).norm(dim=1).sum() for w in groups if w.numel()]
        return penalty.lam * sum(terms) if terms else None
    return group_lasso
