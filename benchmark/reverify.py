"""`bench verify`: re-derive finished runs from first principles, in a fresh process.

For each run: its spec hashes to its id; `model.pt` is the file the loop recorded (sha256); the
architecture is rebuilt from clean modules and the stored plan, and the model must load into it
exactly (no extra capacity, no missing weights; masked weights are zero); the plan meets its
target again; MACs, parameters and density are recounted; the data read are the copy the run
trained on (the fingerprints it recorded); the model is re-evaluated on the test split and must
give the recorded final accuracy (exactly on the machine that trained it, within
`OTHER_MACHINE_TOLERANCE` points elsewhere, flagged); the trace is faithful to the spec's
recipes and is re-audited against the protocol content recorded with the run (`protocol.json`,
whose sha256 the tables group by), budgets included; and the SQLite index says what the run
directory says. Nothing of a method's code is imported: the plan, trace and model are data.

`verify_runs` runs the checks in a child interpreter (`python -m prunebench.reverify`), so no
state of the calling process (hooks, patched modules) can take part, then checks the index.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunebench import paths
from prunebench.errors import UserError

OTHER_MACHINE_TOLERANCE = 0.2  # accuracy points: re-evaluation on another CPU/GPU, or under torch.compile
MACHINE_KEYS = ("torch", "device", "cpu", "cpu_kernels", "gpu", "threads")  # a record without one: another machine


@dataclass
class Verdict:
    """What verifying one run found: problems fail it; flags are said but do not."""

    run_id: str
    row: str = ""
    seed: int | None = None
    problems: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    test_acc: float | None = None  # the re-evaluated final accuracy
    recorded_acc: float | None = None  # the final accuracy metrics.json records (what tables show)
    files_sha256: str = ""  # of the run's files as verified (`RunFiles.digest`): a later change voids the mark

    @property
    def ok(self) -> bool:
        return not self.problems


# --- in the child process ------------------------------------------------------------------------

class _Failed(Exception):
    """A check that leaves nothing further to check."""


class _Environment(Exception):
    """This machine cannot verify (no data where it looked, no such device): no verdict at all."""


def _check_run(root: Path, run_id: str, data_root: Path | None, device: str, loaded: dict) -> Verdict:
    import torch

    from prunebench import audit, search, targets
    from prunebench._atomic import sha256_file
    from prunebench.budget import Budgets
    from prunebench.config import Protect, Protocol, Suite, content_sha256
    from prunebench.data import DATASETS, TensorData, load_dataset
    from prunebench.errors import DamagedFile, ProtocolViolation
    from prunebench.flops import effective_macs, forward_macs, param_count
    from prunebench.machine import describe
    from prunebench.machine import label as machine_label
    from prunebench.method import Target
    from prunebench.models import ARCHS
    from prunebench.pruning import PruningPlan, apply_plan, plan_macs
    from prunebench.store import RunFiles
    from prunebench.train import evaluate

    files = RunFiles(root)
    verdict = Verdict(run_id)
    problems = verdict.problems
    directory = files.run_dir(run_id)
    try:
        spec = files.spec(run_id)
        verdict.row, verdict.seed = spec.row, spec.seed
        if spec.run_id != run_id:
            raise _Failed("spec.json does not hash to the run's id (edited)")
        metrics = files.metrics(run_id)
        if metrics is None:
            raise _Failed("not finished (no metrics.json)")
        verdict.files_sha256 = files.digest(run_id)
        verdict.recorded_acc = metrics.get("test_acc")
        trace = files.trace(run_id)
        if trace is None:
            raise _Failed("trace.json is missing")
        model_file = directory / "model.pt"
        if not model_file.is_file():
            raise _Failed("model.pt is missing")
        if sha256_file(model_file) != metrics.get("model_sha256"):
            raise _Failed("model.pt is not the file the training loop recorded (sha256 differs)")

        # the content it was audited against, as recorded, and its sha256
        audited = files.audited(run_id)
        suite = protocol = None
        if audited is None:
            problems.append("protocol.json is missing: the run records no suite or protocol content (a run of an "
                            "older prunebench, or removed)")
        else:
            suite = Suite.model_validate(audited["suite"])
            if content_sha256(suite) != metrics.get("suite_sha256"):
                problems.append("protocol.json's suite is not the content the run recorded (suite sha256 differs)")
            if spec.kind != "base":
                protocol = Protocol.model_validate(audited["protocol"])
                if content_sha256(protocol) != metrics.get("protocol_sha256"):
                    problems.append("protocol.json's protocol is not the content the run recorded (sha256 differs)")
            if suite.name != spec.suite or suite.dataset != spec.dataset or suite.arch != spec.arch:
                problems.append(f"the recorded suite {suite.name} ({suite.dataset}, {suite.arch}) is not the run's")

        # the architecture from clean modules, and the model into it
        arch, dataset = ARCHS.get(spec.arch), DATASETS.get(spec.dataset)
        model = arch.build(dataset.num_classes, dataset.input_shape[0])
        if spec.arch_signature and hashlib.sha256(repr(model).encode()).hexdigest()[:16] != spec.arch_signature:
            problems.append(f"architecture {spec.arch} is not the one the run was trained with (its definition "
                            "changed since)")
        dense_macs = forward_macs(model, dataset.input_shape)
        plan = PruningPlan.load(directory)
        if spec.kind == "pruned" and plan is None:
            raise _Failed("plan.json is missing")
        if spec.kind == "scratch" and plan is None and spec.widths is not None:
            plan = PruningPlan.first_k(spec.widths)
        if spec.kind == "scratch" and plan is not None and not plan.masks and plan.widths() != spec.widths:
            problems.append("the scratch run's plan is not the architecture its spec names")
        if spec.kind == "scratch" and (plan.masks_sha256() if plan else None) != spec.masks_sha256:
            problems.append("the scratch run's masks are not those its spec names")
        at_round = None  # (round's plan, its ratio) -> raises ProtocolViolation where it misses the ratio
        if plan is not None and spec.kind in ("pruned", "scratch") and spec.method is not None:
            rule = spec.target_rule or targets.TargetRule()  # part of the run's id: a record cannot change it
            protect = spec.protect or Protect()  # part of the id too
            mspec = spec.method
            try:
                if mspec.speedup is not None:  # at the ratio its search found, and the MACs against the speedup
                    found = (metrics.get("target") or {}).get("search") if isinstance(metrics.get("target"), dict) \
                        else None
                    if not isinstance(found, dict) or metrics["target"].get("knob") != found.get("knob"):
                        raise ProtocolViolation(spec.protocol or "-", targets.RULE, "the searched ratio recorded",
                                                f"ratio {metrics['target'].get('knob')} beside the search {found!r}")

                    def macs_of(p):
                        return plan_macs(arch.build(dataset.num_classes, dataset.input_shape[0]), p,
                                         dataset.input_shape)

                    mspec, rule = search.met(spec.protocol or "-", mspec, rule, found, plan, model, arch, protect,
                                             dense_macs, macs_of, per_layer=rule.scope == "layer" and not plan.masks)
                rule.check_visible(spec.protocol or "-", mspec.settings)
                targets.check(spec.protocol or "-", plan, model, arch,
                              Target(ratio=mspec.ratio, config=mspec.config, protect=protect),
                              rule, "weight" if plan.masks else "filter")
                if spec.rounds is not None and mspec.ratio is not None:
                    try:
                        schedule = spec.rounds.schedule(mspec.ratio)
                    except ValueError as e:
                        raise ProtocolViolation(spec.protocol or "-", "pruning rounds", "a schedule", str(e)) from None

                    def at_round(p, r, rule=rule, protect=protect, schedule=schedule):
                        targets.check(spec.protocol or "-", p, model, arch, Target(ratio=schedule[r - 1], protect=protect),
                                      rule, "weight" if p.masks else "filter")
            except ProtocolViolation as v:
                problems.append(f"the plan misses its target: expected {v.expected}, got {v.actual}")
        if spec.rounds is not None and plan is not None:  # the rounds' plans: one per round, each within the last
            problems.extend(_round_problems(directory, spec, plan, model, at_round))
        found, flagged = _computation_problems(files, spec, metrics, plan)
        problems.extend(found)
        verdict.flags.extend(flagged)
        if plan is not None:
            apply_plan(model, plan, dataset.input_shape)
        state = torch.load(model_file, map_location="cpu", weights_only=True)
        missing = sorted(set(model.state_dict()) - set(state))
        extra = sorted(set(state) - set(model.state_dict()))
        if missing or extra:
            raise _Failed(f"model.pt does not fit the architecture its plan makes (missing {missing[:3]}, extra "
                          f"{extra[:3]}): hidden capacity, or another model")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise _Failed(f"model.pt does not fit the architecture its plan makes: {str(e).splitlines()[-1].strip()}")
        if plan is not None and plan.masks:
            params = dict(model.named_parameters())
            live = [n for n, m in plan.masks.items() if bool((params[n].detach()[~m] != 0).any())]
            if live:
                problems.append(f"masked weights of {live[0]} are not zero")

        # recounted
        recount = {"macs": forward_macs(model, dataset.input_shape),
                   "effective_macs": effective_macs(model, dataset.input_shape), "params": param_count(model),
                   "density": targets.density(model, plan.masks if plan is not None else {})}
        for key, value in recount.items():
            recorded = metrics.get(key)
            same = (recorded is None and value is None) or (
                recorded is not None and value is not None and math.isclose(recorded, value, rel_tol=1e-9))
            if not same:
                problems.append(f"{key}: recorded {recorded}, recounted {value}")

        # the trace against the spec it ran and the protocol it was audited against
        key = (spec.dataset, str(data_root))
        if key not in loaded:
            try:
                train, test = load_dataset(spec.dataset, data_root)
            except UserError as e:  # the data are elsewhere: say so, and judge no run
                raise _Environment(f"{e} (pass --data-root DIR where the runs' dataset is)") from None
            if isinstance(train, TensorData) and isinstance(test, TensorData):
                train, test = train.to(device), test.to(device)
            loaded[key] = (train, test, train.fingerprint()[:16] + test.fingerprint()[:16])
        train, test, fingerprint = loaded[key]
        n_train = len(train)
        if metrics.get("data_fingerprint") != fingerprint:  # the loop records it for every run
            theirs = metrics.get("data_fingerprint")
            problems.append(f"the data read here ({fingerprint[:12]}) are not the copy the run trained on "
                            f"({str(theirs)[:12] if theirs else 'none recorded'}): its training and accuracy "
                            "cannot be checked against these (pass --data-root with the copy of its table)")
        last = trace.rows[-1] if trace.rows else None
        if last is None or last.test_acc != metrics.get("test_acc"):
            problems.append(f"the trace's last epoch ({last.test_acc if last else None}) is not the recorded final "
                            f"accuracy ({metrics.get('test_acc')})")
        if trace.epochs != metrics.get("epochs") or trace.train_flops != metrics.get("train_flops"):
            problems.append("the trace's epochs or training FLOPs are not those recorded")
        base_metrics = (files.metrics(spec.base) or None) if spec.base else {}
        if base_metrics is not None:  # the pipeline's totals and the dense accuracy its drop is taken from
            derived = {"total_epochs": base_metrics.get("epochs", 0) + trace.epochs,
                       "total_train_flops": base_metrics.get("train_flops", 0) + trace.train_flops,
                       "base_test_acc": base_metrics.get("test_acc")}
            for name, value in derived.items():  # a deleted one is no older run's: the loop always wrote them
                if metrics.get(name, "none") != value:
                    problems.append(f"{name}: recorded {metrics.get(name, 'none')}, re-derived {value} (its trace "
                                    f"and {'its base' if spec.base else 'no base'})")
        if spec.kind != "base" and not isinstance(metrics.get("planning"), dict):
            problems.append("planning: recorded none (how the method's code ran, sandboxed or not: the loop records "
                            "it for every pruned and scratch run)")
        try:
            rounds = iter(audit.round_phases(trace))
            for phase, recipe in spec.phases:  # the loop trained what the spec says, epoch by epoch
                name = next(rounds, "round?") if phase == "round" else phase  # round1, round2, ... in the trace
                audit.audit_faithful(name, recipe, trace.phase(name), n_train)
            if protocol is not None and suite is not None:
                if spec.kind == "pruned":
                    audit.audit_run(protocol, trace, n_train)
                budgets = Budgets(protocol, suite, dense_macs, dataset.train_size)
                budget = budgets.budget(recount["effective_macs"], n_train)
                held = metrics.get("budget") if isinstance(metrics.get("budget"), dict) else {}
                amount = held.get("amount")
                if budget is not None and not (isinstance(amount, (int, float)) and math.isclose(
                        amount, budget, rel_tol=1e-9)):
                    problems.append(f"budget: recorded {'none' if amount is None else amount}, re-derived {budget}")
                if budget is not None and protocol.budget is not None:
                    kind = protocol.budget.kind
                    used = float(trace.epochs if kind == "epochs" else trace.train_flops)
                    if spec.kind == "pruned" and spec.base:
                        base = files.metrics(spec.base) or {}
                        used += base.get("epochs" if kind == "epochs" else "train_flops", 0)
                    audit.audit_budget(protocol.setup, kind, budget, used, protocol.budget.tolerance)
        except ProtocolViolation as v:
            problems.append(f"re-audit: {v}")
        if spec.kind == "pruned" and spec.base:
            try:
                pinned = json.loads((directory / "base.json").read_text())["model_sha256"]
                base = files.metrics(spec.base) or {}
                weights = files.run_dir(spec.base) / "model.pt"  # the file, not only what its metrics say of it
                if pinned != base.get("model_sha256") or not weights.is_file() or sha256_file(weights) != pinned:
                    problems.append("the base it started from is not the base model stored now (sha256 differs)")
            except (OSError, ValueError, KeyError, TypeError):
                problems.append("base.json (the base sha256 the run started from) is missing or unreadable")

        # re-evaluated from the file alone
        model = model.to(device, memory_format=torch.channels_last)
        precision = spec.phases[-1][1].precision
        _, acc = evaluate(model, test, precision=precision)
        verdict.test_acc = acc
        recorded = metrics.get("test_acc")
        here = describe(torch.device(device))
        there = metrics.get("machine") or {}
        # torch.compile's kernels are not eager's, and cuDNN picks its kernels per process
        # (benchmark mode): such runs are re-evaluated as on another machine
        same_machine = (all(str(here.get(k)) == str(there.get(k)) for k in MACHINE_KEYS)
                        and not metrics.get("compiled") and torch.device(device).type == "cpu")
        elsewhere = (f"another machine ({machine_label(there)} -> {machine_label(here)})"
                     if any(str(here.get(k)) != str(there.get(k)) for k in MACHINE_KEYS)
                     else "other kernels (trained through torch.compile, re-evaluated eagerly)"
                     if metrics.get("compiled") else f"another device ({device})")
        if recorded is None or not isinstance(recorded, (int, float)):
            problems.append("metrics.json records no final accuracy")
        elif acc != recorded:
            if same_machine or abs(acc - recorded) > OTHER_MACHINE_TOLERANCE:
                where = "on the machine that trained it" if same_machine else (
                    f"beyond {OTHER_MACHINE_TOLERANCE} points, on {elsewhere}")
                problems.append(f"re-evaluated accuracy {acc:.2f}% is not the recorded {recorded:.2f}% ({where})")
            else:
                verdict.flags.append(f"re-evaluated {acc:.2f}% vs recorded {recorded:.2f}% on {elsewhere}, within "
                                     f"{OTHER_MACHINE_TOLERANCE} points")
        elif not same_machine:
            verdict.flags.append(f"re-evaluated on {elsewhere}: equal")
    except _Failed as e:
        problems.append(str(e))
    except _Environment:
        raise
    except (DamagedFile, UserError) as e:
        problems.append(str(e))
    except Exception as e:  # noqa: BLE001 - a forged file of any other kind: a failed verification, one line
        problems.append(f"cannot be re-derived: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    return verdict


def _round_problems(directory: Path, spec, final, model, at_round=None) -> list[str]:
    """An iterative run's stored round plans (`rounds/<r>/`): one per round the spec trains, each
    at its round's ratio of the schedule (`at_round`, where the final ratio is known) and keeping
    nothing an earlier one removed, the final plan within the last."""
    from prunebench.errors import ProtocolViolation
    from prunebench.pruning import PruningPlan, revived

    n = sum(1 for phase, _ in spec.phases if phase == "round")
    plans = [PruningPlan.load(directory / "rounds" / str(r)) for r in range(1, n + 1)]
    if any(p is None for p in plans):
        return [f"rounds/: {sum(p is None for p in plans)} of the {n} rounds' plans are missing"]
    for r, p in enumerate(plans, start=1):
        try:
            if at_round is not None:
                at_round(p, r)
        except ProtocolViolation as v:
            return [f"round {r}'s plan misses its ratio: expected {v.expected}, got {v.actual}"]
        except (ValueError, KeyError, IndexError) as e:
            return [f"round {r}'s plan does not fit the model or the schedule: {e}"]
    widths = {name: m.out_channels for name, m in model.named_modules() if hasattr(m, "out_channels")}
    chain = [*plans, final]
    for r, (before, after) in enumerate(itertools.pairwise(chain), start=2):
        if (found := revived(after, before, widths)) is not None:
            return [f"round {r} keeps {found[0]} an earlier round removed ({found[1]})"]
    return []


def _computation_problems(files, spec, metrics: dict, plan) -> tuple[list[str], list[str]]:
    """The run's computation record against its own files: it hashes to its id, it is what the
    spec trains (kind, seed, recipes, base, the plan cut or the method choosing it and the
    protocol it chose under, the scratch architecture), and a run that took another run's
    training names a run of the same computation. Problems, and flags: the run it names is gone
    or holds another model now (retrained since; this run's own files verify on their own). A run
    of an older prunebench records none: nothing was shared."""
    from prunebench.config import Computation

    record = metrics.get("computation")
    if record is None:
        return [], []
    try:
        content = Computation.model_validate(record["content"])
    except (KeyError, TypeError, ValueError):
        return ["metrics.json's computation record cannot be read"], []
    problems, flags = [], []
    if content.id != record.get("id"):
        problems.append("its computation record does not hash to the id it records")
    trained = (content.kind, content.dataset, content.arch, content.arch_signature, content.seed, content.phases,
               content.division)
    if trained != (spec.kind, spec.dataset, spec.arch, spec.arch_signature, spec.seed, spec.phases, spec.division):
        problems.append("the computation recorded is not what the run's spec trains (kind, seed, recipes or division)")
    if spec.kind == "scratch" and (content.widths, content.masks_sha256) != (spec.widths, spec.masks_sha256):
        problems.append("the computation recorded is not the scratch architecture its spec names")
    if spec.kind == "pruned":
        if content.rounds != spec.rounds:
            problems.append("the computation recorded has other pruning rounds than the run's spec")
        if content.penalty != spec.penalty:
            problems.append("the computation recorded has another penalty than the run's spec")
        if content.method is None and (plan is None or content.plan_sha256 != plan.sha256()):
            problems.append("the plan it cut (plan.json) is not the plan its computation records")
        if content.method is not None and (content.method, content.protect, content.target_rule, content.protocol) != (
                spec.method, spec.protect, spec.target_rule, metrics.get("protocol_sha256")):
            problems.append("the method (or the protocol it planned under) its computation records is not the run's")
        base = (files.metrics(spec.base) or {}).get("computation") if spec.base else None
        if isinstance(base, dict) and content.base != base.get("id"):
            problems.append("the base its computation records is not the run's base model")
    owner = record.get("trained_in")
    if owner != spec.run_id:
        if not paths.is_run_id(owner):
            return [*problems, f"its computation record names no run that trained it ({owner!r})"], flags
        trained_by = files.metrics(owner)
        theirs = (trained_by or {}).get("computation") or {}
        if trained_by is None:
            flags.append(f"it records run {owner[:12]} as its training, which is no longer a finished run of the store")
        elif theirs.get("id") != record.get("id") or theirs.get("trained_in") != owner:
            problems.append(f"it records run {owner[:12]} as its training, but that run's computation is not its own")
        elif trained_by.get("model_sha256") != metrics.get("model_sha256"):
            flags.append(f"run {owner[:12]}, whose training it took, holds another model now (trained again since)")
    return problems, flags


def _child(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m prunebench.reverify")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("runs", nargs="*")
    args = p.parse_args(argv)
    loaded: dict = {}
    try:
        import torch

        try:
            torch.zeros(1, device=args.device)
        except (RuntimeError, AssertionError) as e:
            raise _Environment(f"--device {args.device} cannot be used here: {str(e).splitlines()[0]}") from None
        for run_id in args.runs:
            verdict = _check_run(args.store, run_id, args.data_root, args.device, loaded)
            print(json.dumps(asdict(verdict)), flush=True)
    except _Environment as e:
        print(json.dumps({"environment": str(e)}), flush=True)


# --- in the calling process -----------------------------------------------------------------------

def finished_runs(root: Path) -> list[str]:
    """Every run of the store with a metrics.json."""
    runs = paths.runs_dir(root)
    return sorted(p.name for p in runs.iterdir() if (p / "metrics.json").exists()) if runs.is_dir() else []


def resolve_ids(root: Path, given: list[str]) -> list[str]:
    """Run ids or unique prefixes, each a run of the store."""
    names = sorted(p.name for p in paths.runs_dir(root).iterdir() if p.is_dir())
    out = []
    for prefix in given:
        found = [n for n in names if n.startswith(prefix)] if prefix else []
        if len(found) != 1:
            raise UserError(f"{'no' if not found else len(found)} run{'s' if len(found) > 1 else ''} of store {root} "
                            f"{'start' if len(found) > 1 else 'starts'} with {prefix!r}: give a run id (or a unique "
                            "prefix) from `bench run` or `bench report`.")
        out.append(found[0])
    return out


def verify_runs(root: Path, run_ids: list[str], data_root: Path | None = None, device: str = "cpu",
                progress=None) -> list[Verdict]:
    """Verify `run_ids` in a fresh interpreter, then check the index against their directories."""
    root = Path(root)
    if not paths.runs_dir(root).is_dir():
        raise UserError(f"no run store at {root} (no runs/ folder); pass --store DIR of a store that `bench run` "
                        "wrote.")
    if data_root is not None and not Path(data_root).exists():
        raise UserError(f"--data-root {data_root} does not exist.")
    verdicts: list[Verdict] = []
    if run_ids:
        command = [sys.executable, "-m", "prunebench.reverify", "--store", str(root), "--device", device,
                   *(["--data-root", str(data_root)] if data_root else []), *run_ids]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ)) as child:
            assert child.stdout is not None
            for line in child.stdout:
                reply = json.loads(line)
                if "environment" in reply:  # nothing judged: the data or device are not here
                    child.kill()
                    raise UserError(f"cannot verify on this machine: {reply['environment']}")
                verdict = Verdict(**reply)
                verdicts.append(verdict)
                if progress is not None:
                    progress(verdict, len(verdicts), len(run_ids))
        if child.returncode != 0 or len(verdicts) != len(run_ids):
            raise UserError(f"verification stopped after {len(verdicts)} of {len(run_ids)} runs (exit status "
                            f"{child.returncode}); see the lines above.")
    _check_index(root, verdicts)
    return verdicts


INDEXED = ("test_acc", "macs", "effective_macs", "params", "epochs", "total_epochs", "train_flops", "total_train_flops",
           "suite_sha256", "protocol_sha256", "data_fingerprint", "knob", "budget", "method_cpu_seconds")


def _check_index(root: Path, verdicts: list[Verdict]) -> None:
    """The index (what tables are built from) must say what each run directory says."""
    from prunebench.store import RunFiles, Store

    if not paths.db_path(root).exists():
        return
    store = Store(root)
    files = RunFiles(root)
    try:
        rows = {r["id"]: dict(r) for r in store.query(f"SELECT id, status, {', '.join(INDEXED)} FROM runs")}
        for verdict in verdicts:
            row = rows.get(verdict.run_id)
            if row is None:
                verdict.problems.append("the index does not list the run")
                continue
            metrics = files.metrics(verdict.run_id) or {}
            if row["status"] != "done":
                verdict.problems.append(f"the index says {row['status']}, the run directory says done")
            nested = {"knob": (metrics.get("target") or {}).get("knob") if isinstance(metrics.get("target"), dict)
                      else None,
                      "budget": (metrics.get("budget") or {}).get("amount") if isinstance(metrics.get("budget"), dict)
                      else None,
                      "method_cpu_seconds": (metrics.get("planning") or {}).get("method_cpu_seconds")
                      if isinstance(metrics.get("planning"), dict) else None}
            for key in INDEXED:
                recorded = nested[key] if key in nested else metrics.get(
                    key, metrics.get("macs") if key == "effective_macs" else None)
                if row[key] != recorded and not (isinstance(row[key], float) and isinstance(recorded, (int, float))
                                                 and math.isclose(row[key], recorded, rel_tol=1e-12)):
                    verdict.problems.append(f"the index's {key} ({row[key]}) is not the run directory's ({recorded})")
        if verdicts:
            store.record_verifications(verdicts)
    finally:
        store.close()


def index_problems(root: Path) -> list[str]:
    """Runs the index calls done whose directories do not hold a finished run."""
    from prunebench.store import Store

    if not paths.db_path(root).exists():
        return []
    store = Store(root)
    try:
        done = [r["id"] for r in store.query("SELECT id FROM runs WHERE status = 'done'")]
    finally:
        store.close()
    finished = set(finished_runs(root))
    return [f"the index lists run {i[:12]} as done, but its directory holds no finished run" for i in done
            if i not in finished]


if __name__ == "__main__":
    _child(sys.argv[1:])
