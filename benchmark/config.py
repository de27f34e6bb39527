"""Configs as frozen pydantic models: recipe, suite, protocol, run spec; run ids.

A run is named by the sha256 of its canonical config: the JSON of its non-default fields with
sorted keys, so that adding a defaulted field later keeps every old id (open_lth's rule).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prunebench.penalties import Penalty
from prunebench.schedule import LRSchedule, parse_pf
from prunebench.targets import TargetRule

SETUPS = ("S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2", "SX-A", "SX-B")
Setup = Literal["S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2", "SX-A", "SX-B"]
Phase = Literal["pretrain", "prune", "round", "retrain", "scratch"]


class Frozen(BaseModel):
    # every number a config holds is finite: NaN passes `lr <= 0`-style checks, infinities overflow
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


MAX_EPOCHS = 100_000  # bounds that no real recipe reaches, so that arithmetic on them cannot overflow


class Recipe(Frozen):
    """How one phase trains: SGD with momentum, a per-epoch LR schedule, batch and augmentation."""

    epochs: int = Field(ge=0, le=MAX_EPOCHS, description="number of epochs of this phase")
    lr: LRSchedule = Field(description="LR schedule, e.g. '0:0.1,80:0.01,120:0.001' or 'cosine:0.1'")
    batch_size: int = Field(128, gt=0, le=2**24, description="mini-batch size")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum")
    weight_decay: float = Field(1e-4, ge=0, description="L2 weight decay (SGD's weight_decay)")
    augment: Literal["none", "flip", "crop+flip"] = Field(
        "crop+flip", description="training augmentation, done batched on the training device"
    )
    pad: int = Field(4, ge=0, le=1024, description="zero padding before the random crop (crop+flip)")
    samples_per_epoch: int | None = Field(
        None, gt=0, le=2**40, description="samples drawn per epoch (reshuffled passes); default one pass over the "
        "data")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="arithmetic of forward and backward: fp32, or bf16 autocast (weights, optimizer "
        "and loss stay fp32)")

    @model_validator(mode="before")
    @classmethod
    def _expand_halving(cls, data: object) -> object:
        # Wang et al.'s halving rule needs the phase's epochs: expand it here, at the edge.
        if isinstance(data, dict) and isinstance(data.get("lr"), str) and data["lr"].strip().startswith("halving"):
            parts = data["lr"].strip().split(":")
            try:
                values = [float(p) for p in parts[1:]]
                if not 1 <= len(values) <= 2 or not isinstance(data.get("epochs"), int):
                    raise ValueError
                if not all(math.isfinite(v) and v > 0 for v in values) or not 0 <= data["epochs"] <= MAX_EPOCHS:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"cannot read {data['lr']!r}: write 'halving:LR' or 'halving:LR:FINAL_LR' (positive, finite LRs) in "
                    "a recipe with 'epochs'"
                ) from None
            data = {**data, "lr": LRSchedule.halving(data["epochs"], *values)}
        return data

    @model_validator(mode="after")
    def _schedule_fits(self) -> Recipe:
        if self.epochs and self.lr.last_start() >= self.epochs:
            raise ValueError(
                f"the LR schedule {self.lr} starts a stage at epoch {self.lr.last_start()}, "
                f"but the phase has only {self.epochs} epochs"
            )
        return self

    def truncated(self, epochs: int) -> Recipe:
        """The first `epochs` epochs of this recipe, LR per epoch unchanged (a P/F schedule's dense part)."""
        if epochs > self.epochs:
            raise ValueError(f"cannot take {epochs} epochs of a {self.epochs}-epoch recipe")
        if self.lr.kind == "cosine":
            raise ValueError("a cosine schedule cannot be truncated without changing its LRs")
        stages = [(e, lr) for e, lr in self.lr.stages if e < epochs] or self.lr.stages[:1]
        return self.model_copy(update={"epochs": epochs, "lr": LRSchedule(stages=stages)})

    def with_epochs(self, epochs: int) -> Recipe:
        """This recipe over `epochs`, its LR stages stretched to keep their fractions."""
        return self.model_copy(
            update={"epochs": epochs, "lr": self.lr.stretched(self.epochs, epochs)}
        )


class Suite(Frozen):
    """A dataset, an architecture and the base (pretraining) recipe."""

    not_content: ClassVar[tuple[str, ...]] = ("description", "seeds")  # what content_sha256 leaves out

    name: str = Field(description="suite name, e.g. 'cifar10-resnet56'")
    description: str = Field("", description="one line for `bench list suites`")
    dataset: str = Field(description="registered dataset name")
    arch: str = Field(description="registered architecture name")
    base: Recipe = Field(description="recipe that trains the dense base model")
    seeds: list[Annotated[int, Field(ge=0, lt=2**31)]] = Field([0, 1, 2], min_length=1,
                                                               description="seeds run by default")


class Budget(Frozen):
    """What a setup keeps equal in total across pipelines (SX-A: epochs, SX-B: training FLOPs)."""

    kind: Literal["epochs", "flops"] = Field(description="what is matched")
    tolerance: float = Field(
        0.01, ge=0, lt=1, description="allowed relative overrun of the budget"
    )
    convention: str = Field(
        "training FLOPs = sum over steps of samples x 3 x forward MACs x 2",
        description="how FLOPs are counted (recorded with every budget)",
    )


class Protect(Frozen):
    """Protected layers: the fewest filters (and the smallest fraction of its filters, rounded up)
    any prunable layer keeps, and the smallest fraction of each weight tensor a mask keeps, the
    same for every method. A global threshold cannot collapse a layer below it."""

    min_filters: int = Field(1, ge=1, le=2**20, description="filters every prunable layer keeps at least")
    min_fraction: float = Field(0.0, ge=0, lt=1, description="fraction of its filters (rounded up) every prunable "
                                "layer keeps at least; for weight masks, of each tensor's weights")

    def floor(self, channels: int) -> int:
        """Filters a layer of `channels` keeps at least (never more than it has)."""
        return min(channels, max(self.min_filters, math.ceil(self.min_fraction * channels - 1e-9)))

    def weight_floor(self, numel: int) -> int:
        """Weights of a tensor of `numel` a mask keeps at least."""
        return min(numel, math.ceil(self.min_fraction * numel - 1e-9))


class Rounds(Frozen):
    """Iterative pruning (Frankle & Carbin's iterative magnitude pruning, Li et al.'s "prune and
    retrain iteratively"): the target is reached in rounds, each pruning a part of what remains
    and training after it; the last round prunes to the target and the retraining follows. The
    harness owns the schedule: each round's plan is the method's, on the weights the harness
    hands it, and what a round removes stays removed."""

    rounds: int | None = Field(None, ge=1, le=100, description="rounds to the target (None: as many as "
                               "`per_round` needs)")
    per_round: float | None = Field(None, gt=0, lt=1, description="fraction of what remains pruned in each round "
                                    "(None: the one that reaches the target in `rounds` rounds)")
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="epochs trained after each round but the last "
                               "(None: the retraining's)")
    between: Literal["continue", "rewind"] = Field(
        "continue", description="what a round starts from: the weights trained so far (gradual pruning), or the "
        "base's weights at the method's rewind epoch under the round's mask (lottery tickets)")

    @model_validator(mode="after")
    def _given(self) -> Rounds:
        if self.rounds is None and self.per_round is None:
            raise ValueError("give 'rounds', 'per_round' or both")
        return self

    def schedule(self, target: float) -> list[float]:
        """The cumulative pruning ratio after each round, the last exactly `target`: with a
        per-round fraction q, 1 - (1 - q)^r, never past the target."""
        if target <= 0:
            return [target]
        q = self.per_round if self.per_round is not None else 1 - (1 - target) ** (1 / self.rounds)  # type: ignore[operator]
        n = self.rounds or max(1, math.ceil(math.log(1 - target) / math.log(1 - q) - 1e-9))
        if n > 100:
            raise ValueError(f"{n} rounds of {q:g} each to reach {target:g}: at most 100 rounds")
        schedule = [1 - (1 - q) ** r for r in range(1, n)]
        if schedule and schedule[-1] >= target:  # rounds after the target would only train again
            raise ValueError(f"{n} rounds of {q:g} each reach {target:g} before the last round: give fewer rounds "
                             "or a smaller per_round")
        return [*schedule, target]


