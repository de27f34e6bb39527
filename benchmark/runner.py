"""Turns (protocol, methods, targets, seeds) into runs, executes them through the store, and
summarises the results.

For each seed the base model is trained once (or found in the store) and feeds every method and
target of that seed, so comparisons are paired. A pruned run loads the base (its sha256 checked
against the loop's record), trains the pruning phase if the protocol has one (under the penalty
the method declared), cuts the filters the method's plan drops and retrains. Under SX-A / SX-B a
scratch baseline trains the same pruned architecture from a fresh init for the matched budget
(Scratch-E / Scratch-B).

The pipeline: method declarations and plans come from the planner (`planning`: a worker process
in the closed division), budgets from `budget`, the grid's runs from `Harness.grid`, their
execution from an executor (`executor`: sequential or Ray) through `Harness.execute` (the lock,
the checks of `verify`, training, the audit), and the rows from `summary`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

import prunebench
from prunebench import audit, machine, paths, penalties, search, signals, targets
from prunebench._atomic import sha256_file, write_atomic
from prunebench.budget import Budgets
from prunebench.config import (
    Computation,
    MethodSpec,
    Protect,
    Protocol,
    Recipe,
    Rounds,
    RunSpec,
    Suite,
    canonical,
    content_sha256,
)
from prunebench.data import DATASETS, Split, TensorData, check_data_root, load_dataset
from prunebench.errors import DamagedFile, ProtocolViolation, TrainingFailed, UserError
from prunebench.executor import Executor, SequentialExecutor
from prunebench.flops import effective_macs, forward_macs, param_count
from prunebench.method import Choices, Target
from prunebench.models import ARCHS, reinitialise
from prunebench.planning import (
    DIVISIONS,
    ClosedPlanner,
    Declared,
    MethodInfo,
    OpenPlanner,
    PlanInputs,
    Planner,
    bwrap_problem,
    changes,
    fingerprint,
    method_modules,
)
from prunebench.progress import GridProgress
from prunebench.protocol_files import load_suites
from prunebench.pruning import Masks, PruningPlan, apply_masks, apply_plan, filter_masks, plan_macs, revived
from prunebench.schedule import LRSchedule
from prunebench.setups import fixes
from prunebench.store import RunFiles, Store, trainability
from prunebench.summary import Failure, failures, summarise_grid
from prunebench.targets import RULE as TARGET_RULE
from prunebench.trace import Trace, TraceRow
from prunebench.train import save_atomic, train_phases
from prunebench.verify import RunChecks

Log = Callable[[str], None]


def _link(source: Path, destination: Path) -> None:
    """`destination` as a hard link to `source` (a copy where the file system has none)."""
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Start:
    """Where a run's training starts: the model, the phases left, what was already trained."""

    model: nn.Module
    phases: list[tuple[str, Recipe]]
    prior: Trace = field(default_factory=Trace)
    masks: Masks | None = None  # unstructured pruning: weights held at zero while training
    target: dict[str, Any] | None = None  # what the plan keeps against its target (`targets.check`)
    plan_sha256: str | None = None  # one-shot pruning: the content of the plan cut (the computation's)
    rewind: int | None = None  # pruned: the base epoch the weights were rewound to before the cut


@dataclass
class Planned:
    """One run as planned: its spec and what the dry run shows."""

    spec: RunSpec
    row: str
    target: Target | None
    macs: int
    budget: float | None = None  # SX budget in the protocol's unit (epochs or training FLOPs)
    start: Callable[[Path], Start] | None = None  # builds the model the run starts from
    found: dict[str, Any] | None = None  # a speedup target: the search's record (the ratio, MACs, neighbours)
    computation: str | None = None  # what it computes (`Computation.id`; planned on a fresh model in a dry run)


