"""Speedup targets: the ratio that meets a speedup, found by search over planning alone.

A method is only ever asked for a ratio (its own knob: the uniform ratio of a layer-wise method,
the global fraction of a global one, the sparsity of a weight-level one; with stage ratios, the
largest stage's ratio, the others scaled with it). The harness asks for plans at ratios k / K and
bisects on the MACs of the architecture each plan makes (effective MACs for weight masks), which
fall as the ratio grows, until a plan is within `TOLERANCE` of dense MACs / speedup. Where no ratio
gets that close (a small model's whole filters), it keeps the nearer of the two neighbouring
architectures around the target and records both. The plan kept is one the search evaluated:
nothing is planned again after the MACs were counted.

Nothing trains: a plan is computed on the weights the run would prune (the trained base, the
model after its pruning phase, or in the dry run a fresh model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prunebench.errors import UserError

TOLERANCE = 0.01  # relative to the target MACs
STEPS = 10_000  # ratios searched: k / STEPS for k in [0, STEPS)


@dataclass(frozen=True)
class Found:
    """What the search found: the ratio, its plan and MACs, and how they stand to the target."""

    speedup: float
    knob: float  # the ratio the method was asked for
    plan: Any  # PruningPlan
    macs: int
    target_macs: float
    within: bool  # |macs - target| <= TOLERANCE x target
    neighbours: tuple[int, int] | None = None  # (MACs above, MACs below the target) when not within
    calls: int = 0

    def record(self) -> dict[str, Any]:
        """For the run's `target` record (metrics.json) and `bench verify`."""
        return {"speedup": self.speedup, "knob": self.knob, "target_macs": self.target_macs, "macs": self.macs,
                "tolerance": TOLERANCE, "within": self.within,
                "closest": list(self.neighbours) if self.neighbours else None}


def search(speedup: float, dense_macs: int, plan_at: Callable[[float], Any], macs_of: Callable[[Any], int],
           what: str, floor_note: str = "", nested: Callable[[Any, Any], bool] | None = None) -> Found:
    """The ratio k / STEPS whose plan (`plan_at`) makes an architecture of MACs (`macs_of`) within
    TOLERANCE of `dense_macs / speedup`, or the nearer of the two architectures around it. Raises a
    `UserError` when even the highest ratio stays above the target (`what` names the method).

    The architecture above the target is kept only where the two are one step of the method's
    own pruning apart (`nested`: what the higher ratio keeps, the lower keeps too). A method
    whose plans jump between unrelated architectures at neighbouring ratios would otherwise make
    its own gap, and be given the MACs above the target: it gets the one below."""
    target = dense_macs / speedup
    seen: dict[int, tuple[Any, int]] = {}

    def at(k: int) -> tuple[Any, int]:
        if k not in seen:
            plan = plan_at(k / STEPS)
            seen[k] = (plan, int(macs_of(plan)))
        return seen[k]

    def found(k: int, within: bool, neighbours: tuple[int, int] | None = None) -> Found:
        plan, macs = at(k)
        return Found(speedup, k / STEPS, plan, macs, target, within, neighbours, len(seen))

    lo, hi = 0, STEPS - 1
    if abs(at(lo)[1] - target) <= TOLERANCE * target:
        return found(lo, True)
    if at(hi)[1] > target * (1 + TOLERANCE):
        reached = dense_macs / at(hi)[1] if at(hi)[1] else float("inf")
        raise UserError(f"{what} cannot reach a {speedup:g}x speedup: at ratio {hi / STEPS:g} its plan still has "
                        f"{at(hi)[1]:,} MACs ({reached:.2f}x of {dense_macs:,}){floor_note}. Choose a lower "
                        "--speedup.")
    if at(lo)[1] < target:  # already below the target at ratio 0: nothing closer exists
        return found(lo, False, (dense_macs, at(lo)[1]))
    # invariant: at(lo) is above the target, at(hi) at or below it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        macs = at(mid)[1]
        if abs(macs - target) <= TOLERANCE * target:
            return found(mid, True)
        if macs > target:
            lo = mid
        else:
            hi = mid
    if abs(at(hi)[1] - target) <= TOLERANCE * target:
        return found(hi, True)
    above, below = at(lo)[1], at(hi)[1]
    best = lo if above - target < target - below else hi
    if best == lo and nested is not None and not nested(at(lo)[0], at(hi)[0]):
        best = hi
    return found(best, False, (above, below))