class Protocol(Frozen):
    """One suite under one comparison setup: what must be equal across methods."""

    not_content: ClassVar[tuple[str, ...]] = ("description", "ratios", "configs", "speedups")  # run by default only
    absent_when_default: ClassVar[tuple[str, ...]] = ("round", "rounds")  # newer fields: unset, a protocol's content is as before

    setup: Setup = Field(description="comparison setup of Wang et al., Tab. 2")
    suite: str = Field(description="the suite this protocol applies to")
    description: str = Field("", description="what this protocol is for")
    ratios: list[float] = Field([0.5], description="uniform pruning ratios run by default")
    configs: list[str] = Field([], description="named layer-wise configs run by default (e.g. 'A')")
    speedups: list[Annotated[float, Field(gt=1, le=10_000)]] = Field(
        [], description="speedup targets run by default (dense MACs / pruned MACs, effective MACs for weight-level "
        "methods): the harness searches each method's own knob to within 1% of the target MACs")
    protect: Protect = Field(default_factory=lambda: Protect(), description="what every prunable layer keeps "
                             "whatever a method's plan (applied to every method alike)")
    pf: str | None = Field(
        None, description="Wang et al.'s P/F schedule, e.g. 'P30F90': the base is the suite's recipe "
        "cut at epoch P, and retraining lasts F epochs")
    prune: Recipe | None = Field(None, description="pruning-phase recipe (none: one-shot pruning)")
    retrain: Recipe = Field(description="retraining (fine-tuning) recipe")
    budget: Budget | None = Field(None, description="total budget matched by the scratch baseline")
    round: Recipe | None = Field(
        None, description="recipe of the training after each pruning round of an iterative method (none: the "
        "retraining's hyper-parameters, for the method's own epochs and LR); fixed across methods under S4.x")
    rounds: int | None = Field(
        None, ge=1, le=100, description="pruning rounds every method runs where the setup fixes them (S4.x: equal "
        "pruning processes); none: one shot there")

    @model_validator(mode="after")
    def _check(self) -> Protocol:
        if not self.ratios and not self.configs and not self.speedups:
            raise ValueError("give at least one pruning target in 'ratios', 'speedups' or 'configs'")
        for r in self.ratios:
            if not 0 <= r < 1:
                raise ValueError(f"pruning ratio {r} is outside [0, 1)")
        if self.pf is not None and parse_pf(self.pf)[1] != self.retrain.epochs:
            raise ValueError(f"pf {self.pf} retrains {parse_pf(self.pf)[1]} epochs but retrain.epochs is "
                             f"{self.retrain.epochs}")
        wants = {"SX-A": "epochs", "SX-B": "flops"}.get(self.setup)
        if wants and (self.budget is None or self.budget.kind != wants):
            raise ValueError(f"setup {self.setup} needs 'budget: {{kind: {wants}}}'")
        if not wants and self.budget is not None:
            raise ValueError(f"setup {self.setup} has no total budget (only SX-A and SX-B do): remove 'budget'")
        return self

    @property
    def pf_epochs(self) -> tuple[int, int] | None:
        return parse_pf(self.pf) if self.pf else None

    @property
    def scratch_variant(self) -> str | None:
        return {"SX-A": "Scratch-E", "SX-B": "Scratch-B"}.get(self.setup)


