"""Pruning targets, enforced: a plan is checked against its target before anything trains.

A method declares, as data, how it reaches a target (`TargetRule`): per layer (each prunable
conv keeps `kept(C, p)` filters, by Li et al.'s or Wang et al.'s rounding, or by its stage's
ratio), or globally (one threshold over all prunable filters or weights). The harness then
counts what the plan keeps over *every* prunable filter or weight of the architecture, never
over what the plan chose to name:

- per-layer filter targets and named configs: exactly the target's count in every layer;
- global filter targets: N - int(N·p) of the N prunable filters, every layer keeping its protected
  floor (the protocol's `protect`: at least one filter, or more), so exactly
  max(N - int(N·p), sum of the floors);
- weight masks: N - int(N·p) of the N weights the rule names (conv, or conv + linear) under a
  global threshold; per layer, n - int(n·p) of each tensor's n; each tensor keeping its protected
  fraction.

Per-layer counts never fall below the floor either (`Target.keep_counts`). A speedup target is
met by search (`prunebench.search`): the plan is checked at the ratio the search found, and its
MACs against the speedup.

A miss is a `ProtocolViolation` on the rule "pruning target", with what was expected and what
the plan keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from prunebench.errors import ProtocolViolation, UserError

if TYPE_CHECKING:  # torch is imported where weights are counted: the rule itself is plain data
    from torch import nn

RULE = "pruning target"


class TargetRule(BaseModel):
    """How a method reaches its target, declared as data and enforced by the harness."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    scope: Literal["layer", "global"] = Field("layer", description="per layer, or one threshold over all")
    rounding: Literal["li", "wang"] = Field("li", description="per-layer filter counts: 'li' keeps int(C(1-p)), "
                                            "'wang' prunes min(ceil(pC), C-1)")
    stage_ratios: tuple[float, ...] | None = Field(
        None, description="per-layer filter targets: a ratio per stage (stem, residual stages, fc) instead of the "
        "uniform one; only as the run's own `stage_ratios` setting, which its row's label shows")
    weights: Literal["conv", "conv+linear"] = Field("conv+linear", description="weight masks: the weights the "
                                                    "target counts over")

    def check_visible(self, setup: str, settings: dict) -> None:
        """Stage ratios replace the uniform target only where the row's label says so: they must
        be the run's `stage_ratios` setting."""
        given = settings.get("stage_ratios")
        if self.stage_ratios is not None and (given is None or tuple(given) != self.stage_ratios):
            raise ProtocolViolation(setup, RULE, "stage ratios only as the run's stage_ratios setting (shown in "
                                    f"its row), here {given}", list(self.stage_ratios))


def prunable_weights(model: nn.Module, which: str = "conv+linear") -> dict[str, nn.Parameter]:
    """The weights a weight-level target counts over: of every conv (and linear) layer."""
    from torch import nn

    kinds = (nn.Conv2d, nn.Linear) if which == "conv+linear" else (nn.Conv2d,)
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, kinds)}


def density(model: nn.Module, masks: dict) -> float | None:
    """Fraction kept of every conv and linear weight of the model (None without masks): a mask
    on one layer only is counted against all of them, not against itself."""
    if not masks:
        return None
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights.values())
    kept = sum(int(masks[n].sum()) if n in masks else w.numel() for n, w in weights.items())
    return kept / total


def check(setup: str, plan, model: nn.Module, arch, target, rule: TargetRule, granularity: str) -> dict:
    """Raise a `ProtocolViolation` ("pruning target") when `plan` does not meet `target` on the
    unpruned `model`; else return what it keeps, for the run's record."""
    try:
        plan.validate_for(model)  # real layers, valid distinct indices, masks of the weights' shapes
    except (UserError, ValueError) as e:
        raise ProtocolViolation(setup, RULE, "a plan of the model's own layers and filters", str(e)) from None
    if granularity == "weight" or plan.masks:
        if granularity != "weight" or plan.keep:
            raise ProtocolViolation(setup, RULE, f"a {granularity}-level plan (the method's granularity)",
                                    "kept filters" if plan.keep else "weight masks")
        return _check_masks(setup, plan, model, target, rule)
    return _check_filters(setup, plan, model, arch, target, rule)