def _code_version() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(prunebench.__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"prunebench {prunebench.__version__}" + (f" ({commit})" if commit else "")


Borrowed = dict[str, tuple[str, Recipe]]  # method (as given) -> (lender's label, retraining recipe)


def _nested(larger: PruningPlan, smaller: PruningPlan) -> bool:
    """Whether `smaller` keeps a subset of what `larger` keeps: one step of a method's own pruning."""
    if larger.masks or smaller.masks:
        return larger.masks.keys() == smaller.masks.keys() and all(
            not bool((smaller.masks[n] & ~m).any()) for n, m in larger.masks.items())
    for name in set(larger.keep) | set(smaller.keep):
        big, small = larger.keep.get(name), smaller.keep.get(name)
        if big is not None and (small is None or not set(small) <= set(big)):  # None: the whole layer
            return False
    return True


class Harness:
    """Runs a protocol's grid through the store."""

    def __init__(self, protocol: Protocol, *, store: Path, protocol_sha256: str = "",
                 data_root: Path | None = None, device: str | None = None,
                 progress: bool = True, log: Log | None = None, compiled: bool = False,
                 plugins: tuple[str, ...] = (), executor: Executor | None = None,
                 division: str = "closed", sandbox: str = "auto") -> None:
        if division not in DIVISIONS:
            raise UserError(f"--division {division!r}: use closed (method code only in the planning worker) or "
                            "open (method code inside training, labelled open).")
        self.division, self.sandbox = division, sandbox
        self.protocol = protocol
        self.suite: Suite = load_suites().get(protocol.suite)
        self.arch = ARCHS.get(self.suite.arch)
        self.dataset = DATASETS.get(self.suite.dataset)
        self.input_shape = self.dataset.input_shape
        self.store_root = Path(store)
        self.protocol_file_sha256 = protocol_sha256  # the file's bytes, as given (provenance)
        # what tables group by: the content each run was audited against, whatever its name
        self.protocol_sha256, self.suite_sha256 = content_sha256(protocol), content_sha256(self.suite)
        self.data_root = data_root
        check_data_root(data_root)  # a named root that does not exist is an error, even if every run is cached
        self.set_device(device)
        self.compiled = compiled  # torch.compile: an execution setting, not part of any run's spec
        self.plugins = tuple(plugins)  # loaded by the planning worker (closed) or this process (open)
        self.executor = executor  # None: runs one after another in this process
        self.progress = progress
        self.log: Log = log or _stderr
        self.files = RunFiles(self.store_root)
        self._data: tuple[Split, Split] | None = None
        self._fingerprint = ""
        self._plans: dict[tuple, tuple[PruningPlan, dict[str, Any] | None]] = {}  # with a speedup's search
        self._declared: dict[str, Declared] = {}
        self._bases: dict[str, RunSpec] = {}  # base run id -> its spec, for the computations built on it
        # base run id -> sha256 of its model.pt, as the loop wrote it (or first verified it) in this
        # grid: what a pruned run loads is checked against this, not against a file read later
        self._base_sha: dict[str, str] = {}
        self._open_changes: list[str] = []  # open division: what method code changed in the current run
        self._cpu_recorded: dict[str, float] = {}  # method -> its planner CPU seconds at its last recorded run
        self._resumed_seconds = 0.0  # the current run's epochs trained by earlier processes (from checkpoints)
        self._records: list[tuple] | None = None  # a worker's index writes, for the driver to apply
        self._training: dict[str, str | None] = {}  # what the run being trained started from (data, base weights)
        self.grid_progress: GridProgress | None = None
        self.failures: list[Failure] = []  # of the last `run`, in the order they happened

    def set_device(self, device: str | torch.device | None) -> None:
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError:
            raise UserError(f"--device {device!r} is not a torch device: use e.g. cpu, cuda or cuda:1.") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {device}: PyTorch sees no CUDA GPU on this machine (torch "
                            f"{torch.__version__}); use --device cpu, or leave --device out.")
        # execution settings (the recipe is unchanged): channels_last is faster with cuDNN and,
        # with oneDNN, on CPU too (torch 2.14, 2 cores: ResNet-20 +14%, the small CNN +23% in a
        # bare training step); cuDNN picks the fastest convolution algorithms for the (fixed)
        # shapes once
        self.memory_format = torch.channels_last
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._data = None

    def __getstate__(self) -> dict[str, Any]:
        """What travels to a Ray worker: the protocol and settings, not the data, the index or
        the driver's caches (a worker loads its own data and never opens the SQLite index)."""
        state = dict(self.__dict__)
        for local in ("_data", "store", "_plans", "log", "grid_progress", "failures", "planner", "_cpu_recorded"):
            state.pop(local, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._data, self._plans, self.log, self.grid_progress, self.failures = None, {}, _stderr, None, []
        self._bases = state.get("_bases", {})
        self._cpu_recorded = {}  # a worker's own planner starts from nothing

    @cached_property
    def planner(self) -> Planner:
        """Where method code runs: planning workers (closed division) or this process (open)."""
        if self.division == "open":
            return OpenPlanner(self.plugins)
        # the data roots are hidden from a sandboxed worker; the store, like everything else, is
        # read-only there (not hidden, so one worker serves every store of this process)
        hidden = [self.data_root or paths.default_data_root(), paths.cache_home(), paths.DEBIAN_FASHION_MNIST]
        planner = ClosedPlanner(self.plugins, self.sandbox,
                                tuple(sorted({Path(p).expanduser().resolve() for p in hidden})))
        if not planner.sandboxed and self.sandbox == "auto":
            self.log(f"the built-in methods plan unsandboxed and plug-ins are refused: {bwrap_problem()} (apt-get "
                     "install bubblewrap; every run records that it was not sandboxed)")
        return planner

    def _index(self, spec: RunSpec, status: str, metrics: dict[str, Any] | None = None,
               violation: str | None = None, failure: str | None = None) -> None:
        """Record a run's state in the SQLite index; in a worker, kept for the driver to record."""
        metrics = metrics if metrics is not None else self.audited_against(spec)  # which table it belongs to
        if self._records is not None:
            self._records.append((spec, status, metrics, violation, failure))
        else:
            self.store.index(spec, status, metrics, violation=violation, failure=failure)

    @contextmanager
    def recording(self) -> Iterator[list[tuple]]:
        """Index writes kept in a list instead of made (a Ray task: the driver alone writes the
        SQLite index, from the records the task returns)."""
        self._records = records = []
        try:
            yield records
        finally:
            self._records = None

    def loaded_data(self) -> tuple[tuple[Split, Split], str] | None:
        """The splits this harness has loaded and their fingerprint (for a worker to keep)."""
        return (self._data, self._fingerprint) if self._data is not None else None

    def use_data(self, loaded: tuple[tuple[Split, Split], str]) -> None:
        """Splits another harness of this process loaded (same dataset, root and device)."""
        self._data, self._fingerprint = loaded

    @cached_property
    def store(self) -> Store:
        return Store(self.store_root)

    @property
    def train_size(self) -> int:
        """Images in the training split: those present once the data are loaded (budgets count
        them), the dataset's registered size before (the dry run's estimate)."""
        return len(self._data[0]) if self._data is not None else self.dataset.train_size

    @property
    def setup(self) -> str:
        return self.protocol.setup

    @property
    def protocol_label(self) -> str:
        return f"{self.suite.name}/{self.setup}"

    # --- specs ---------------------------------------------------------------------------

    def build(self) -> nn.Module:
        return self.arch.build(self.dataset.num_classes, self.input_shape[0])

    @cached_property
    def arch_signature(self) -> str:
        return hashlib.sha256(repr(self.build()).encode()).hexdigest()[:16]

    @cached_property
    def dense_macs(self) -> int:
        return forward_macs(self.build(), self.input_shape)

    @cached_property
    def budgets(self) -> Budgets:
        """The protocol's epoch and FLOPs arithmetic (benchmark/budget.py)."""
        return Budgets(self.protocol, self.suite, self.dense_macs, self.dataset.train_size)

    @property
    def base_recipe(self) -> Recipe:
        """The shared base: the suite's recipe, or its first P epochs under a P/F schedule."""
        return self.budgets.base_recipe

    def _spec(self, **fields: Any) -> RunSpec:
        s = self.suite
        return RunSpec(suite=s.name, dataset=s.dataset, arch=s.arch, arch_signature=self.arch_signature,
                       division=self.division, **fields)

    @property
    def squeezes(self) -> bool:
        return self.budgets.squeezes

    def base_spec(self, seed: int, recipe: Recipe | None = None) -> RunSpec:
        spec = self._spec(kind="base", seed=seed, phases=[("pretrain", recipe or self.base_recipe)])
        self._bases.setdefault(spec.run_id, spec)
        return spec

    def computation(self, spec: RunSpec, plan_sha256: str | None = None, rewind: int | None = None) -> Computation:
        """What `spec` computes, its labels left out: a base or scratch run from its spec; a pruned
        run from its base's computation, the content of its plan (`plan_sha256`), the base epoch it
        rewinds to, its recipes and penalty. Where the plan is chosen after a pruning phase, or
        method code ran inside training (the open division), the method itself (code, settings,
        target, protected layers, rule) and the protocol content it declared and planned under
        stand for (or beside) the plan: such a computation is shared only within one protocol."""
        common = {"kind": spec.kind, "dataset": spec.dataset, "arch": spec.arch, "seed": spec.seed,
                  "arch_signature": spec.arch_signature, "phases": spec.phases, "division": spec.division}
        if spec.kind == "base":
            return Computation(**common)
        if spec.kind == "scratch":
            return Computation(**common, widths=spec.widths, masks_sha256=spec.masks_sha256)
        assert spec.base is not None
        base = self._bases.get(spec.base) or self.files.spec(spec.base)
        by_method = self.by_method(spec)
        if not self._phased(spec) and plan_sha256 is None:
            raise ValueError("a one-shot pruned run's computation needs its plan")
        return Computation(**common, base=self.computation(base).id, rewind=rewind, penalty=spec.penalty,
                           plan_sha256=plan_sha256 if not self._phased(spec) else None,
                           method=spec.method if by_method else None,
                           protect=spec.protect if by_method else None,
                           target_rule=spec.target_rule if by_method else None,
                           protocol=self.protocol_sha256 if by_method else None, rounds=spec.rounds)

    @staticmethod
    def _phased(spec: RunSpec) -> bool:
        """Whether a pruned run trains before its final plan: a pruning phase, or pruning rounds."""
        return any(p in ("prune", "round") for p, _ in spec.phases)

    @staticmethod
    def by_method(spec: RunSpec) -> bool:
        """Whether a pruned run's plan is known only from its method: chosen after a pruning
        phase, or in the open division (method code in the training process)."""
        return spec.kind == "pruned" and (spec.division == "open" or Harness._phased(spec))

    def declared(self, mspec: MethodSpec) -> Declared:
        """What the method declares under this protocol (asked once per method and settings). In
        both divisions the method is handed a copy rebuilt from the protocol's JSON; altering it
        is a violation (`Planner.declare`)."""
        key = json.dumps([mspec.name, mspec.settings], sort_keys=True)
        if key not in self._declared:
            self._declared[key] = self.planner.declare(mspec, self.protocol)
        return self._declared[key]

    def choices(self, mspec: MethodSpec) -> Choices:
        """The method's declared choices, with its own retraining LR (`retrain_lr`) applied."""
        chosen = self.declared(mspec).choices
        own_lr = mspec.settings.get("retrain_lr")  # MethodSettings: any method's own finetuning LR
        if own_lr is not None:
            if fixes(self.setup, "retrain.lr"):
                raise UserError(f"method {mspec.name!r}: {self.setup} fixes the retraining LR schedule "
                                f"({self.protocol.retrain.lr}); drop retrain_lr, or use a setup that leaves it "
                                "free (S1, S2, S3.1, SX-A, SX-B).")
            retrain = chosen.retrain or self.protocol.retrain
            try:  # validated: a schedule must fit the phase it schedules
                retrain = Recipe.model_validate({**retrain.model_dump(), "lr": own_lr})
            except ValidationError as e:
                own_lr = LRSchedule.model_validate(own_lr)
                raise UserError(f"method {mspec.name!r}: its retrain_lr {own_lr} does not fit the retraining "
                                f"recipe ({retrain.epochs} epochs): {e.errors()[0]['msg']}.") from None
            chosen = chosen.model_copy(update={"retrain": retrain})
        return chosen

    def pruned_spec(self, mspec: MethodSpec, seed: int, chosen: Choices, base_recipe: Recipe | None = None,
                    recipe_of: str | None = None, penalty: penalties.Penalty | None = None,
                    knob: float | None = None, unfitted: Choices | None = None) -> RunSpec:
        """A pruned run: its pruning phase (if any), a training after each pruning round but the
        last (an iterative method; `knob`: the ratio a speedup's search found; the rounds' recipe
        from the choices before an SX budget shortened the retraining, `unfitted`), its retraining."""
        phases: list[tuple[str, Recipe]] = []
        prune = chosen.prune or self.protocol.prune
        if prune is not None and prune.epochs:
            phases.append(("prune", prune))
        retrain = chosen.retrain or self.protocol.retrain
        rounds = self.rounds_of(mspec)
        schedule = self.schedule(mspec, rounds, knob)
        if len(schedule) > 1:
            phases += [("round", self.round_recipe(mspec, unfitted or chosen))] * (len(schedule) - 1)
        phases.append(("retrain", retrain))
        base = self.base_spec(seed, chosen.base or base_recipe)
        return self._spec(kind="pruned", seed=seed, phases=phases, protocol=self.protocol_label,
                          base=base.run_id, method=mspec, recipe_of=recipe_of, target_rule=self._rule(mspec),
                          protect=self.protect, rounds=rounds if len(schedule) > 1 else None,
                          penalty=penalty if prune is not None and prune.epochs else None)  # acts in the pruning phase

    def rounds_of(self, mspec: MethodSpec) -> Rounds | None:
        """The rounds a method prunes in: its own declaration, else the protocol's `rounds` (which
        the harness then runs for every method alike; S4.x fixes their number)."""
        own = self.declared(mspec).rounds
        if fixes(self.setup, "round.count"):  # an equal pruning process: the protocol's rounds for every method
            count = self.protocol.rounds or 1
            if own is not None and own.per_round is None and own.rounds != count:  # a count of its own
                raise ProtocolViolation(self.setup, "pruning rounds", count, own.rounds)
            epochs = mspec.settings.get("round_epochs")
            fixed = (self.protocol.round or self.protocol.retrain).epochs
            if count > 1 and fixes(self.setup, "round.epochs") and epochs is not None and epochs != fixed:
                raise ProtocolViolation(self.setup, "round epochs", fixed, epochs)
            # a fraction per round (lottery's 20%) yields to the protocol's count; what a round starts
            # from (a lottery ticket rewinds) stays the method's
            own = Rounds(rounds=count, epochs=epochs, between=own.between if own else "continue") if count > 1 else None
        elif own is None and self.protocol.rounds and self.protocol.rounds > 1:  # with the method's round_epochs
            own = Rounds(rounds=self.protocol.rounds, epochs=mspec.settings.get("round_epochs"))
        if own is None and mspec.settings.get("round_epochs") is not None:
            raise UserError(f"method {mspec.label!r}: 'round_epochs' is the training between pruning rounds, but it "
                            "prunes in one shot; give it 'rounds' too (e.g. rounds=3) or drop 'round_epochs'.")
        if own is not None and mspec.settings.get("stage_ratios"):
            raise UserError(f"method {mspec.label!r}: 'stage_ratios' fix each stage's final ratio, which the pruning "
                            "rounds cannot reach gradually; drop 'rounds' or 'stage_ratios'.")
        return own

    def round_recipe(self, mspec: MethodSpec, chosen: Choices) -> Recipe:
        """What each pruning round trains: the protocol's `round` recipe, else the retraining's
        hyper-parameters and LR schedule over the method's round epochs (by default the
        retraining's epochs; under SX, where the rounds come out of the retraining budget, one
        epoch each, the retraining keeping the rest)."""
        rounds = self.rounds_of(mspec)
        assert rounds is not None
        template = self.protocol.round or (chosen.retrain or self.protocol.retrain)
        epochs = rounds.epochs
        if epochs is None and self.protocol.round is None and self.protocol.budget is not None:
            epochs = 1  # under SX the rounds come out of the retraining budget: one epoch each, the rest retrains
        if epochs in (None, template.epochs):
            return template
        if self.protocol.round is None and epochs < template.epochs:  # a short round trains at the first LR
            first = template.lr.lr_at(0, template.epochs)
            return template.model_copy(update={"epochs": epochs, "lr": LRSchedule(stages=[(0, first)])})
        return template.with_epochs(epochs)

    def schedule(self, mspec: MethodSpec, rounds: Rounds | None, knob: float | None = None) -> list[float]:
        """The cumulative ratio after each pruning round, the last the target's (one round: one shot)."""
        if rounds is None:
            return [mspec.ratio if mspec.ratio is not None else (knob or 0.0)]
        if mspec.config is not None:
            raise UserError(f"method {mspec.label!r} prunes in rounds, which need a ratio or speedup target, not a "
                            f"named config ({mspec.config}); give --ratio or --speedup, or rounds=1.")
        ratio = mspec.ratio if mspec.ratio is not None else knob
        if ratio is None:
            raise ValueError("a speedup target's rounds need the ratio its search found")
        try:
            return rounds.schedule(ratio)
        except ValueError as e:
            raise UserError(f"method {mspec.label!r}: its pruning rounds cannot run: {e}.") from None

    def scratch_spec(self, source: MethodSpec, seed: int, plan: PruningPlan, pruned_macs: int) -> RunSpec:
        """The scratch baseline of `source`: its pruned architecture (widths, or masks by digest)
        from a fresh init, for the epochs of the protocol's variant."""
        variant, epochs = self.budgets.variant, self.budgets.scratch_epochs(pruned_macs)
        return self._spec(kind="scratch", seed=seed, phases=[("scratch", self.suite.base.with_epochs(epochs))],
                          protocol=self.protocol_label, method=source.without_recipe, variant=variant,
                          target_rule=self._rule(source), protect=self.protect,
                          widths=None if plan.masks else plan.widths(), masks_sha256=plan.masks_sha256())

    def budget(self, pruned_macs: int) -> float | None:
        """The SX budget of one pruning pipeline (None outside SX), over the images present."""
        return self.budgets.budget(pruned_macs, self.train_size)

    @property
    def protect(self) -> Protect | None:
        """The protocol's protected layers, as a spec records them (None for the default)."""
        return None if self.protocol.protect == Protect() else self.protocol.protect

    def targets(self, ratio: float | None, config: str | None, speedup: float | None = None) -> list[Target]:
        protect = self.protocol.protect
        if ratio is not None or config is not None or speedup is not None:
            return [Target(ratio=ratio, config=config, speedup=speedup, protect=protect)]
        return ([Target(ratio=r, protect=protect) for r in self.protocol.ratios]
                + [Target(speedup=x, protect=protect) for x in self.protocol.speedups]
                + [Target(config=c, protect=protect) for c in self.protocol.configs])

    # --- the grid (planned for the dry run, executed by `run`) ----------------------------

    def plan(self, methods: list[str], seeds: list[int], ratio: float | None = None,
             config: str | None = None, borrow: Borrowed | None = None, speedup: float | None = None) -> list[Planned]:
        """Every run of the grid, in execution order, without training. Pruned architectures are
        planned on an untrained model here: exact for predefined layer-wise ratios (l1norm,
        random, magnitude per layer), an estimate for methods whose architecture depends on
        trained weights or a pruning phase (slimming, global Taylor)."""
        return list(self.grid(methods, seeds, ratio, config, live=False, borrow=borrow, speedup=speedup))

    def resolve(self, text: str) -> tuple[MethodInfo, MethodSpec]:
        """A method as given (`NAME[:KEY=VALUE,...]`), settings validated by the method; a method
        with code of its own inside the loop is refused outside the open division."""
        info, mspec = self.planner.resolve(text)
        if info.own_code_in_loop and self.division != "open":
            raise UserError(f"method {info.name!r} ({info.origin}) runs code of its own inside the training loop "
                            "(a `regularizer`), which the closed division never does. Declare one of the harness's "
                            f"penalties instead ({', '.join(penalties.PENALTY_KINDS)}: `penalty()`), or run it with "
                            "--division open, whose rows are labelled open and ranked apart.")
        return info, mspec.model_copy(update={"code": info.code})

    def own_recipe(self, text: str) -> Recipe:
        """The retraining recipe a method chooses under this protocol (its `retrain_lr`, or
        whatever its `choices` return), before any fitting to an SX budget."""
        info, mspec = self.resolve(text)
        if info.from_scratch:
            raise UserError(f"{mspec.name!r} is a baseline trained from scratch; it has no retraining recipe.")
        return self.choices(mspec).retrain or self.protocol.retrain

    def grid(self, methods: list[str], seeds: list[int], ratio: float | None, config: str | None,
              live: bool, borrow: Borrowed | None = None,
              ready: Callable[[str], bool] | None = None, speedup: float | None = None) -> Iterator[Planned]:
        """The runs of a grid, lazily. When `live`, each yielded run is trained before the
        generator goes on, so pruned architectures are planned on the trained base, and a scratch
        baseline takes the architecture its source pipeline actually cut. `borrow` maps a method
        (as given) to (lender, recipe): that method retrains with the lender's recipe instead of
        its own, and its scratch baseline is not repeated (recipe cross-validation).

        With `ready` (a parallel executor), the generator does not wait: a run whose base (or,
        for a scratch baseline, whose source run) is not `ready` yet is left out of this pass,
        and the executor walks the grid again when runs finish."""
        resolved = [(text, *self.resolve(text)) for text in methods]
        targets = self.targets(ratio, config, speedup)
        seen: set[str] = set()

        def once(planned: Planned) -> Iterator[Planned]:
            if planned.spec.run_id not in seen:
                seen.add(planned.spec.run_id)
                yield planned

        for seed in seeds:
            yield from once(self._base_job(self.base_spec(seed)))
            for text, method, given in resolved:
                lender, recipe = (borrow or {}).get(text, (None, None))
                for target in targets:
                    mspec = given.model_copy(update={"ratio": target.ratio, "config": target.config,
                                                     "speedup": target.speedup})
                    source_spec, source = self._source(method, mspec)
                    chosen = self.choices(source_spec)
                    if recipe is not None:
                        chosen = chosen.model_copy(update={"retrain": recipe})
                    shared = self.base_recipe
                    if self.squeezes:  # needs the speedup before the base exists: planned on a fresh model
                        planned, _ = self._plan_on(source, source_spec, seed, None)
                        shared = self.budgets.pipeline_base(self._macs_of(planned))
                    base = self.base_spec(seed, chosen.base or shared)
                    rewind = self.declared(source_spec).rewind
                    if rewind is not None and not 0 <= rewind <= base.phases[0][1].epochs:
                        raise UserError(f"cannot rewind to epoch {rewind}: the base model trains "
                                        f"{base.phases[0][1].epochs} epochs (set rewind_epoch between 0 and "
                                        f"{base.phases[0][1].epochs}).")
                    yield from once(self._base_job(base))
                    if live and (ready is not None and not ready(base.run_id) or self.files.failure(base.run_id)):
                        continue  # not trained yet (parallel), or failed: nothing starts from it
                    try:
                        plan, found = self._plan_on(source, source_spec, seed, base.run_id if live else None)
                    except ProtocolViolation as v:
                        if live and v.rule.startswith("base checkpoint sha256"):
                            # the base's files are not those the loop wrote: the base run records it
                            self._record_violation(base, self.files.run_dir(base.run_id), v)
                        elif live and v.rule == TARGET_RULE:
                            # a speedup's search on the trained base met a plan off the method's rule:
                            # the run of this method, target and seed records it (its recipe as chosen,
                            # since no architecture exists to fit an SX budget to)
                            missed = self.pruned_spec(source_spec, seed, chosen, shared, recipe_of=lender,
                                                      penalty=self.declared(source_spec).penalty,
                                                      knob=0.0)  # no ratio found: no rounds to lay out
                            self._record_violation(missed, self.files.prepare(missed), v)
                        raise
                    macs = self._macs_of(plan)
                    unfitted, chosen = chosen, self.budgets.fit(chosen, macs, self._rounds_cost(
                        source, source_spec, seed, base.run_id if live else None, chosen, found))
                    spec = self.pruned_spec(source_spec, seed, chosen, shared, recipe_of=lender,
                                            penalty=self.declared(source_spec).penalty,
                                            knob=found["knob"] if found else None, unfitted=unfitted)
                    has_phase = self._phased(spec)  # a pruning phase or rounds: the architecture comes after
                    if not method.from_scratch or has_phase:
                        # a scratch baseline of a method with a pruning phase trains the architecture
                        # that phase led to: the source's pruned run comes first
                        yield from once(Planned(spec, spec.row, target, macs, self.budget(macs),
                                                start=partial(self._start_pruned, spec, source,
                                                              self.base_spec(seed, shared).run_id), found=found,
                                                computation=self.computation(spec, plan.sha256(),
                                                                             self._rewind(spec)).id))
                        if live and (ready is not None and not ready(spec.run_id) or self.files.failure(spec.run_id)):
                            continue  # not trained yet (parallel), or failed: no architecture to copy
                        if live:  # the architecture the pipeline actually cut, and how it met a speedup
                            plan = PruningPlan.load(self.files.run_dir(spec.run_id)) or plan
                            macs = self._macs_of(plan)
                            met = (self.files.metrics(spec.run_id) or {}).get("target")
                            found = met.get("search") if isinstance(met, dict) else found
                    if (method.from_scratch or self.protocol.scratch_variant) and lender is None:
                        scratch = self.scratch_spec(source_spec, seed, plan, macs)
                        yield from once(Planned(scratch, scratch.row, target,
                                                macs, self.budget(macs), found=found,
                                                start=partial(self._start_scratch, scratch, plan, source, source_spec,
                                                              found), computation=self.computation(scratch).id))

    def _rounds_cost(self, method: MethodInfo, mspec: MethodSpec, seed: int, base_id: str | None, chosen: Choices,
                     found: dict[str, Any] | None) -> list[tuple[Recipe, int]]:
        """What an iterative method's rounds train, for fitting them into an SX budget: each
        round's recipe and the MACs of its plan (effective MACs for masks), planned at the round's
        ratio on the base (on the trained base in a live grid; the plans the rounds make later, on
        the weights each round trained, are close but not the same, and the audit counts what was
        trained)."""
        rounds = self.rounds_of(mspec)
        schedule = self.schedule(mspec, rounds, found["knob"] if found else None)
        if rounds is None or len(schedule) == 1 or self.protocol.budget is None:
            return []
        recipe = self.round_recipe(mspec, chosen)
        return [(recipe, self._macs_of(self._plan_on(method, mspec.model_copy(update={"ratio": s, "speedup": None}),
                                                      seed, base_id)[0])) for s in schedule[:-1]]

    def _base_job(self, spec: RunSpec) -> Planned:
        def start(directory: Path) -> Start:
            model = self._fresh(spec.seed).to(self.device, memory_format=self.memory_format)
            return Start(model, spec.phases)

        row = "dense" if spec == self.base_spec(spec.seed) else f"dense ({spec.phases[0][1].epochs} epochs)"
        return Planned(spec, row, None, self.dense_macs, start=start, computation=self.computation(spec).id)

    def _fresh(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return self.build()

    def _source(self, method: MethodInfo, mspec: MethodSpec) -> tuple[MethodSpec, MethodInfo]:
        """The method whose pruned architecture a run trains: itself, or a scratch baseline's source."""
        if not method.from_scratch:
            return mspec, method
        source = self.declared(mspec).source
        if source is None:
            raise UserError(f"method {mspec.name!r} trains from scratch but names no source method.")
        info = self.planner.info(source.name)
        return source.model_copy(update={"ratio": mspec.ratio, "config": mspec.config, "speedup": mspec.speedup,
                                         "code": info.code}), info

    def _inputs(self, seed: int, method: MethodInfo, intent: PruningPlan | None = None) -> PlanInputs:
        """What a plan is computed from: the training split (for a method that needs data; the
        test split is never handed over) and the seed of its batch order."""
        data = self.data()[0] if method.needs_data else None
        return PlanInputs(self.suite.arch, self.dataset.num_classes, self.input_shape, seed,
                          self.protocol.retrain.batch_size, data=data,
                          data_key=self._fingerprint if data is not None else "", intent=intent,
                          protect=self.protocol.protect.model_dump(mode="json"))

    def _plan_on(self, method: MethodInfo, mspec: MethodSpec, seed: int,
                 base_id: str | None) -> tuple[PruningPlan, dict[str, Any] | None]:
        """The method's plan on the trained base `base_id` (None: a fresh model of the seed), with
        the speedup search's record (None for a ratio or config), made once per (method, seed,
        base) however often the grid is walked."""
        key = (canonical(mspec), seed, base_id)
        if key not in self._plans:
            model = self._load_base(base_id) if base_id else self._fresh(seed)
            self._plans[key] = self._targeted(method, mspec, model, seed)
            if base_id is None:  # planned before anything trains: a plan that misses its target stops the grid
                self._check_target(*self._plans[key], method, mspec, model)
            # (on the trained base the run itself checks it, and records a miss as its violation)
        return self._plans[key]

    def _targeted(self, method: MethodInfo, mspec: MethodSpec, model: nn.Module, seed: int,
                  intent: PruningPlan | None = None,
                  before: dict[str, Any] | None = None) -> tuple[PruningPlan, dict | None]:
        """The method's plan for its target on `model`: for a ratio or a config, the one plan it
        returns; for a speedup, the plan of the ratio the search finds (`search`), or of the ratio
        a search `before` a pruning phase found (which the phase trained towards), with the
        search's record."""
        if mspec.speedup is None:
            return self._plan(method, mspec, model, seed, intent), None
        if before is not None:
            plan = self._plan(method, search.at_knob(mspec, before["knob"]), model, seed, intent)
            macs, target = self._macs_of(plan), self.dense_macs / mspec.speedup
            when = before.get("chosen_before", "the pruning phase")  # or the pruning rounds
            if macs == before["macs"]:  # the architecture the search found: its record holds
                return plan, {**before, "chosen_before": when}
            return plan, {**before, "macs": macs, "within": abs(macs - target) <= search.TOLERANCE * target,
                          "closest": None, "chosen_before": when}
        floor = self.protocol.protect
        note = (f"; every prunable layer keeps at least {floor.min_filters} filter(s)"
                + (f" and {floor.min_fraction:g} of its filters" if floor.min_fraction else "")
                + " (the protocol's protect)")
        rule = self.declared(mspec).target_rule

        def plan_at(knob: float) -> PruningPlan:
            # every plan the search counts meets the method's rule at its ratio: the two around the
            # target, which decide which one is kept, as much as the one kept
            at, at_rule = search.rule_at(mspec, rule, knob)
            plan = self._plan(method, at, model, seed, intent)
            targets.check(self.setup, plan, model, self.arch, Target(ratio=at.ratio, protect=self.protocol.protect),
                          at_rule, method.granularity)
            return plan

        per_layer = rule.scope == "layer" and method.granularity == "filter"  # widths are the harness's own
        found = search.search(mspec.speedup, self.dense_macs, plan_at, self._macs_of, f"method {mspec.label!r}",
                              note, nested=None if per_layer else _nested)
        return found.plan, found.record()

    def _rule(self, mspec: MethodSpec) -> targets.TargetRule | None:
        """The method's declared target rule, as a spec records it (None for the default)."""
        rule = self.declared(mspec).target_rule
        return None if rule == targets.TargetRule() else rule

    def _check_target(self, plan: PruningPlan, found: dict[str, Any] | None, method: MethodInfo, mspec: MethodSpec,
                      model: nn.Module) -> dict[str, Any]:
        """The plan against its target, on the unpruned `model` (`targets.check`): what it keeps,
        or a `ProtocolViolation` on the rule "pruning target". A speedup target: the plan meets the
        method's rule at the ratio the search found (`found`, the search's record), and its MACs
        the speedup."""
        rule = self.declared(mspec).target_rule
        at, record = mspec, {}
        if mspec.speedup is not None:
            at, rule = search.met(self.setup, mspec, rule, found, plan, model, self.arch, self.protocol.protect,
                                  self.dense_macs, self._macs_of,
                                  per_layer=rule.scope == "layer" and method.granularity == "filter")
            record = {"search": found, "knob": at.ratio}
        rule.check_visible(self.setup, at.settings)
        kept = targets.check(self.setup, plan, model, self.arch,
                             Target(ratio=at.ratio, config=at.config, protect=self.protocol.protect), rule,
                             method.granularity)
        return {**kept, **record, "rule": rule.model_dump(mode="json"),
                "protect": self.protocol.protect.model_dump(mode="json")}

    def _plan(self, method: MethodInfo, mspec: MethodSpec, model: nn.Module, seed: int,
              intent: PruningPlan | None = None) -> PruningPlan:
        """The method's plan for `model`, computed by the planner on a copy of its weights (the
        model itself stays verified)."""
        return self._watched(model, lambda: self.planner.plan(mspec, model, self._inputs(seed, method, intent)))

    def _watched(self, model: nn.Module, call: Callable[[], Any]) -> Any:
        """A call into method code; in the open division the model is fingerprinted around it and
        any change is recorded (the closed division hands the worker a copy: nothing to watch)."""
        if self.division != "open":
            return call()
        before = fingerprint(model)
        result = call()
        self._open_changes.extend(c for c in changes(before, fingerprint(model)) if c not in self._open_changes)
        return result

    def _macs_of(self, plan: PruningPlan) -> int:
        """MACs of the architecture a plan makes (density-weighted for masks)."""
        return plan_macs(self.build(), plan, self.input_shape)

    # --- execution -----------------------------------------------------------------------

    def data(self) -> tuple[Split, Split]:
        if self._data is None:
            train, test = load_dataset(self.suite.dataset, self.data_root)
            self._fingerprint = train.fingerprint()[:16] + test.fingerprint()[:16]
            self.log(f"{self.suite.dataset} read from {train.source} ({len(train):,} + {len(test):,} test images)")
            if isinstance(train, TensorData) and isinstance(test, TensorData):
                train, test = train.to(self.device), test.to(self.device)
            self._data = (train, test)
        return self._data

    def run(self, methods: list[str], seeds: list[int], ratio: float | None = None,
            config: str | None = None, borrow: Borrowed | None = None,
            speedup: float | None = None) -> list[dict[str, Any]]:
        """Execute the grid (cache hits for completed runs) and return the summary rows."""
        # user mistakes (and targets a method cannot meet) surface before anything trains
        planned = self.plan(methods, seeds, ratio, config, borrow, speedup)
        self._warn_emulated_bf16(planned)
        self.grid_progress = GridProgress(len(planned), self.log)
        self.failures = []
        results = (self.executor or SequentialExecutor()).run(self, methods, seeds, ratio, config, borrow,
                                                              speedup=speedup)
        self.failures = failures(results, self.files.failure)
        return summarise_grid(planned, [(job, metrics) for job, metrics in results if metrics is not None])

    def _warn_emulated_bf16(self, planned: list[Planned]) -> None:
        """Say so before training bf16 on a CPU that emulates it: hours where fp32 takes minutes,
        and nothing in the log for the length of an epoch. (The precision is the suite's: part
        of each run's identity, not a setting to change here.)"""
        if self.device.type != "cpu" or machine.native_bf16():
            return
        waiting = [p for p in planned if any(recipe.precision == "bf16" for _, recipe in p.spec.phases)
                   and self.files.metrics(p.spec.run_id) is None]
        if waiting:
            self.log(f"this CPU ({machine.label(machine.describe(self.device))}) has no bf16 units (AVX512-BF16 or "
                     f"AMX): torch emulates bf16 here, many times slower than fp32 (ResNet-20 on 2 AVX2 cores: 29 "
                     f"against 376 images/s, `benchmarks/pipeline.py --precision fp32 bf16`). {len(waiting)} of the "
                     f"runs to train use the suite's bf16; a CPU with those units, or a GPU, trains them at speed.")

    def label(self, spec: RunSpec) -> str:
        return f"{spec.row} seed {spec.seed}" + (f" at {spec.method.target}" if spec.method else "")

    def execute(self, spec: RunSpec, start: Callable[[Path], Start],
                 budget: float | None = None) -> dict[str, Any] | None:
        """Run `spec` unless the store has it: `start` gives the model, the trace of anything
        already trained for this run (a pruning phase) and the phases left to train. The run
        trains under its lock; a run another process is training is waited for, not repeated.
        Returns its metrics, or None for a run whose training failed (now or before)."""
        signals.check()  # a Ctrl-C something swallowed stops the grid here
        run_id, progress = spec.run_id, self.grid_progress or GridProgress(1, self.log)
        label = self.label(spec)
        if (reason := self.checks.readable(spec, self.files.failure, "failed.json")) is not None:
            self.log(f"{label} (run {run_id[:12]}) failed before: {reason}. Not trained again; delete "
                     f"{self.files.run_dir(run_id) / 'failed.json'} to try again.")
            self._index(spec, "failed", failure=reason)
            progress.finish(run_id)
            return None
        cached = self.stored(spec, repair=False)  # intact and finished: a cache hit, no lock needed
        if cached is None:
            self.data()  # a dataset that cannot be read fails here, before the run's directory exists
            with self.files.claim(
                run_id, waiting=lambda who: self.log(f"{label} (run {run_id[:12]}) is being trained by {who}; waiting"),
                stale=lambda who: self.log(f"{label} (run {run_id[:12]}): the lock of {who} is stale (that process "
                                           "was killed); taking the run over"),
            ):
                cached = self.stored(spec, repair=True)  # trained (or repaired) by another process meanwhile?
                if cached is None:
                    return self._train_run(spec, start, budget, label, progress)
        self._index(spec, "done", cached)
        progress.finish(run_id)
        return cached

    @cached_property
    def checks(self) -> RunChecks:
        """Checks of a run's files: cache hits verified, damage set aside (benchmark/verify.py)."""
        return RunChecks(self.files, self.setup, lambda message: self.log(message), self.label,
                         self._record_violation)

    def stored(self, spec: RunSpec, repair: bool) -> dict[str, Any] | None:
        """The metrics of a finished run whose files are intact, else None (`RunChecks.stored`)."""
        return self.checks.stored(spec, repair)

    def _train_run(self, spec: RunSpec, start: Callable[[Path], Start], budget: float | None, label: str,
                   progress: GridProgress) -> dict[str, Any] | None:
        if (violation := self.checks.readable(spec, self.files.violation, "violation.json")) is not None:  # stopped before
            raise violation
        directory = self.files.prepare(spec)
        write_atomic(directory / "protocol.json", json.dumps(self.audited_against(spec), indent=1))
        self.checks.discard_damaged(spec, directory)
        progress.start(spec.run_id, label, resumed=any(directory.glob("checkpoint*.pt")))
        self._index(spec, "running")
        train, _ = self.data()
        started = time.perf_counter()
        self._open_changes, self._resumed_seconds = [], 0.0
        computation: Computation | None = None
        trained_here = False
        try:
            self._check_division()
            # the start (cheap: a load, a plan, a cut) tells a one-shot pruned run's computation; a
            # pruning phase or rounds are training, so such a run's computation is known from its spec, and
            # only the start's checks run before it may take another run's training (the base rule)
            begin = (start(directory, phase=False) if spec.kind == "pruned" and self._phased(spec)  # type: ignore[call-arg]
                     else start(directory))
            computation = (self.computation(spec, begin.plan_sha256, begin.rewind) if begin is not None
                           else self.computation(spec, rewind=self._rewind(spec)))
            cid = computation.id
            with self.files.claim_computation(cid, waiting=lambda who: self.log(
                    f"{label}: its computation {cid[:12]} is being trained by {who} for another run; waiting")):
                elsewhere = self._trained_elsewhere(spec, computation)
                if elsewhere is not None and elsewhere[0] == "failed":
                    raise TrainingFailed(f"the same computation failed in run {elsewhere[1][:12]}: {elsewhere[2]}")
                if elsewhere is not None and (metrics := self._adopt(
                        spec, directory, computation, elsewhere[1], elsewhere[3], begin, budget, started)) is not None:
                    owner, owner_spec = elsewhere[1], elsewhere[2]
                    where = owner_spec.protocol or "a base model"
                    progress.finish(spec.run_id, f"done {label}: test acc {metrics['test_acc']:.2f}%, not trained "
                                                 f"again: the same computation as run {owner[:12]} "
                                                 f"({self.label(owner_spec)}, {where})")
                    return metrics
                if begin is None:
                    begin = start(directory)
                model = begin.model
                self._training = {"data": self._fingerprint, "base": self._base_weights(spec)}
                if budget is not None:  # of the architecture that exists (planned on the trained base)
                    budget = self.budget(effective_macs(model, self.input_shape))
                trained_here = True
                trace = self._train(model, spec, directory, begin.phases, "checkpoint.pt", prior=begin.prior,
                                    masks=begin.masks)
                rounds = [r for r in begin.prior.rows if r.phase.startswith("round")]  # the run's own training
                if (diverged := Trace(rows=[*rounds, *trace.rows[len(begin.prior.rows):]]).divergence(
                        self.dataset.num_classes)) is not None:
                    raise TrainingFailed(diverged)
                if spec.kind == "pruned":
                    audit.audit_run(self.protocol, trace, len(train))
                if budget is not None:
                    self._audit_budget(spec, trace, budget)
                metrics = self._finish(spec, directory, model, trace, budget, started, begin, computation)
        except ProtocolViolation as v:
            self._record_violation(spec, directory, v)
            progress.finish(spec.run_id, f"{label}: protocol violation ({v.rule})")
            raise
        except TrainingFailed as failed:
            self.files.record_failure(spec.run_id, str(failed))
            if trained_here and computation is not None:  # its other runs take the failure, not a retraining
                self.files.record_trained(computation.id, spec.run_id, "failed", str(failed), **self._training)
            self._index(spec, "failed", failure=str(failed))
            progress.finish(spec.run_id, f"{label} (run {spec.run_id[:12]}) FAILED: {failed}; it enters no table, "
                                         "the grid goes on")
            return None
        progress.finish(spec.run_id, f"done {label}: test acc {metrics['test_acc']:.2f}% after {trace.epochs} "
                                     f"epochs ({metrics['seconds']:.0f} s)")
        return metrics

    def _base_weights(self, spec: RunSpec) -> str | None:
        """sha256 of the base model a pruned run starts from (None for others)."""
        return (self.files.metrics(spec.base) or {}).get("model_sha256") if spec.kind == "pruned" and spec.base else None

    def _rewind(self, spec: RunSpec) -> int | None:
        """The base epoch a pruned run's weights rewind to before its cut (rounds that rewind
        without a declared epoch rewind to init, and so does the last cut)."""
        if spec.kind != "pruned" or spec.method is None:
            return None
        rewind = self.declared(spec.method).rewind
        return 0 if rewind is None and spec.rounds is not None and spec.rounds.between == "rewind" else rewind

    def _trained_elsewhere(self, spec: RunSpec, computation: Computation) -> tuple | None:
        """Another run of the same computation, finished with its files intact ("done", its id,
        spec and metrics) or failed ("failed", its id, why); None: this run trains it. Taken only
        from the same data and, for a pruned run, the same base weights (a base retrained since is
        other weights); a record whose run no longer says so (its files changed, its failure
        deleted for a retry, another computation) is not taken."""
        record = self.files.trained(computation.id)
        if record is None or record["run"] == spec.run_id or not paths.is_run_id(record["run"]):
            return None
        owner = record["run"]
        if record["status"] == "failed":
            if record.get("data") != self._fingerprint or record.get("base") != self._base_weights(spec):
                return None
            try:
                reason = self.files.failure(owner)
            except DamagedFile:
                return None
            return ("failed", owner, reason) if reason is not None else None
        try:
            owner_spec = self.files.spec(owner)
        except (DamagedFile, UserError):
            return None
        if owner_spec.run_id != owner:
            return None
        metrics = self.checks.stored(owner_spec, repair=False)
        recorded = (metrics or {}).get("computation") or {}
        if metrics is None or recorded.get("id") != computation.id or recorded.get("content") != json.loads(
                canonical(computation)):
            return None
        if metrics.get("data_fingerprint") != self._fingerprint:  # other images behind the same dataset name
            return None
        if spec.kind == "pruned":  # the base weights it started from
            try:
                started_from = json.loads((self.files.run_dir(owner) / "base.json").read_text())["model_sha256"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if started_from != self._base_weights(spec):
                return None
        return "done", owner, owner_spec, metrics

    def _adopt(self, spec: RunSpec, directory: Path, computation: Computation, owner: str,
               owner_metrics: dict[str, Any], begin: Start | None, budget: float | None,
               started: float) -> dict[str, Any] | None:
        """Take the training of run `owner`, the same computation, as this run's: its model and
        trace (hard links), audited against this run's own protocol and budget, its target
        checked under this run's method (`begin`: the start this run made itself; None for a
        pruning phase's run, whose plan, intent and target record are the owner's, chosen by the
        same method code on the same weights under the same protocol). None: the owner's files
        changed meanwhile (nothing taken; this run trains)."""
        source = self.files.run_dir(owner)
        names = ["model.pt", "trace.csv", "trace.json"]
        if begin is None:
            names += ["plan.json", "masks.pt", "intent/plan.json", "intent/masks.pt"]
            rounds = sum(1 for phase, _ in spec.phases if phase == "round")  # an iterative run's round plans
            names += [f"rounds/{r}/{name}" for r in range(1, rounds + 1) for name in ("plan.json", "masks.pt")]
        linked = []
        try:
            for name in names:
                if (source / name).is_file():
                    (directory / name).parent.mkdir(parents=True, exist_ok=True)
                    _link(source / name, directory / name)
                    linked.append(directory / name)
            intact = sha256_file(directory / "model.pt") == owner_metrics.get("model_sha256")
        except OSError:
            intact = False
        if not intact:
            for path in linked:
                path.unlink(missing_ok=True)
            return None
        try:
            trace = self.files.trace(spec.run_id)
            assert trace is not None
            if spec.kind == "pruned":
                audit.audit_run(self.protocol, trace, len(self.data()[0]))
            if budget is not None:  # of the architecture taken: this run's own cut, or the owner's plan
                budget = self.budget(effective_macs(begin.model, self.input_shape) if begin is not None
                                     else self._macs_of(PruningPlan.load(directory)))  # type: ignore[arg-type]
                self._audit_budget(spec, trace, budget)
        except BaseException:
            for path in linked:  # a refused run keeps nothing of the owner's (a retry plans on its own)
                path.unlink(missing_ok=True)
            raise
        target = begin.target if begin is not None else owner_metrics.get("target")
        metrics = {**owner_metrics, **self._membership(spec, trace, budget, target),
                   "seconds": round(time.perf_counter() - started, 2),
                   "computation": {**owner_metrics["computation"], "trained_in": owner}}
        if spec.kind != "base":  # how method code ran: here, and where the training taken was planned
            theirs = owner_metrics.get("planning") or {}
            metrics["planning"] = {**metrics["planning"], "sandboxed": bool(
                metrics["planning"]["sandboxed"] and theirs.get("sandboxed")), "trained_in_run_planning": theirs}
            if self.division == "open":
                metrics["open_changes"] = list(dict.fromkeys([*(owner_metrics.get("open_changes") or []),
                                                              *metrics["open_changes"]]))
        write_atomic(directory / "metrics.json", json.dumps(metrics, indent=2))
        for checkpoint in [*directory.glob("checkpoint*.pt"), *directory.glob("checkpoint*.pt.sha256")]:
            checkpoint.unlink(missing_ok=True)  # anything this run began before is not needed
        self._index(spec, "done", metrics)
        return metrics

    def _check_division(self) -> None:
        """Closed division: no plug-in code may be loaded in the process that trains."""
        if self.division != "closed":
            return
        plugins = {p for p in self.plugins if not p.endswith(".py")}
        loaded = [m for m in method_modules() if m.startswith("prunebench_plugin_") or m.split(".")[0] in plugins]
        if loaded:
            raise UserError(f"closed division: plug-in code ({', '.join(loaded[:3])}) is loaded in the training "
                            "process, where only the harness may run. Run plug-ins through the planning worker "
                            "(--plugins), or use --division open.")

    def planning_record(self, spec: RunSpec) -> dict[str, Any]:
        """How the run's method code ran, for its record (metrics.json and the index): where, and
        the CPU seconds its method's code spent since that method's last recorded run (planning,
        target search, intents, rounds, the grid's planning on untrained weights; measured by the
        harness from outside the worker; None where the OS does not say)."""
        name = spec.method.name if spec.method else ""
        now = self.planner.cpu_seconds(name)
        spent = None if now is None else round(now - self._cpu_recorded.get(name, 0.0), 2)
        if now is not None:
            self._cpu_recorded[name] = now
        return {
            "division": self.division,
            "process": "planning worker" if self.division == "closed" else "training process",
            "sandboxed": bool(self.planner.sandboxed),
            "method_modules_in_training_process": method_modules(),
            "method_cpu_seconds": spent,
        }

    def audited_against(self, spec: RunSpec) -> dict[str, Any]:
        """The suite and protocol content a run is audited against (a base run: the suite only),
        with their sha256: `protocol.json` in its directory, what `bench verify` re-audits with."""
        return {"suite": json.loads(self.suite.model_dump_json()), "suite_sha256": self.suite_sha256,
                **({"protocol": json.loads(self.protocol.model_dump_json()), "protocol_sha256": self.protocol_sha256}
                   if spec.kind != "base" else {})}

    def _record_violation(self, spec: RunSpec, directory: Path, v: ProtocolViolation) -> None:
        """What makes "marked violated" true: `violation.json` and the index say so."""
        write_atomic(directory / "violation.json", json.dumps(
            {"setup": v.setup, "rule": v.rule, "expected": str(v.expected), "actual": str(v.actual)}))
        self._index(spec, "violated", violation=str(v))
        v.recorded_as(spec.run_id)

    def _audit_budget(self, spec: RunSpec, trace: Trace, budget: float) -> None:
        """SX budgets cover the whole pipeline: a pruned run's base counts towards it."""
        assert self.protocol.budget is not None
        kind = self.protocol.budget.kind
        used = float(trace.epochs if kind == "epochs" else trace.train_flops)
        if spec.kind == "pruned" and spec.base is not None:
            base = self.files.metrics(spec.base) or {}
            used += base.get("epochs" if kind == "epochs" else "train_flops", 0)
        audit.audit_budget(self.setup, kind, budget, used, self.protocol.budget.tolerance)

    def _finish(self, spec: RunSpec, directory: Path, model: nn.Module, trace: Trace, budget: float | None,
                started: float, begin: Start, computation: Computation) -> dict[str, Any]:
        """Write a trained run's files and metrics, and record it as its computation's training."""
        save_atomic(model.state_dict(), directory / "model.pt")
        write_atomic(directory / "protocol.json", json.dumps(self.audited_against(spec), indent=1))
        write_atomic(directory / "trace.csv", trace.to_csv())
        write_atomic(directory / "trace.json", trace.model_dump_json(indent=1))
        last = trace.rows[-1] if trace.rows else None
        metrics = {
            # what the computation gave, the same for every run of it
            "seed": spec.seed,
            "test_acc": last.test_acc if last else None,
            "train_acc": last.train_acc if last else None,
            "macs": forward_macs(model, self.input_shape),
            # density-weighted: below `macs` only for masked (unstructured) models
            "effective_macs": effective_macs(model, self.input_shape),
            "params": param_count(model),
            # over every conv and linear weight of the model, not only the masked ones
            "density": targets.density(model, begin.masks or {}),
            "epochs": trace.epochs,
            # epochs per phase, in training order (e.g. prune then retrain)
            "phase_epochs": {phase: sum(1 for r in trace.rows if r.phase == phase)
                             for phase in dict.fromkeys(r.phase for r in trace.rows)},
            "train_flops": trace.train_flops,
            # wall time, over every process that trained it (a resumed run's earlier epochs included)
            "seconds": round(time.perf_counter() - started + self._resumed_seconds, 2),
            "model_sha256": sha256_file(directory / "model.pt"),
            "data_fingerprint": self._fingerprint,
            "data_source": self.data()[0].source,
            "machine": machine.describe(self.device),
            "compiled": self.compiled,  # torch.compile: the same run, possibly other last digits
            "code": _code_version(),
            # what this run is in its protocol's tables
            **self._membership(spec, trace, budget, begin.target),
            "computation": {"id": computation.id, "trained_in": spec.run_id,
                            "content": json.loads(canonical(computation))},
        }
        write_atomic(directory / "metrics.json", json.dumps(metrics, indent=2))
        if spec.kind == "base":
            self._base_sha[spec.run_id] = metrics["model_sha256"]
        for checkpoint in [*directory.glob("checkpoint*.pt"), *directory.glob("checkpoint*.pt.sha256")]:
            checkpoint.unlink(missing_ok=True)
        self.files.record_trained(computation.id, spec.run_id, "done", **self._training)
        self._index(spec, "done", metrics)
        return metrics

    def _membership(self, spec: RunSpec, trace: Trace, budget: float | None,
                    target: dict[str, Any] | None) -> dict[str, Any]:
        """A run's metrics as a member of its protocol's tables: its id, how its plan met its
        target, its pipeline's totals over its base, the content it was audited against, how its
        method code ran, its SX budget."""
        base = self.files.metrics(spec.base) if spec.base else None
        return {
            "run_id": spec.run_id,
            **trainability(spec, trace),
            "target": target,  # what the plan keeps against its target (pruned runs)
            "total_epochs": (base["epochs"] if base else 0) + trace.epochs,
            "base_test_acc": base["test_acc"] if base else None,
            # the whole pipeline's, the shared base's training included (what an SX-B budget counts)
            "total_train_flops": (base["train_flops"] if base else 0) + trace.train_flops,
            # the suite and protocol content the run was audited against (protocol.json holds them)
            "suite_sha256": self.suite_sha256,
            "protocol_sha256": self.protocol_sha256 if spec.kind != "base" else None,
            "protocol_file_sha256": self.protocol_file_sha256 if spec.kind != "base" else None,
            "division": self.division,
            # base runs plan nothing: no method code ran for them
            "planning": self.planning_record(spec) if spec.kind != "base" else None,
            "open_changes": list(self._open_changes) if self.division == "open" else None,
            "budget": {"kind": self.protocol.budget.kind, "amount": budget,
                       "convention": self.protocol.budget.convention}
            if budget is not None and self.protocol.budget else None,
        }

    def _train(self, model: nn.Module, spec: RunSpec, directory: Path, phases: list[tuple[str, Recipe]],
               checkpoint: str, prior: Trace | None = None, regularizer=None, masks: Masks | None = None) -> Trace:
        train, test = self.data()

        def check(phase: str, recipe: Recipe, rows: list) -> None:
            if spec.kind == "pruned" and phase in ("prune", "retrain"):
                audit.audit_phase(self.setup, phase, audit.expected_recipe(self.protocol, phase), rows, len(train))
            elif spec.kind == "pruned" and phase.startswith("round"):  # round1, round2, ...: each round's training
                audit.audit_phase(self.setup, "round", audit.expected_recipe(self.protocol, "round"), rows, len(train))

        label, progress, fresh = self.label(spec), self.grid_progress, []

        def heard(row: TraceRow, epochs: int) -> None:
            fresh.append(row.seconds)
            if progress and self.progress:
                progress.epoch(label, row, epochs)

        trace = train_phases(
            model, list(phases), train, test, seed=spec.seed, input_shape=self.input_shape,
            checkpoint=directory / checkpoint, regularizer=regularizer, on_phase_end=check,
            label=f"seed {spec.seed}", progress=self.progress, masks=masks, compiled=self.compiled,
            on_epoch=heard, log=self.log,
        )
        # a resumed run's wall time counts its epochs trained before the restart (`seconds`)
        self._resumed_seconds += sum(r.seconds for r in trace.rows) - sum(fresh)
        return Trace(rows=(prior.rows if prior else ()) + trace.rows)

    def _load_base(self, run_id: str, pinned: str | None = None) -> nn.Module:
        """A trained base model, its file checked against the sha256 the loop recorded when it
        trained it (kept by this harness from then on; `pinned`: the one a pruned run recorded)."""
        metrics = self.files.metrics(run_id)
        if metrics is None:
            raise UserError(f"base model run {run_id[:12]} is not trained yet.")
        if pinned is None and run_id not in self._base_sha:
            self._check_pins(run_id, metrics["model_sha256"])
        expected = pinned or self._base_sha.setdefault(run_id, metrics["model_sha256"])
        path = self.files.run_dir(run_id) / "model.pt"
        actual = sha256_file(path)
        if actual != expected or metrics["model_sha256"] != expected:
            raise ProtocolViolation(self.setup, "base checkpoint sha256", expected, actual)
        model = self.build()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.to(self.device)

    def _start_pruned(self, spec: RunSpec, method: MethodInfo, shared: str, directory: Path,
                      phase: bool = True) -> Start | None:
        """Base weights -> pruning phase (if any) -> the plan -> rewind (if the method has one) ->
        cut or mask: the model retraining starts from. `shared` is the base run every method of
        this seed and target must start from (S2 on). Without `phase`, only the checks before a
        pruning phase (the base rule, the base's sha256, pinned): what a run that may take
        another run's training of its pruning phase must pass first (returns None)."""
        assert spec.method is not None and spec.base is not None
        if fixes(self.setup, "base") and spec.base != shared:
            want = (self.files.metrics(shared) or {}).get("model_sha256", f"run {shared[:12]}")
            got = (self.files.metrics(spec.base) or {}).get("model_sha256", f"run {spec.base[:12]}")
            raise ProtocolViolation(self.setup, "same base checkpoint (sha256)", want, got)
        mspec = spec.method
        model = self._load_base(spec.base, self._pin_base(spec, directory))
        if not phase:
            return None
        prior = Trace()
        prune_phases = [p for p in spec.phases if p[0] == "prune"]
        before = None  # a speedup target: the search before a pruning phase that trains towards its ratio
        if prune_phases:
            intent_dir = directory / "intent"
            asked = mspec
            searched = None
            if mspec.speedup is not None:  # the ratio the search finds on the base, before the phase
                _, searched = self._targeted(method, mspec, model, spec.seed)
                asked = search.at_knob(mspec, searched["knob"])  # type: ignore[index]
            intent = PruningPlan.load(intent_dir)
            if intent is None:  # chosen on the base, before the phase changes the weights
                intent = self._watched(model, lambda: self.planner.intent(asked, model, self._inputs(spec.seed,
                                                                                                     method)))
                if intent is not None:
                    intent_dir.mkdir(exist_ok=True)
                    intent.save(intent_dir)
            if intent is not None:
                before = searched  # the phase trained towards this ratio's plan: the cut keeps the ratio
            prior = self._train(model, spec, directory, prune_phases, "checkpoint-prune.pt",
                                regularizer=self._regularizer(spec, method, intent))
        rounds = [p for p in spec.phases if p[0] == "round"]
        if fixes(self.setup, "round.count") and len(rounds) + 1 != (self.protocol.rounds or 1):  # before training
            raise ProtocolViolation(self.setup, "pruning rounds", self.protocol.rounds or 1, len(rounds) + 1)
        last: PruningPlan | None = None  # what the last round kept: the final plan keeps no more
        if rounds:  # iterative pruning: every round but the last, each trained as a phase of the run
            assert spec.rounds is not None
            if mspec.speedup is not None and before is None:  # the final ratio: searched on the base
                _, before = self._targeted(method, mspec, model, spec.seed)
                before = {**before, "chosen_before": "the pruning rounds"}  # type: ignore[dict-item]
            schedule = self.schedule(mspec, spec.rounds, before["knob"] if before else None)
            model, prior, last = self._prune_in_rounds(spec, method, mspec, model, prior, directory, schedule[:-1],
                                                       [recipe for _, recipe in rounds])
        plan = PruningPlan.load(directory)
        found = None
        if plan is None or mspec.speedup is not None:
            # the method scores a copy: the model the harness cuts is the verified one; a speedup's
            # search is repeated on a resumed start (the same plans), since its record is checked
            fresh, found = self._targeted(method, mspec, model, spec.seed, PruningPlan.load(directory / "intent"),
                                          before)
            if plan is None:
                plan = fresh
                plan.save(directory)
            elif plan != fresh:
                raise ProtocolViolation(self.setup, targets.RULE, "the plan its speedup search finds (the stored "
                                        "plan.json)", "another plan: the method's plans or the stored file changed")
        met = self._check_target(plan, found, method, mspec, model)  # every start, a resumed one too
        if last is not None:
            self._tightens(plan, last, len(rounds) + 1)
        rewind = self._rewind(spec)
        if rewind is not None:
            model.load_state_dict(self.rewound(spec.base, rewind, directory).state_dict())
        apply_plan(model, plan, self.input_shape)
        model = model.to(self.device, memory_format=self.memory_format)
        return Start(model, [p for p in spec.phases if p[0] not in ("prune", "round")], prior, plan.masks or None, met,
                     plan_sha256=plan.sha256(), rewind=rewind)

    def _prune_in_rounds(self, spec: RunSpec, method: MethodInfo, mspec: MethodSpec, model: nn.Module, prior: Trace,
                         directory: Path, ratios: list[float],
                         recipes: list[Recipe]) -> tuple[nn.Module, Trace, PruningPlan | None]:
        """Every pruning round but the last: at the round's cumulative ratio the method plans on
        the weights so far (a copy, in the planning worker), the plan meets the method's rule at
        that ratio and keeps nothing an earlier round removed (masks tighten), the round's masks
        apply (weight masks; for filters, masks that silence the dropped filters, the model
        keeping its shapes until the last round cuts them), to the base's weights at the method's
        rewind epoch first for a lottery ticket, and the round trains as a phase of the run
        (`round1`, `round2`, ... in the trace). Each round's plan is stored (`rounds/<r>/`) and its
        training checkpointed: a killed run resumes there. Returns the last round's plan."""
        assert spec.rounds is not None and spec.base is not None
        last: PruningPlan | None = None
        rule = self.declared(mspec).target_rule
        if len(ratios) != len(recipes):  # the rounds the spec trains are the rounds its schedule has
            raise ProtocolViolation(self.setup, "pruning rounds", len(recipes), len(ratios))
        for r, (ratio, recipe) in enumerate(zip(ratios, recipes), start=1):
            folder = directory / "rounds" / str(r)
            plan = PruningPlan.load(folder)
            if plan is None:
                plan = self._plan(method, mspec.model_copy(update={"ratio": ratio, "speedup": None}), model, spec.seed)
                folder.mkdir(parents=True, exist_ok=True)
                plan.save(folder)
            targets.check(self.setup, plan, model, self.arch, Target(ratio=ratio, protect=self.protocol.protect), rule,
                          method.granularity)
            if last is not None:
                self._tightens(plan, last, r)
            last = plan
            if spec.rounds.between == "rewind":  # the ticket: the base's early weights under the round's mask
                rewound = self.rewound(spec.base, self._rewind(spec) or 0, directory)
                model.load_state_dict(rewound.state_dict())
            masks = plan.masks or filter_masks(model, plan, self.input_shape)
            apply_masks(model, masks)
            model = model.to(self.device, memory_format=self.memory_format)
            prior = self._train(model, spec, directory, [(f"round{r}", recipe)], f"checkpoint-round{r}.pt",
                                prior=prior, masks=masks)
        return model, prior, last

    def _tightens(self, plan: PruningPlan, before: PruningPlan, r: int) -> None:
        """Round `r`'s plan keeps nothing an earlier round removed (a `ProtocolViolation` if it does)."""
        widths = {n: m.out_channels for n, m in self.build().named_modules() if hasattr(m, "out_channels")}
        if (found := revived(plan, before, widths)) is not None:
            raise ProtocolViolation(self.setup, f"masks tighten monotonically (round {r})",
                                    "nothing an earlier round removed", f"{found[1]} {found[0]} kept again")

    def _check_pins(self, base_id: str, recorded: str) -> None:
        """A base first loaded by this harness: every run that started from it pinned its sha256
        (`base.json`); a base whose record now says otherwise was retrained or swapped, with its
        `metrics.json` rewritten to match. A base the harness itself set aside as damaged and
        trained again (`damaged-*/` in its directory) may differ from older pins on a
        non-deterministic device: those pins are not evidence."""
        earlier = set()
        for old in self.files.run_dir(base_id).glob("damaged-*/metrics.json"):
            try:
                earlier.add(json.loads(old.read_text())["model_sha256"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        for pin in paths.runs_dir(self.store_root).glob("*/base.json"):
            try:
                found = json.loads(pin.read_text())
                base, sha = found["base"], found["model_sha256"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged pin is its own run's problem
            if base == base_id and sha and sha != recorded and sha not in earlier:
                raise ProtocolViolation(self.setup, f"base checkpoint sha256 (pinned by run {pin.parent.name[:12]} "
                                        "when it started from it)", sha, recorded)

    def _pin_base(self, spec: RunSpec, directory: Path) -> str:
        """The sha256 of the base a pruned run starts from, pinned in its directory (`base.json`)
        when it first starts, so a resumed run checks the same base."""
        assert spec.base is not None
        path = directory / "base.json"
        try:
            pinned = json.loads(path.read_text())["model_sha256"]
            assert isinstance(pinned, str)
            return pinned
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            pass
        metrics = self.files.metrics(spec.base) or {}
        if spec.base not in self._base_sha:
            self._check_pins(spec.base, metrics.get("model_sha256", ""))
        sha = self._base_sha.setdefault(spec.base, metrics.get("model_sha256", ""))
        write_atomic(path, json.dumps({"base": spec.base, "model_sha256": sha}))
        return sha

    def _regularizer(self, spec: RunSpec, method: MethodInfo,
                     intent: PruningPlan | None) -> penalties.Regularizer | None:
        """The pruning phase's loss term: the harness's penalty the spec names (closed division),
        or in the open division the method's own code, fingerprinted around every call."""
        assert spec.method is not None
        if method.own_code_in_loop:
            assert isinstance(self.planner, OpenPlanner), "the closed division refuses such methods up front"
            own, name = self.planner.regularizer(spec.method, intent), spec.method.name

            def watched(model: nn.Module, step: int) -> Any:
                try:
                    return self._watched(model, lambda: own(model, step))
                except (UserError, ProtocolViolation, TrainingFailed, KeyboardInterrupt):
                    raise
                except Exception as e:  # the method's own code failed inside the loop: one line
                    raise UserError(f"method {name!r}: its regularizer failed at step {step}: "
                                    f"{type(e).__name__}: {e}") from None
            return watched
        if spec.penalty is None:
            return None
        try:
            return penalties.regularizer(spec.penalty, intent, self.arch.prunable(self.build()))
        except ValueError as e:
            raise UserError(f"method {spec.method.name!r}: {e}.") from None

    def rewound(self, base_id: str, epoch: int, directory: Path) -> nn.Module:
        """The weights base run `base_id` had after `epoch` epochs: its init for 0, else its first
        `epoch` epochs replayed from that init with the same seeded data order (bit-identical on
        CPU; a checkpoint in `directory` makes the replay resumable). Not part of the run's trace:
        it reconstructs the base's own training rather than adding to it."""
        base = self.files.spec(base_id)
        recipe = base.phases[0][1]
        if not 0 <= epoch <= recipe.epochs:  # the grid refuses this up front; a run reached otherwise stops here
            raise ProtocolViolation(self.setup, "rewind epoch within the base's training", f"0 to {recipe.epochs}",
                                    epoch)
        model = self._fresh(base.seed).to(self.device, memory_format=self.memory_format)
        if epoch:
            train, test = self.data()
            train_phases(model, [(base.phases[0][0], recipe)], train, test, seed=base.seed,
                         input_shape=self.input_shape, checkpoint=directory / "checkpoint-rewind.pt",
                         label=f"seed {base.seed} rewind", progress=self.progress, stop_after=epoch,
                         compiled=self.compiled, log=self.log)
        return model

    def _start_scratch(self, spec: RunSpec, plan: PruningPlan, source: MethodInfo, source_spec: MethodSpec,
                       found: dict[str, Any] | None, directory: Path) -> Start:
        if plan.masks_sha256() != spec.masks_sha256 or (not plan.masks and plan.widths() != spec.widths):
            raise ProtocolViolation(self.setup, "scratch architecture equals the source's", spec.widths or
                                    spec.masks_sha256, plan.widths() or plan.masks_sha256())
        met = self._check_target(plan, found, source, source_spec, self.build())  # the architecture meets the target
        model = self.build()
        if not plan.masks:
            apply_plan(model, PruningPlan.first_k(plan.widths()), self.input_shape)
        torch.manual_seed(spec.seed)
        model = reinitialise(model)
        if plan.masks:  # a fresh init under the same masks
            plan.save(directory)
            apply_plan(model, plan, self.input_shape)
        return Start(model.to(self.device, memory_format=self.memory_format), spec.phases, masks=plan.masks or None,
                     target=met)
