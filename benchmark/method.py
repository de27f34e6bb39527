"""The narrow interface a pruning method plugs in through, and the method registry.

A method scores and plans (which filters each layer keeps, or which weights a mask keeps); the
harness owns the training loop, the cutting and the audit. Everything a method returns is data:
its plan, its intent, its declared choices, a penalty of the harness's (`prunebench.penalties`:
network slimming's L1 on BN scales, GReg's growing L2, group lasso) the pruning phase trains
under, and a rewind point the pruned model restarts from (lottery tickets). Method code runs in
the planning worker (`prunebench.planning`), never in the training process; a method that needs
its own code inside the loop (`regularizer`) runs only in the open division. Plug-ins register
more methods (`load_plugin`, the `prunebench.methods` entry points).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import itertools
import math
import pkgutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from prunebench._registry import Registry, did_you_mean
from prunebench.config import MAX_EPOCHS, MethodSpec, Protect, Protocol, Recipe, Rounds, target_label
from prunebench.data import Split
from prunebench.errors import UserError
from prunebench.models import Arch
from prunebench.penalties import Penalty
from prunebench.pruning import PruningPlan
from prunebench.schedule import LRSchedule
from prunebench.setups import fixes
from prunebench.targets import TargetRule


class MethodSettings(BaseModel):
    """Settings every built-in method takes: its choice of retraining LR schedule, where the
    setup leaves it free (S1, S2, S3.1, SX-A, SX-B). Wang et al. (Sec. 5) show the finetuning LR
    decides many published rankings; `bench crossval` swaps these recipes between methods."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retrain_lr: LRSchedule | None = Field(
        None, description="own retraining LR schedule, e.g. 0.01 or '0:0.01,2:0.001' (default: the "
        "protocol's); refused up front where the setup fixes the retraining LR (S3.2, S4.x)")
    rounds: int | None = Field(
        None, ge=1, le=100, description="prune iteratively in this many rounds, each removing the same fraction of "
        "what remains and training after it (the protocol's `round` recipe, else the retraining's), the last "
        "reaching the target (default: one shot)")
    round_epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="epochs trained after each round but the last "
                                     "(default: the protocol's `round` recipe's, else the retraining's)")


NoSettings = MethodSettings


class Choices(BaseModel):
    """A method's own choices for what its protocol's setup leaves free (None: the protocol's).

    Declaring a choice for something the setup fixes is not refused up front: the run trains as
    declared and the audit stops it with the rule it broke, so an unfair claim cannot pass.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: Recipe | None = Field(None, description="own base recipe (free under S1 only)")
    prune: Recipe | None = Field(None, description="own pruning-phase recipe")
    retrain: Recipe | None = Field(None, description="own retraining recipe (e.g. its LR schedule under S3.1)")


def kept(channels: int, ratio: float, rounding: str = "li") -> int:
    """Filters a layer of `channels` keeps at pruning ratio `ratio`, computed as each paper's
    code computes it, in floating point.

    "li" (Li et al. 2017): keep int(C(1-p)), at least one. "wang" (Wang et al.): prune
    min(ceil(pC), C-1) filters. In exact arithmetic the two agree; in floats C(1-p) can land just
    below an integer, so they differ: C=10, p=0.8 keeps 1 ("li", 10 x 0.19999... = 1.99999...)
    or 2 ("wang"); C=100, p=0.9 keeps 9 or 10.
    """
    if rounding == "li":
        return max(1, int(channels * (1 - ratio)))
    if rounding == "wang":
        return channels - min(math.ceil(ratio * channels), channels - 1)
    raise ValueError(f"unknown rounding {rounding!r}: use 'li' or 'wang'")


@dataclass(frozen=True)
class Target:
    """What to prune to: a uniform ratio over the prunable layers, a named layer-wise config, or a
    speedup (dense MACs / pruned MACs, which the harness turns into a ratio by search: a method
    is only ever asked for a ratio or a config). `protect`: what every prunable layer keeps at
    least (the protocol's protected layers), which `keep_counts` and `floor` apply."""

    ratio: float | None = None
    config: str | None = None
    speedup: float | None = None
    protect: Protect = field(default_factory=Protect)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.ratio, self.config, self.speedup)) != 1:
            raise UserError("give one pruning target: a ratio (--ratio), a speedup (--speedup) or a named config "
                            "(--config)")
        if self.ratio is not None and not 0 <= self.ratio < 1:
            raise UserError(f"pruning ratio {self.ratio} is outside [0, 1): pass e.g. --ratio 0.5")
        if self.speedup is not None and not 1 < self.speedup <= 10_000:
            raise UserError(f"speedup {self.speedup:g} is not above 1: pass e.g. --speedup 2 (dense MACs / pruned "
                            "MACs)")

    def floor(self, channels: int) -> int:
        """Filters a layer of `channels` keeps at least (the protocol's protected layers)."""
        return self.protect.floor(channels)

    def keep_counts(self, arch: Arch, model: nn.Module, rounding: str = "li",
                    ratios: dict[str, float] | None = None) -> dict[str, int]:
        """Filters each prunable conv keeps: the named config's, or `kept(C, p)` per layer with
        p the uniform ratio (or `ratios[layer]` where a method gives layer-wise ratios), never
        fewer than the protected floor."""
        if self.config is not None:
            if self.config not in arch.configs:
                raise UserError(
                    f"architecture {arch.name!r} has no named config {self.config!r}. "
                    f"Valid configs: {', '.join(sorted(arch.configs)) or '(none)'}."
                )
            return arch.configs[self.config](model)
        if self.ratio is None:
            raise UserError("a speedup target has no filter counts of its own: the harness searches the ratio "
                            "that meets it and asks for that ratio")
        modules = dict(model.named_modules())
        return {
            name: max(self.floor(modules[name].out_channels),
                      kept(modules[name].out_channels, (ratios or {}).get(name, self.ratio), rounding))
            for name in arch.prunable(model)
        }

    def label(self) -> str:
        return target_label(self.ratio, self.config, self.speedup)