class MethodSpec(Frozen):
    """A method and the target it prunes to."""

    name: str = Field(description="registered method name")
    settings: dict[str, Any] = Field(default_factory=dict, description="method settings")
    ratio: float | None = Field(None, ge=0, lt=1, description="uniform pruning ratio")
    config: str | None = Field(None, description="named layer-wise config (e.g. 'A')")
    speedup: float | None = Field(None, gt=1, le=10_000, description="speedup target (dense MACs / pruned MACs): "
                                  "the harness searches the method's ratio that meets it")
    code: str | None = Field(None, description="sha256 of the method's source file (an edited method "
                             "never reuses runs of its old code)")

    @property
    def label(self) -> str:
        """The method's row in a table: its name, with any non-default settings."""
        if not self.settings:
            return self.name
        return f"{self.name}({', '.join(f'{k}={_short(v)}' for k, v in sorted(self.settings.items()))})"

    @property
    def without_recipe(self) -> MethodSpec:
        """The method without its retraining-recipe choice: what a scratch baseline trains
        (the source's architecture; its finetuning LR plays no part there)."""
        if "retrain_lr" not in self.settings:
            return self
        return self.model_copy(update={"settings": {k: v for k, v in self.settings.items() if k != "retrain_lr"}})

    @property
    def target(self) -> str:
        return target_label(self.ratio, self.config, self.speedup)


