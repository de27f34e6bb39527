"""Which setup two stored runs are comparable under (`bench compare`).

A claim "A beats B" from a paper's table holds only under the setup both runs satisfy. This
walks the ladder S1 ... S4.2 of Wang et al. and reports the strictest setup the pair meets and
the first rule that breaks the next one; SX-A and SX-B are checked on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunebench import paths
from prunebench.config import RunSpec
from prunebench.errors import UserError
from prunebench.setups import LADDER, PARTS, RULES, WORDS
from prunebench.store import RunFiles

FLOPS_TOLERANCE = 0.01


@dataclass(frozen=True)
class StoredRun:
    spec: RunSpec
    metrics: dict
    base_metrics: dict | None

    def phase(self, name: str):
        return next((r for p, r in self.spec.phases if p == name), None)

    def value(self, rule: str) -> object:
        phase, _, part = rule.partition(".")
        if rule == "target":
            m = self.spec.method
            target = (("config", m.config) if m.config else ("speedup", m.speedup) if m.speedup is not None
                      else ("ratio", m.ratio)) if m else ("ratio", 0.0)
            protect = self.spec.protect.model_dump() if self.spec.protect else None  # None: the default floor
            return (self.spec.dataset, self.spec.arch, self.spec.arch_signature, target, protect)
        if rule == "base":
            return self.spec.base
        if rule == "total.epochs":
            return self.metrics["total_epochs"]
        if rule == "total.flops":
            return self.metrics["train_flops"] + (self.base_metrics or {}).get("train_flops", 0)
        recipe = self.phase(phase)
        if recipe is None:
            return 0 if part == "epochs" else None
        values = tuple(str(v) if f == "lr" else v for f, v in ((f, getattr(recipe, f)) for f in PARTS[part]))
        return values[0] if len(values) == 1 else values


def load_run(store: RunFiles, run: str) -> StoredRun:
    """A stored run by id or unique id prefix."""
    runs = paths.runs_dir(store.root)
    matches = sorted(p for p in runs.iterdir() if p.is_dir() and p.name.startswith(run)) if run else []
    if not matches:
        raise UserError(f"no run in store {store.root} has an id starting with {run!r}: copy an id from the "
                        "'runs' column of `bench run` (or `bench report`), and pass --store DIR if the runs are in "
                        "another store.")
    if len(matches) > 1:
        raise UserError(f"{len(matches)} runs of store {store.root} start with {run!r} "
                        f"({', '.join(p.name[:12] for p in matches[:5])}{', ...' if len(matches) > 5 else ''}); "
                        "give more characters of the run id.")
    directory = matches[0]
    metrics = store.metrics(directory.name)
    if metrics is None:
        raise UserError(f"run {directory.name[:12]} has not finished; only finished runs can be compared.")
    spec = store.spec(directory.name)
    base = store.metrics(spec.base) if spec.base else None
    return StoredRun(spec, metrics, base)


def holds(rule: str, a: StoredRun, b: StoredRun) -> tuple[bool, object, object]:
    va, vb = a.value(rule), b.value(rule)
    kinds = (a.spec.kind, b.spec.kind)
    if rule == "total.flops" and sorted(kinds) == ["pruned", "scratch"]:
        # Scratch-B trains whole epochs up to the pipeline's FLOPs (K1*F1/F2 + K2, rounded down):
        # it matches when it stays within the budget and less than one of its epochs below it
        scratch, budget = (va, vb) if kinds[0] == "scratch" else (vb, va)
        run = a if kinds[0] == "scratch" else b
        epoch = scratch / max(1, run.metrics.get("epochs") or 1)  # type: ignore[operator]
        ok = budget - epoch < scratch <= budget * (1 + FLOPS_TOLERANCE)  # type: ignore[operator]
    elif rule == "total.flops":
        ok = abs(va - vb) <= FLOPS_TOLERANCE * max(va, vb)  # type: ignore[operator]
    else:
        ok = va == vb
    return ok, va, vb


def _rules(setup: str, a: StoredRun, b: StoredRun) -> tuple[str, ...]:
    """The rules a pair is held to under `setup`. A scratch baseline (SX-A/SX-B) starts from no
    base and trains the suite's recipe for its matched budget: as the setup does, it is held to
    the pruned architecture's target and the total budget only."""
    if "scratch" in (a.spec.kind, b.spec.kind):
        return ("target",) + tuple(r for r in RULES[setup] if r.startswith("total."))
    return ("target",) + RULES[setup]


def _first_broken(setup: str, a: StoredRun, b: StoredRun) -> tuple[str, object, object] | None:
    for rule in _rules(setup, a, b):
        ok, va, vb = holds(rule, a, b)
        if not ok:
            return rule, va, vb
    return None


def compare(a: StoredRun, b: StoredRun) -> dict:
    """The strictest ladder setup both runs meet, the rule breaking the next, and SX-A/SX-B."""
    kinds = {a.spec.kind, b.spec.kind}
    if "base" in kinds and len(kinds) > 1:
        base, other = (a, b) if a.spec.kind == "base" else (b, a)
        raise UserError(f"{base.spec.run_id[:12]} is a dense base model and {other.spec.run_id[:12]} a "
                        f"{other.spec.kind} run: the setups compare pruned (or scratch) runs with each other. Pass "
                        "two of those.")
    never = (  # never comparable: one ran method code inside training; they trained on other data
        ("division", "division (closed: method code only in the planning worker; open: inside training)",
         a.spec.division, b.spec.division),
        ("data", ("data (the train and test splits' fingerprints: two copies of the dataset, other images behind "
                  "its name)"), a.metrics.get("data_fingerprint"), b.metrics.get("data_fingerprint")))
    for rule, words, va, vb in never:
        if va != vb:
            broken = {"rule": rule, "a": str(va), "b": str(vb)}
            return {"a": a.spec.run_id, "b": b.spec.run_id, "strictest": None,
                    "breaks": {"setup": LADDER[0], "words": words, **broken},
                    "sx": {setup: {"comparable": False, **broken} for setup in ("SX-A", "SX-B")}}
    strictest, breaks = None, None
    if "scratch" in kinds:  # the ladder compares pruning pipelines; scratch baselines belong to SX-A / SX-B
        breaks = {"setup": LADDER[0], "rule": "kind", "a": a.spec.kind, "b": b.spec.kind,
                  "words": "kind of run (a scratch baseline is compared under SX-A and SX-B only)"}
    for setup in LADDER if breaks is None else ():
        broken = _first_broken(setup, a, b)
        if broken:
            rule, va, vb = broken
            breaks = {"setup": setup, "rule": rule, "words": WORDS.get(rule, "pruning target"),
                      "a": str(va), "b": str(vb)}
            break
        strictest = setup
    sx = {}
    for setup in ("SX-A", "SX-B"):
        broken = _first_broken(setup, a, b)
        sx[setup] = {"comparable": broken is None,
                     **({"rule": broken[0], "a": str(broken[1]), "b": str(broken[2])} if broken else {})}
    return {"a": a.spec.run_id, "b": b.spec.run_id, "strictest": strictest, "breaks": breaks, "sx": sx}


def compare_ids(store_root: Path, run_a: str, run_b: str) -> dict:
    """Compare two runs of the store at `store_root`, which must exist (it only reads run
    directories: neither the index nor torch is needed)."""
    if not paths.runs_dir(Path(store_root)).is_dir():
        raise UserError(f"no run store at {store_root} (no runs/ folder); pass --store DIR of a store that "
                        "`bench run` wrote.")
    store = RunFiles(Path(store_root))
    return compare(load_run(store, run_a), load_run(store, run_b))