def layer_counts(setup: str, model: nn.Module, arch, target, rule: TargetRule) -> dict[str, int]:
    """Filters each prunable conv keeps under a per-layer rule (or a named config): the harness's
    own architecture for the target, which a per-layer plan must match exactly."""
    ratios = None
    if rule.stage_ratios is not None and target.config is None:
        prunable = arch.prunable(model)
        stages = {n: arch.stage_of(n) for n in prunable} if arch.stage_of else {}
        if not stages or max(stages.values()) >= len(rule.stage_ratios):
            raise ProtocolViolation(setup, RULE, f"stage ratios for the stages of {arch.name}", list(rule.stage_ratios))
        ratios = {n: rule.stage_ratios[stage] for n, stage in stages.items()}
    return target.keep_counts(arch, model, rule.rounding, ratios)


def _check_filters(setup: str, plan, model: nn.Module, arch, target, rule: TargetRule) -> dict:
    modules = dict(model.named_modules())
    prunable = arch.prunable(model)
    outside = sorted(set(plan.keep) - set(prunable))
    if outside:
        raise ProtocolViolation(setup, RULE, f"filters of the prunable layers only ({len(prunable)} of "
                                f"{arch.name})", f"the plan cuts {outside[0]!r}")
    widths = {n: len(plan.keep[n]) if n in plan.keep else modules[n].out_channels for n in prunable}
    total = sum(modules[n].out_channels for n in prunable)
    kept = sum(widths.values())
    record = {"kept": kept, "of": total, "unit": "filters", "scope": rule.scope}
    if target.config is not None or rule.scope == "layer":
        want = layer_counts(setup, model, arch, target, rule)
        for name in prunable:
            expected = want.get(name, modules[name].out_channels)
            if widths[name] != expected:
                raise ProtocolViolation(setup, RULE, f"{name} keeps {expected} of {modules[name].out_channels} "
                                        f"filters ({target.label()}, per layer)",
                                        f"{widths[name]} (the plan keeps {kept} of {total} prunable filters)")
        return {**record, "expected": sum(want.get(n, modules[n].out_channels) for n in prunable), "slack": 0}
    floors = {n: target.floor(modules[n].out_channels) for n in prunable}
    short = [n for n in prunable if widths[n] < floors[n]]
    if short:
        name = short[0]
        raise ProtocolViolation(setup, RULE, f"every prunable layer keeps at least {floors[name]} filters (the "
                                "protocol's protected layers)", f"{name} keeps {widths[name]} of "
                                f"{modules[name].out_channels}")
    expected = max(total - int(total * target.ratio), sum(floors.values()))
    if kept != expected:
        raise ProtocolViolation(setup, RULE, f"{expected} of {total} prunable filters kept ({target.label()}, "
                                "global, each layer's protected filters included)", f"{kept} of {total}")
    return {**record, "expected": expected, "slack": 0}


def _check_masks(setup: str, plan, model: nn.Module, target, rule: TargetRule) -> dict:
    weights = prunable_weights(model, rule.weights)
    outside = sorted(set(plan.masks) - set(weights))
    if outside:
        raise ProtocolViolation(setup, RULE, f"masks of {rule.weights} weights only", f"a mask of {outside[0]!r}")
    if target.ratio is None:
        raise ProtocolViolation(setup, RULE, "a pruning ratio (weight masks have no named configs)", target.label())
    total = sum(w.numel() for w in weights.values())
    each = {n: int(plan.masks[n].sum()) if n in plan.masks else w.numel() for n, w in weights.items()}
    kept = sum(each.values())
    floor = target.protect.weight_floor
    if rule.scope == "layer":
        for name, w in weights.items():
            want = max(w.numel() - int(w.numel() * target.ratio), floor(w.numel()))
            if each[name] != want:
                raise ProtocolViolation(setup, RULE, f"{name} keeps {want} of {w.numel()} weights ({target.label()}, "
                                        "per layer)", f"{each[name]} (the plan keeps {kept} of {total}, density "
                                        f"{kept / total:.4f})")
        expected = sum(max(w.numel() - int(w.numel() * target.ratio), floor(w.numel())) for w in weights.values())
    else:
        short = [n for n, w in weights.items() if each[n] < floor(w.numel())]
        if short:
            raise ProtocolViolation(setup, RULE, f"every weight tensor keeps at least {floor(weights[short[0]].numel())}"
                                    " weights (the protocol's protected layers)", f"{short[0]} keeps {each[short[0]]}")
        expected = max(total - int(total * target.ratio), sum(floor(w.numel()) for w in weights.values()))
        if kept != expected:
            raise ProtocolViolation(setup, RULE, f"{expected} of {total} {rule.weights} weights kept (density "
                                    f"{expected / total:.4f}, {target.label()}, global)",
                                    f"{kept} (density {kept / total:.4f})")
    return {"kept": kept, "of": total, "unit": f"{rule.weights} weights", "scope": rule.scope,
            "expected": expected, "slack": 0}