def at_knob(mspec: Any, knob: float) -> Any:
    """The method (a `MethodSpec` at a speedup target) at ratio `knob`, as it is asked for a plan:
    its uniform ratio, or with `stage_ratios` those ratios scaled so that the largest is `knob`."""
    at = mspec.model_copy(update={"ratio": knob, "speedup": None})
    stages = mspec.settings.get("stage_ratios")
    if stages:
        top = max(stages)
        if top <= 0:
            raise UserError(f"method {mspec.label!r}: stage ratios {stages} prune nothing, so there is nothing to "
                            "scale towards a speedup; give them a positive entry.")
        at = at.model_copy(update={"settings": {**mspec.settings,
                                                "stage_ratios": [round(r * knob / top, 6) for r in stages]}})
    return at


def rule_at(mspec: Any, rule: Any, knob: float) -> tuple[Any, Any]:
    """The method and its target rule at ratio `knob` (stage ratios scaled alike)."""
    at = at_knob(mspec, knob)
    if rule.stage_ratios is not None:
        rule = rule.model_copy(update={"stage_ratios": tuple(at.settings["stage_ratios"])})
    return at, rule


def layer_search(setup: str, mspec: Any, rule: Any, model: Any, arch: Any, protect: Any, dense_macs: int,
                 macs_of: Callable[[Any], int]) -> Found:
    """The search of a per-layer rule done on the harness's own architectures (no method code: a
    per-layer plan must have exactly these widths): what a run's recorded ratio must equal."""
    from prunebench.method import Target
    from prunebench.pruning import PruningPlan
    from prunebench.targets import layer_counts

    def plan_at(knob: float) -> Any:
        at, at_rule = rule_at(mspec, rule, knob)
        return PruningPlan.first_k(layer_counts(setup, model, arch, Target(ratio=at.ratio, protect=protect), at_rule))

    return search(mspec.speedup, dense_macs, plan_at, macs_of, f"method {mspec.label!r}")


def check(setup: str, record: dict[str, Any], speedup: float, dense_macs: int, macs: int) -> None:
    """A `ProtocolViolation` ("pruning target") unless `macs` (of the architecture a run trains)
    meets `speedup`: within TOLERANCE of dense / speedup, or the nearer of the two neighbouring
    architectures the harness's own search recorded."""
    from prunebench.errors import ProtocolViolation
    from prunebench.targets import RULE

    target = dense_macs / speedup
    if abs(macs - target) <= TOLERANCE * target:
        return
    closest = record.get("closest") if isinstance(record, dict) else None
    if (isinstance(closest, list) and len(closest) == 2 and macs in closest and record.get("macs") == macs
            and closest[0] >= target >= closest[1]
            and (macs == closest[1] or abs(macs - target) <= min(abs(c - target) for c in closest))):
        return  # the nearer of the two around the target, or the one below it (never more than the target)
    raise ProtocolViolation(setup, RULE, f"{target:,.0f} MACs ({speedup:g}x of {dense_macs:,}, within "
                            f"{TOLERANCE:.0%}, or the nearest architecture the search found)",
                            f"{macs:,} MACs ({dense_macs / macs if macs else float('inf'):.3f}x)")


def met(setup: str, mspec: Any, rule: Any, found: Any, plan: Any, model: Any, arch: Any, protect: Any,
        dense_macs: int, macs_of: Callable[[Any], int], per_layer: bool) -> tuple[Any, Any]:
    """How a plan at a speedup target is held to it, wherever it is checked (a run's start, its
    scratch baseline, `bench verify`): the search's record `found` names a ratio k / STEPS, the
    plan's MACs meet the speedup (`check`), and a per-layer search (`per_layer`) is re-derived
    whole from the harness's own architectures. Returns the method and its rule at that ratio,
    which the plan must then meet (`targets.check`); a `ProtocolViolation` else."""
    from prunebench.errors import ProtocolViolation
    from prunebench.targets import RULE

    knob = found.get("knob") if isinstance(found, dict) else None
    if (not isinstance(knob, float | int) or not 0 <= knob < 1
            or abs(knob * STEPS - round(knob * STEPS)) > 1e-6):
        raise ProtocolViolation(setup, RULE, f"a {mspec.speedup:g}x speedup met through the harness's search (its "
                                "ratio recorded)", f"no search record ({found!r})")
    check(setup, found, mspec.speedup, dense_macs, macs_of(plan))
    if per_layer:  # a per-layer search needs no method code: the recorded one must be the harness's own
        own = layer_search(setup, mspec, rule, model, arch, protect, dense_macs, macs_of)
        if (own.knob, own.macs) != (float(knob), found.get("macs")):
            raise ProtocolViolation(setup, RULE, f"ratio {own.knob:g} ({own.macs:,} MACs), what the search over "
                                    "the per-layer architectures finds",
                                    f"ratio {knob:g} ({found.get('macs')} MACs) recorded")
    return rule_at(mspec, rule, float(knob))