def target_label(ratio: float | None, config: str | None, speedup: float | None = None) -> str:
    """A pruning target as tables show it: '0.5', '2x' (a speedup), 'config A', or '-' (none)."""
    if config is not None:
        return f"config {config}"
    if speedup is not None:
        return f"{speedup:g}x"
    return f"{ratio:g}" if ratio is not None else "-"


def _short(value: Any) -> str:
    """A setting's value as a label shows it: an LR schedule in its 'epoch:lr' notation."""
    if isinstance(value, dict) and ("stages" in value or value.get("kind") == "cosine"):
        return f"'{LRSchedule.model_validate(value)}'"
    return str(value)


class RunSpec(Frozen):
    """Everything that decides what one run computes; its hash is the run id."""

    kind: Literal["base", "pruned", "scratch"] = Field(description="what the run produces")
    suite: str = Field(description="suite name (a label; the content follows)")
    dataset: str = Field(description="dataset name")
    arch: str = Field(description="architecture name")
    arch_signature: str | None = Field(
        None, description="sha256 of the built architecture's structure, so that a changed "
        "definition behind the same name never reuses stored runs")
    seed: int = Field(description="seed: base model, data order and init")
    phases: list[tuple[Phase, Recipe]] = Field(description="the phases trained, in order")
    protocol: str | None = Field(None, description="'suite/setup' of the protocol it ran under")
    base: str | None = Field(None, description="run id of the base model it starts from")
    method: MethodSpec | None = Field(None, description="pruning method and target")
    widths: dict[str, int] | None = Field(
        None, description="scratch: output channels per pruned layer of the architecture"
    )
    masks_sha256: str | None = Field(
        None, description="scratch of unstructured pruning: digest of the weight masks it trains under")
    variant: str | None = Field(None, description="scratch: 'Scratch-E' or 'Scratch-B'")
    recipe_of: str | None = Field(
        None, description="recipe cross-validation: the method whose retraining recipe this run borrows")
    penalty: Penalty | None = Field(
        None, description="the harness-owned regulariser of the pruning phase the method declared (bn_l1, "
        "growing_l2, group_lasso)")
    rounds: Rounds | None = Field(None, description="iterative pruning: the rounds its plans follow (None: one shot)")
    protect: Protect | None = Field(
        None, description="the protocol's protected layers its plan kept (None: the default, a layer keeps one "
        "filter at least): part of the identity, since the plan depends on them")
    target_rule: TargetRule | None = Field(
        None, description="how the method reaches its target (None: per layer, Li et al.'s rounding), declared by "
        "the method and part of the run's identity, so a run's record cannot claim another rule")
    division: Literal["closed", "open"] = Field(
        "closed", description="closed: method code ran only in the planning worker, never in training; open: "
        "method code ran inside the training process (labelled, ranked apart)")

    @property
    def run_id(self) -> str:
        return run_id(self)

    @property
    def row(self) -> str:
        """The run's row in a leaderboard: 'dense', the method's label, 'Scratch-B of l1norm',
        or 'l1norm with the recipe of random'."""
        if self.kind == "base" or self.method is None:
            return "dense"
        if self.kind == "scratch":
            return f"{self.variant or 'Scratch'} of {self.method.label}"
        if self.recipe_of:  # its own retrain_lr did not train here: the label leaves it out
            return f"{self.method.without_recipe.label} with the recipe of {self.recipe_of}"
        return self.method.label

    def epochs(self) -> int:
        return sum(recipe.epochs for _, recipe in self.phases)