@dataclass
class PruneContext:
    """What a method may read when it plans: never the protocol's mutable state.

    `data` is the training split (on the training device) for methods that need data, with the
    batch size of the protocol's retraining recipe; `batches(n)` draws n mini-batches from it in
    an order fixed by the run's seed. `intent` is the method's own `intent` from before its
    pruning phase, when it had one.
    """

    arch: Arch
    input_shape: tuple[int, int, int]
    generator: torch.Generator
    data: Split | None = None
    batch_size: int = 128
    intent: PruningPlan | None = None  # what the method chose before its pruning phase

    def batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.data is None:
            raise UserError("this method needs training data to plan, but none was given (needs_data=True)")
        return itertools.islice(self.data.batches(self.batch_size, generator=self.generator, augment="none"), n)


class PhaseSettings(MethodSettings):
    """Settings of a method that trains its own pruning phase where the protocol has none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prune_epochs: int | None = Field(
        None, ge=1, description="epochs of the method's pruning phase when the protocol has none "
        "(default: as many as the protocol's retraining; half of it under SX, where the phase comes out "
        "of the retraining budget); where the protocol has a pruning phase (S4.x), that one is used")
    prune_lr: float | None = Field(
        None, gt=0, description="constant LR of that phase (default: the retraining recipe's first LR)")


class Method:
    """Base class of a registered pruning method.

    A method declares what it is (`granularity`: 'filter' or 'weight'; `needs_data`;
    `prune_phase`: it trains a pruning phase, e.g. under a penalty; `hooks`: which of the
    loop's hooks it uses, 'rewind', or 'regularizer' for code of its own inside the loop, which
    only the open division runs) and its `Settings` (a pydantic model whose defaults are its
    paper's). It scores and plans; it never trains.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Settings: ClassVar[type[BaseModel]] = NoSettings
    granularity: ClassVar[str] = "filter"
    needs_data: ClassVar[bool] = False
    prune_phase: ClassVar[bool] = False
    hooks: ClassVar[tuple[str, ...]] = ()
    # True for baselines that train the pruned architecture from a fresh init (Scratch-E/B).
    from_scratch: ClassVar[bool] = False

    def settings(self, raw: dict) -> BaseModel:
        """The validated settings. Unknown keys and non-finite numbers are refused whatever the
        Settings model itself allows (a plug-in's plain `BaseModel` ignores unknown keys)."""
        fields = ", ".join(self.Settings.model_fields) or "(none)"
        unknown = [k for k in raw if k not in self.Settings.model_fields]
        if unknown:
            close = "".join(did_you_mean(k, list(self.Settings.model_fields)) for k in unknown[:1])
            raise UserError(f"method {self.name!r} has no setting {', '.join(map(repr, unknown))}.{close} "
                            f"Its settings: {fields}.")
        try:
            settings = self.Settings(**raw)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}"
                                 for err in e.errors())
            raise UserError(f"method {self.name!r}: bad settings ({problems}). Its settings: {fields}.") from None
        if (bad := _non_finite(settings.model_dump())) is not None:
            raise UserError(f"method {self.name!r}: setting {bad[0]!r} is {bad[1]}; give a finite number.")
        return settings

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        raise NotImplementedError

    def intent(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan | None:
        """What the method means to prune, chosen before its pruning phase (e.g. the filters
        GReg regularises); stored with the run and passed to `regularizer`. None: no intent."""
        return None

    def prune_epochs(self, protocol: Protocol, settings: BaseModel) -> int:
        """Epochs of the method's own pruning phase where the protocol has none (0: one-shot)."""
        if not self.prune_phase:
            return 0
        own = getattr(settings, "prune_epochs", None)
        if own:
            return own
        # under a total budget (SX) the phase comes out of the retraining: half of it by default
        return max(1, protocol.retrain.epochs // 2) if protocol.budget else protocol.retrain.epochs

    def choices(self, protocol: Protocol, settings: BaseModel) -> Choices:
        """What the method chooses where the setup leaves it free. `protocol` is read-only: the
        harness checks it is unchanged afterwards. By default: its own pruning phase (the
        retraining recipe's hyper-parameters at a constant LR) when it has one and the protocol
        does not. A `retrain_lr` setting (`MethodSettings`) is applied by the harness on top."""
        epochs = self.prune_epochs(protocol, settings)
        if not epochs or protocol.prune is not None or fixes(protocol.setup, "prune.epochs"):
            return Choices()  # the protocol's phase, or none where the setup fixes it at none
        retrain = protocol.retrain
        lr = getattr(settings, "prune_lr", None) or retrain.lr.lr_at(0, retrain.epochs)
        return Choices(prune=retrain.model_copy(update={"epochs": epochs, "lr": LRSchedule(stages=[(0, lr)])}))

    def penalty(self, settings: BaseModel) -> Penalty | None:
        """The harness's regulariser the pruning phase trains under (`bn_l1`, `growing_l2` on
        the filters the intent drops, `group_lasso`), as data; None: none."""
        return None

    def regularizer(self, model: nn.Module, settings: BaseModel, step: int,
                    intent: PruningPlan | None) -> torch.Tensor | None:
        """Open division only: the method's own code, called inside the training loop with the
        live model at `step` of the pruning phase, returning a term added to the loss. A method
        that defines it cannot run in the closed division; declare a `penalty` instead."""
        return None

    @classmethod
    def runs_own_code_in_loop(cls) -> bool:
        """Whether the method needs its own code inside the training loop (the open division)."""
        return cls.regularizer is not Method.regularizer

    def target_rule(self, settings: BaseModel) -> TargetRule:
        """How the method reaches a target, which the harness checks every plan against
        (`prunebench.targets`): per layer by Li et al.'s rounding unless it says otherwise."""
        return TargetRule()

    def rewind_epoch(self, settings: BaseModel) -> int | None:
        """Epoch of the base training whose weights the pruned model restarts from (the lottery
        ticket's rewinding); None keeps the trained weights."""
        return None

    def rounds(self, settings: BaseModel) -> Rounds | None:
        """Iterative pruning: the rounds the harness runs (None: one shot). By default from the
        `rounds` and `round_epochs` settings (`MethodSettings`), continuing from the trained
        weights after each round."""
        n = getattr(settings, "rounds", None)
        if not n or n == 1:
            return None
        return Rounds(rounds=n, epochs=getattr(settings, "round_epochs", None))


METHODS: Registry[Method] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Register a method class (a decorator). A method must at least plan."""
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise UserError(f"method class {cls.__qualname__} has no `name`: give it e.g. name = 'mymethod'.")
    if cls.plan is Method.plan:
        raise UserError(f"method {cls.name!r} ({cls.__qualname__}) does not define plan(model, target, settings, "
                        "ctx): every method returns a PruningPlan from it.")
    METHODS.register(cls.name, cls())
    return cls


def _non_finite(value: object, where: str = "") -> tuple[str, float] | None:
    """The first NaN or infinite number in a settings dump, as (path, value), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value", value
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if (found := _non_finite(item, f"{where}.{key}" if where else str(key))) is not None:
            return found
    return None


ENTRY_POINTS = "prunebench.methods"


def load_builtin_methods(entry_points: bool = True) -> Registry[Method]:
    """Import every module of the `methods` package and, with `entry_points`, every installed
    plug-in of the `prunebench.methods` entry-point group (registration happens on import)."""
    from prunebench import methods

    for info in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"prunebench.methods.{info.name}")
    for entry in installed_plugins() if entry_points else ():
        if entry.value not in _loaded_plugins:
            _loaded_plugins.add(entry.value)
            _import_plugin(entry.value, lambda value=entry.value: importlib.import_module(value.split(":")[0]))
    return METHODS


_loaded_plugins: set[str] = set()


def installed_plugins() -> list:
    """The entry points of installed plug-ins (read from package metadata: nothing is imported)."""
    return list(entry_points(group=ENTRY_POINTS))


def load_plugin(where: str) -> None:
    """Register the methods of a user's plug-in: a Python file (`my_methods.py`) or a module name."""
    load_builtin_methods(entry_points=False)
    path = Path(where)
    if where.endswith(".py") or path.exists():
        if not path.is_file():
            raise UserError(f"plug-in file {where!r} does not exist: pass a .py file or an importable module name")
        key = str(path.resolve())
        if key in _loaded_plugins:
            return
        _loaded_plugins.add(key)
        module_name = "prunebench_plugin_" + hashlib.sha256(key.encode()).hexdigest()[:12]

        def load() -> None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)

        _import_plugin(where, load)
    else:
        if where in _loaded_plugins:
            return
        _loaded_plugins.add(where)

        def load_module() -> None:  # from the current folder too, as `python -m` would find it
            sys.path.insert(0, str(Path.cwd()))
            try:
                importlib.import_module(where)
            finally:
                sys.path.remove(str(Path.cwd()))

        _import_plugin(where, load_module)


def _import_plugin(where: str, load: Callable[[], object]) -> None:
    try:
        load()
    except ModuleNotFoundError as e:
        raise UserError(f"cannot import plug-in {where!r}: {e}. Pass a .py file path or an installed module.") from None
    except UserError:
        raise
    except Exception as e:  # a plug-in's own bug: say where, keep it to one line
        raise UserError(f"plug-in {where!r} failed while importing: {type(e).__name__}: {e}") from None


def method_code(method: Method) -> str:
    """sha256 (16 hex digits) of the method's code, part of a run's identity so an edited method
    never reuses runs of its old code: the module that defines it and every module of the
    `methods` package it imports, directly or not (greg's includes l1norm's), so editing one
    method renames only its own runs and those of methods built on it; for a plug-in, its file."""
    from prunebench import methods

    source = inspect.getsourcefile(type(method))
    package = Path(methods.__file__).parent
    files = [Path(source or "")]
    if source and Path(source).parent == package:
        files = sorted(_package_closure(Path(source), package))
    h = hashlib.sha256()
    for path in files:
        h.update(path.read_bytes() if path.is_file() else type(method).__qualname__.encode())
    return h.hexdigest()[:16]


def _package_closure(source: Path, package: Path) -> set[Path]:
    """`source` and the modules of `package` (prunebench.methods) it imports, transitively."""
    import ast

    seen: set[Path] = set()
    todo = [source]
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_bytes())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("prunebench.methods."):
                    todo.append(package / f"{name.split('.')[2]}.py")
    return seen