class Computation(Frozen):
    """What a run computes, whatever tables it belongs to: its training identity. Two runs of one
    computation (a pruned run under S2 and under SX-B, Scratch-B of l1norm and of random at the
    same widths) train once; each is still audited against its own protocol. Method, setup,
    protocol and row are memberships (the run's `RunSpec`), recorded beside it."""

    kind: Literal["base", "pruned", "scratch"] = Field(description="what the computation produces")
    dataset: str = Field(description="dataset name")
    arch: str = Field(description="architecture name")
    arch_signature: str | None = Field(None, description="sha256 of the built architecture's structure")
    seed: int = Field(description="seed: init and data order (and the base's, through `base`)")
    phases: list[tuple[Phase, Recipe]] = Field(description="the phases trained, in order (precision included)")
    base: str | None = Field(None, description="pruned: the computation id of the base model it starts from")
    plan_sha256: str | None = Field(
        None, description="one-shot pruning: sha256 of the plan's content (kept filters, or masks) it cuts")
    rewind: int | None = Field(None, description="pruned: the base epoch its weights are rewound to before the cut")
    method: MethodSpec | None = Field(
        None, description="pruned with a pruning phase: the method (code, settings, target) whose plan is chosen "
        "after the phase, so that it stands for the plan")
    protect: Protect | None = Field(None, description="with `method`: the protected layers its plan keeps")
    target_rule: TargetRule | None = Field(None, description="with `method`: the rule its target is met by")
    penalty: Penalty | None = Field(None, description="the harness's regulariser of the pruning phase")
    rounds: Rounds | None = Field(None, description="iterative pruning: its rounds (each round's plan is the method's)")
    widths: dict[str, int] | None = Field(None, description="scratch: output channels per pruned layer")
    masks_sha256: str | None = Field(None, description="scratch of unstructured pruning: digest of its masks")
    protocol: str | None = Field(
        None, description="with `method`: the protocol content (sha256) the method declared and planned under")
    division: Literal["closed", "open"] = Field("closed", description="where method code ran (never shared across)")

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical(self).encode()).hexdigest()


def canonical(model: BaseModel) -> str:
    """Canonical JSON of a config: non-default fields only, sorted keys, no spaces."""
    return json.dumps(
        model.model_dump(mode="json", exclude_defaults=True), sort_keys=True, separators=(",", ":")
    )


def content_sha256(model: BaseModel) -> str:
    """sha256 of a config's content (every field that decides what is trained or audited,
    defaults included, sorted keys): what a suite or protocol *is*, whatever its file's name,
    comments or layout. A description, or which seeds and targets run by default, is not part of
    it (`not_content`): extending a suite's seeds or a protocol's ratios splits no table."""
    exclude = set(getattr(type(model), "not_content", ()))
    exclude |= {name for name in getattr(type(model), "absent_when_default", ())
                if getattr(model, name) == type(model).model_fields[name].default}
    text = json.dumps(model.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_id(spec: RunSpec) -> str:
    return hashlib.sha256(canonical(spec).encode()).hexdigest()