def parse_method(text: str) -> tuple[str, dict]:
    """`NAME` or `NAME:KEY=VALUE,KEY=VALUE` (values read as YAML: numbers, lists, quoted strings),
    e.g. `magnitude:scope=global`, `l1norm:stage_ratios=[0,0.6,0.6,0.6,0.21,0]` or
    `l1norm:retrain_lr="0:0.01,2:0.001"`."""
    name, _, rest = text.partition(":")
    settings: dict = {}
    if rest.strip():
        parts, depth, current, quote = [], 0, "", ""
        for ch in rest:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
            if ch == "," and depth == 0 and not quote:
                parts.append(current)
                current = ""
            else:
                current += ch
        parts.append(current)
        for part in parts:
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise UserError(f"cannot read method settings {rest!r} of {name!r}: write "
                                f"'{name}:KEY=VALUE[,KEY=VALUE...]', e.g. 'magnitude:scope=global'; quote a "
                                "value that holds commas, e.g. 'l1norm:retrain_lr=\"0:0.1,2:0.01\"'")
            try:
                settings[key.strip()] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise UserError(f"cannot read the value {value!r} of setting {key.strip()!r} of {name!r}: values "
                                "are read as YAML (a number, [a, list], or a 'quoted string')") from None
    return name.strip(), settings


def resolve_method(text: str) -> tuple[Method, MethodSpec]:
    """A method as given on the command line (`NAME[:KEY=VALUE,...]`): the registered method and
    its spec, settings validated (bad ones fail here, before anything trains) and defaults
    dropped, so that equal settings give equal run ids. No target or code hash yet."""
    name, raw = parse_method(text)
    method = METHODS.get(name)
    return method, MethodSpec(name=name, settings=method.settings(raw).model_dump(mode="json", exclude_defaults=True))
