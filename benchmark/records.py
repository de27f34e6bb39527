"""Run records: a store's finished runs without their weights, to commit a leaderboard that was
trained in parts (one store per machine or session) and to report from all of the parts.

`bench export --store STORE --out DIR` copies the record of every finished run — spec, plan and
round plans, trace, metrics, what it was audited against (`protocol.json`, `base.json`), a
violation or a failure — into `DIR/runs/<id>/`, and writes `record.json` beside them: the sha256
of each weight file left out (every `*.pt`: `model.pt`, `masks.pt`, round masks), when the run
last changed in its store, which export brought it, and the run's last `bench verify` verdict
while the files it verified are unchanged. `DIR/records.json` marks DIR as records and lists the
exports that filled it (when, from which store, on which machine).

DIR is a read-only store: `bench report --store DIR` builds its index in memory from the run
directories; a run is marked verified while its files, with the recorded weights' sha256, still
hash to what the verifier saw (`Store.digest`). A record is as trustworthy as its history (git):
the verdict shows that the files are those verified, not who verified them. `bench run` and
`bench verify` refuse DIR: there are no weights to train from or re-derive. Exports add up: a run
already in DIR must be the same record (one run id is one computation); a different one is an
error, never a silent overwrite. The same holds for a computation, which several runs (memberships:
one pruned run under S2 and under SX-B, one scratch baseline under two methods' names) share, as
the runs' specs tell it (`computation`: not the record, which a hand can strip or rewrite): a
run whose computation is recorded under another run id is added only with that run's result (the
same weights' sha256 and test accuracy: the same training, or one retrained bit-identical);
otherwise it is refused, naming both runs and the machines they trained on, and nothing of it is
added. Likewise a result rests on what it started from: a pruned run on the base weights it pinned
(`base.json`), a scratch baseline on the architecture its pruned run was pruned to. A pruned run
that started from other weights than its recorded base (or than other recorded pruned runs of that
base), a base other than the one its recorded pruned runs started from, and a scratch baseline of
another architecture than its recorded pruned run (one protocol, seed and method) are refused
before anything is added. `bench export RUN...` adds only the runs named: a part that had to
train a run's upstream again (a scratch baseline's base and pruned run, whose architecture, not
weights, it trains) on a machine whose arithmetic differs adds the runs it was for, not a second
result under the upstream's id.
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import hashlib
import json
import math
import pickle
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prunebench
from prunebench import paths
from prunebench._atomic import disk_error, sha256_file, write_atomic
from prunebench.errors import UserError

MARKER = "records.json"  # at the root: this folder holds run records, not a store to train in
LOCK = ".export.lock"  # at the root: one export at a time
RECORD = "record.json"  # in each run's folder
FINISHED = ("metrics.json", "violation.json", "failed.json")
_VERDICT = ("ok", "problems", "flags", "files_sha256", "test_acc", "recorded_acc", "checked")


def is_records(root: Path) -> bool:
    return (Path(root) / MARKER).is_file()


def refuse(root: Path, command: str) -> None:
    """Commands that train or re-derive cannot work on records: say what to do instead."""
    if is_records(root):
        raise UserError(f"{root} holds run records exported by `bench export` (no weights): `bench {command}` "
                        "needs a run store. Train in a store of your own (--store DIR) and export it into "
                        f"{root} with `bench export --store DIR --out {root}`; `bench report --store {root}` "
                        "reports from the records.")


def _read(run_dir: Path) -> dict[str, Any]:
    """A run's `record.json`; empty when there is none or it cannot be read (then nothing of the
    run counts as verified: its digest no longer matches)."""
    try:
        value = json.loads((run_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def weights(run_dir: Path) -> dict[str, str]:
    """The sha256 of the weight files a record left out, by path in the run's folder; only `.pt`
    files stand for themselves this way (a record cannot list its trace or plan as 'left out')."""
    value = _read(run_dir).get("weights")
    if not isinstance(value, dict):
        return {}
    return {name: sha for name, sha in value.items()
            if isinstance(name, str) and name.endswith(".pt") and ".." not in name and _sha256(sha)}


def updated(run_dir: Path) -> float | None:
    """When the run last changed in the store it was exported from."""
    value = _read(run_dir).get("updated")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def verification(run_dir: Path) -> dict[str, Any] | None:
    """The verdict of `bench verify` a record carries, or None (also for one that is malformed)."""
    value = _read(run_dir).get("verification")
    if not (isinstance(value, dict) and set(_VERDICT) <= value.keys() and isinstance(value["ok"], bool)
            and _sha256(value["files_sha256"]) and isinstance(value["checked"], (int, float))
            and all(isinstance(value[k], list) and all(isinstance(x, str) for x in value[k])
                    for k in ("problems", "flags"))
            and all(value[k] is None or isinstance(value[k], (int, float)) for k in ("test_acc", "recorded_acc"))):
        return None
    return value


def _kept(relative: Path) -> bool:
    """Whether a file of a finished run's folder is part of its record: not its weights, lock,
    checkpoint records or set-aside damage."""
    return not (relative.suffix == ".pt" or relative.name.endswith(".pt.sha256") or relative.name == "lock"
                or relative.name == RECORD or relative.parts[0].startswith("damaged-"))


def _files(directory: Path) -> list[Path]:
    """The files of a run's folder, relative to it (round plans included)."""
    return sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One export at a time into `out` (a second one waits)."""
    with open(out / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def export(store_root: Path, out: Path, suite: str | None = None, runs: list[str] | None = None) -> dict[str, int]:
    """Copy the records of `store_root`'s finished runs (of `suite`, or all; or only `runs`, ids or
    unique prefixes, each of which must be finished) into `out`; returns counts: added, already
    recorded, verified (of those exported), unfinished (left out)."""
    from prunebench.machine import describe, label
    from prunebench.reverify import resolve_ids
    from prunebench.store import Store

    store_root, out = Path(store_root), Path(out)
    if not paths.runs_dir(store_root).is_dir():
        raise UserError(f"no run store at {store_root} (no runs/ folder); pass --store DIR of a store that "
                        "`bench run` wrote.")
    if is_records(store_root):
        raise UserError(f"{store_root} is itself run records; export from the store the runs trained in.")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the run records.")
    if out.exists() and not is_records(out) and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a folder of run records (no {MARKER}): pass an empty or new folder, "
                        "or one `bench export` wrote.")
    if runs is not None:
        runs = resolve_ids(store_root, runs)
        _check_named(store_root, runs, suite)
    store = Store(store_root)
    try:
        verified = store.verifications()
        changed = {r["id"]: r["updated"] for r in store.query("SELECT id, updated FROM runs")}
    finally:
        store.close()
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entry = {"when": when, "from": str(store_root.resolve()), "machine": label(describe("cpu")),
             "prunebench": prunebench.__version__, "suite": suite}
    counts = {"added": 0, "already recorded": 0, "verified": 0, "unfinished": 0}
    try:
        paths.runs_dir(out).mkdir(parents=True, exist_ok=True)
        with _exclusive(out):
            if not is_records(out):  # first, so a killed export leaves records, not an unmarked folder
                write_atomic(out / MARKER, json.dumps({"what": "prunebench run records (bench export): finished runs "
                                                               "without their weights", "exports": []}, indent=1))
            try:
                _export_runs(store_root, out, suite, runs, verified, changed, {"when": when, "from": entry["from"]},
                             counts)
            finally:  # what was added is traceable to this export, also when a conflict stopped it
                exports = json.loads((out / MARKER).read_text()).get("exports", [])
                write_atomic(out / MARKER, json.dumps({"what": "prunebench run records (bench export): finished runs "
                                                               "without their weights",
                                                       "exports": [*exports, {**entry, **counts}]}, indent=1))
    except OSError as e:
        raise disk_error(Path(e.filename or out), e) from None
    return counts


def _check_named(store_root: Path, runs: list[str], suite: str | None) -> None:
    """Runs named for export must be finished runs of the store (and of `suite`, when given)."""
    for run_id in runs:
        directory = paths.runs_dir(store_root) / run_id
        if not paths.is_run_id(run_id) or not (directory / "spec.json").is_file():
            raise UserError(f"run {run_id[:12]} is not a run of store {store_root}: give run ids (or unique prefixes) "
                            "from `bench run` or `bench report`.")
        if not any((directory / name).is_file() for name in FINISHED):
            raise UserError(f"run {run_id[:12]} has not finished in store {store_root}: run `bench run` again to "
                            "finish it, then export it.")
        try:
            run_suite = json.loads((directory / "spec.json").read_text()).get("suite")
        except ValueError:
            raise UserError(f"run {run_id[:12]}'s spec.json in store {store_root} cannot be read: run `bench run` "
                            "again to repair it.") from None
        if suite is not None and run_suite != suite:
            raise UserError(f"run {run_id[:12]} is of suite {run_suite!r}, not --suite {suite}: leave out --suite or "
                            "the run.")


def _export_runs(store_root: Path, out: Path, suite: str | None, runs: list[str] | None,
                 verified: dict[str, dict[str, Any]],
                 changed: dict[str, float], exported: dict[str, str], counts: dict[str, int]) -> None:
    destination = paths.runs_dir(out)
    for stale in destination.glob(".*-*"):  # an export killed while copying a run: copy it again
        shutil.rmtree(stale, ignore_errors=True)
    results = _results(destination)
    candidates = []
    for directory in sorted(paths.runs_dir(store_root).iterdir()):
        if not paths.is_run_id(directory.name) or not (directory / "spec.json").is_file():
            continue
        if runs is not None and directory.name not in runs:
            continue
        try:
            run_suite = json.loads((directory / "spec.json").read_text()).get("suite")
        except ValueError:  # damaged: `bench run` repairs or names it; not a record
            counts["unfinished"] += 1
            continue
        if suite is not None and run_suite != suite:
            continue
        if not any((directory / name).is_file() for name in FINISHED):
            counts["unfinished"] += 1
            continue
        candidates.append(directory)
    _same_upstream(destination, [d for d in candidates if not (destination / d.name).exists()], out)
    for directory in candidates:
        files = _files(directory)
        verdict = verified.get(directory.name)
        record = {"weights": {str(p): sha256_file(directory / p) for p in files if p.suffix == ".pt"
                              and not p.parts[0].startswith("damaged-") and not p.name.startswith("checkpoint")},
                  "updated": changed.get(directory.name) or max((directory / p).stat().st_mtime for p in files),
                  "exported": exported,
                  "verification": None if verdict is None else {**{k: verdict[k] for k in _VERDICT if k != "ok"},
                                                                  "ok": bool(verdict["ok"])}}
        counts["verified"] += verdict is not None
        target = destination / directory.name
        if target.exists():
            _same(directory, target, record)
            counts["already recorded"] += 1
            continue
        result = _result(directory)
        if result is not None:
            _one_result(directory.name, result, results, out)
            results.append({**result, "run": directory.name})
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name[:12]}-", dir=destination))
        for relative in filter(_kept, files):
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(directory / relative, staging / relative)
        write_atomic(staging / RECORD, json.dumps(record, indent=1, sort_keys=True))
        staging.rename(target)
        counts["added"] += 1


def computation(run_dir: Path) -> dict[str, str | None] | None:
    """Which computation a finished run is, as results are compared by (`same_computation`):
    {"id": the id its computation record states (None without one), "key": what its spec says it
    computes}. The key comes from `spec.json` alone, which hashes to the run's id (its folder's
    name), not from the record, which a hand can strip or rewrite (`bench verify` checks it), nor
    from files it could delete (a plan, masks, its base): a base or scratch run's computation
    itself; for a pruned run, its base run, seed, recipes, penalty, rounds, method (code, settings,
    target: standing for its plan and rewind epoch, which its method decides), protected layers,
    target rule and, where the plan is chosen after a pruning phase or in the open division, the
    protocol it planned under. None for a run that is no result (no readable metrics, a spec that
    does not hash to its id)."""
    from prunebench.config import Computation, RunSpec

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        spec = RunSpec.model_validate_json((run_dir / "spec.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or spec.run_id != run_dir.name:
        return None
    record = metrics.get("computation")
    recorded = record["id"] if isinstance(record, dict) and isinstance(record.get("id"), str) else None
    common = {"kind": spec.kind, "dataset": spec.dataset, "arch": spec.arch, "seed": spec.seed,
              "arch_signature": spec.arch_signature, "phases": spec.phases, "division": spec.division}
    if spec.kind == "base":
        key = Computation(**common).id
    elif spec.kind == "scratch":
        key = Computation(**common, widths=spec.widths, masks_sha256=spec.masks_sha256).id
    else:
        chosen_late = spec.division == "open" or any(p in ("prune", "round") for p, _ in spec.phases)
        pruned = Computation(**common, penalty=spec.penalty, rounds=spec.rounds, protect=spec.protect,
                             target_rule=spec.target_rule, method=spec.method and spec.method.without_recipe)
        key = hashlib.sha256(json.dumps([pruned.id, spec.base, spec.protocol if chosen_late else None]).encode()
                             ).hexdigest()
    return {"id": recorded, "key": key}


def same_computation(a: dict[str, str | None], b: dict[str, str | None]) -> bool:
    """Whether two runs' `computation`s are one: what their specs say they compute, or the id
    both records state (one computation under two methods' names: a plan two methods share)."""
    return a["key"] == b["key"] or (a["id"] is not None and a["id"] == b["id"])


def _result(run_dir: Path) -> dict[str, Any] | None:
    """What a finished run's computation came to: which computation (`computation`), the weights'
    sha256, the test accuracy and the machine; None where its files cannot tell which computation
    it is (a violation or a failure: nothing shared)."""
    which = computation(run_dir)
    if which is None:
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    machine = metrics.get("machine")
    return {**which, "model_sha256": metrics.get("model_sha256"), "test_acc": metrics.get("test_acc"),
            "machine": machine if isinstance(machine, dict) else None}


def _results(runs_dir: Path) -> list[dict[str, Any]]:
    """The result recorded for each run in a records folder that is a result (`computation`)."""
    results = []
    for directory in sorted(runs_dir.iterdir()):
        result = _result(directory) if paths.is_run_id(directory.name) else None
        if result is not None:
            results.append({**result, "run": directory.name})
    return results


def _one_result(run_id: str, mine: dict[str, Any], results: list[dict[str, Any]], out: Path) -> None:
    """A computation is recorded with one result: a run of a computation already recorded (under
    another run id) must have come to the same weights and accuracy."""
    from prunebench.machine import label

    recorded = next((r for r in results if same_computation(mine, r) and (
        mine["model_sha256"], mine["test_acc"]) != (r["model_sha256"], r["test_acc"])), None)
    if recorded is None:
        return
    sha = lambda r: str(r["model_sha256"])[:12]  # noqa: E731
    raise UserError(f"run {run_id[:12]} is the same computation ({(mine['id'] or mine['key'])[:12]}) as run "
                    f"{recorded['run'][:12]}, recorded in {out} with another result: weights {sha(mine)}… and "
                    f"{sha(recorded)}…, test accuracy {mine['test_acc']} and {recorded['test_acc']}, trained on "
                    f"{label(mine['machine'])} and on {label(recorded['machine'])}. One computation is recorded "
                    f"with one result, whichever table it appears in: leave run {run_id[:12]} out (export the "
                    f"runs you need by id), or train it where run {recorded['run'][:12]} trained, to the same "
                    "weights.")


def _start(run_dir: Path) -> dict[str, Any] | None:
    """The base a finished pruned run started from: the base's run id and computation, and the
    weights' sha256 pinned when the run began (`base.json`); None for any other run."""
    try:
        pin = json.loads((run_dir / "base.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(pin, dict) and isinstance(pin.get("base"), str) and isinstance(pin.get("model_sha256"), str)
            and isinstance(metrics, dict)):
        return None
    computation = metrics.get("computation")
    content = computation.get("content") if isinstance(computation, dict) else None
    base = content.get("base") if isinstance(content, dict) else None
    machine = metrics.get("machine")
    return {"run": run_dir.name, "base": pin["base"], "model_sha256": pin["model_sha256"],
            "computation": base if isinstance(base, str) else None,
            "machine": machine if isinstance(machine, dict) else None}


def base_conflicts(run_dirs: list[Path]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pruned runs whose pinned base weights (`base.json`) are not those their base holds: pairs
    (the run's start, what it disagrees with) — the base run's result (`"kind": "base"`), found by
    the base's run id or computation, or where no base is among `run_dirs`, the first other pin of
    that base."""
    from prunebench.config import RunSpec

    bases: dict[str, dict[str, Any]] = {}  # by base run id and by computation: the weights held
    for directory in run_dirs:
        try:
            spec = RunSpec.model_validate_json((directory / "spec.json").read_text())
            metrics = json.loads((directory / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        if spec.kind == "base" and isinstance(metrics, dict) and isinstance(metrics.get("model_sha256"), str):
            machine = metrics.get("machine")
            held = {"model_sha256": metrics["model_sha256"], "run": directory.name, "kind": "base",
                    "machine": machine if isinstance(machine, dict) else None}
            for key in filter(None, (directory.name, (computation(directory) or {}).get("key"))):
                bases.setdefault(key, held)
    pinned: dict[str, dict[str, Any]] = {}  # by base run id and by computation: the first pin of a base not held
    conflicts = []
    for start in filter(None, map(_start, run_dirs)):
        keys = [key for key in (start["base"], start["computation"]) if key]
        other = next((bases[key] for key in keys if key in bases), None) or next(
            (pinned[key] for key in keys if key in pinned), None)
        for key in keys:
            pinned.setdefault(key, start)
        if other is not None and other["model_sha256"] != start["model_sha256"]:
            conflicts.append((start, other))
    return conflicts


def _same_upstream(destination: Path, adding: list[Path], out: Path) -> None:
    """A result rests on what it started from: the records hold one set of weights for a base (its
    run id, its computation), the base's own where it is recorded (`base_conflicts`), and a scratch
    baseline of the architecture its recorded pruned run was pruned to (`mismatched_scratch`). A
    pruned run that started from other weights (its base trained again, on a machine whose
    arithmetic differs), a base unlike the weights its recorded pruned runs started from, and a
    scratch baseline of another architecture are refused before anything is added."""
    from prunebench.machine import label

    recorded = [d for d in sorted(destination.iterdir()) if paths.is_run_id(d.name)]
    new = {d.name for d in adding}
    sha, where = lambda r: f"{r['model_sha256'][:12]}…", lambda r: label(r["machine"])  # noqa: E731
    for start, other in base_conflicts([*recorded, *adding]):
        if not {start["run"], other["run"]} & new:
            continue
        if other.get("kind") != "base":
            said = (f"runs {start['run'][:12]} and {other['run'][:12]} started from one base, run "
                    f"{start['base'][:12]} (not recorded), with other weights: {sha(start)} and {sha(other)} (trained "
                    f"on {where(start)} and on {where(other)})")
        else:
            whose = (f"its base, run {other['run'][:12]}," if other["run"] == start["base"] else
                     f"its base's computation, recorded as run {other['run'][:12]},")
            said = (f"run {start['run'][:12]} started from base weights {sha(start)}, and {whose} holds weights "
                    f"{sha(other)} (the pruned run trained on {where(start)}, the base on {where(other)})")
        raise UserError(f"{said}: a pruned run's result rests on the base it started from, so the records hold one "
                        f"set of weights for a base. Nothing was added to {out}: leave out the runs of the base "
                        "trained again (export the runs you need by id), or train them where the recorded base "
                        "trained, to the same weights.")
    for scratch, pruned in mismatched_scratch([*recorded, *adding]):
        if {scratch.name, pruned.name} & new:
            raise UserError(f"scratch baseline {scratch.name[:12]} trains another architecture than run "
                            f"{pruned.name[:12]}, its pruned run (one protocol, seed and method), was pruned to: a "
                            "scratch baseline is of the architecture its pruned run's base and method gave, so the "
                            "part that trained it must have started from the recorded base. Nothing was added to "
                            f"{out}: leave it out, or train it where the recorded base trained.")


def architecture(run_dir: Path) -> tuple[str, Any] | None:
    """What a finished pruned or scratch run trains: ("widths", {conv: filters kept}) or ("masks",
    their digest); None where its files cannot tell (a masked plan's masks left out of records
    by a run that records no plan digest, a damaged file)."""
    try:
        spec = json.loads((run_dir / "spec.json").read_text())
        if spec.get("kind") == "scratch":
            return ("widths", spec["widths"]) if spec.get("widths") else ("masks", spec.get("masks_sha256"))
        keep = json.loads((run_dir / "plan.json").read_text())
        if keep:
            return "widths", {name: len(kept) for name, kept in keep.items()}
        if (run_dir / "masks.pt").is_file():
            from prunebench.pruning import PruningPlan

            plan = PruningPlan.load(run_dir)
            return ("masks", plan.masks_sha256()) if plan is not None else None
        content = json.loads((run_dir / "metrics.json").read_text())["computation"]["content"]
        digest = content.get("plan_sha256") or ""
        return ("masks", digest.removeprefix("masks:")) if digest.startswith("masks:") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None  # a damaged file (`bench verify` names it)


def mismatched_scratch(run_dirs: list[Path]) -> list[tuple[Path, Path]]:
    """(scratch baseline, pruned run) pairs of one protocol, seed and method (its retraining
    recipe aside: scratch training ignores it) whose architectures differ."""
    from prunebench.config import RunSpec

    groups: dict[tuple, dict[str, list[Path]]] = {}
    for directory in run_dirs:
        if not (directory / "metrics.json").is_file():
            continue
        try:
            spec = RunSpec.model_validate_json((directory / "spec.json").read_text())
        except (OSError, ValueError):
            continue
        if spec.kind in ("pruned", "scratch") and spec.method is not None:
            key = (spec.protocol, spec.seed, spec.method.without_recipe.model_dump_json())
            groups.setdefault(key, {}).setdefault(spec.kind, []).append(directory)
    pairs = []
    for group in groups.values():
        for scratch in group.get("scratch", []):
            mine = architecture(scratch)
            for pruned in group.get("pruned", []):
                theirs = architecture(pruned)
                if mine is not None and theirs is not None and mine != theirs:
                    pairs.append((scratch, pruned))
    return pairs


def _same(source: Path, target: Path, record: dict[str, Any]) -> None:
    """A run already recorded must be the same record: same files, same weights."""
    ended = {name for name in FINISHED if (target / name).is_file()}
    if ended & {"failed.json", "violation.json"} and (source / "metrics.json").is_file():
        raise UserError(f"run {source.name[:12]} is recorded in {target.parent.parent} as {' and '.join(sorted(ended))} "
                        "(it failed or was stopped), and has finished since in this store (trained again): delete "
                        f"{target} and export again to record the finished run.")
    mine, theirs = [p for p in _files(source) if _kept(p)], [p for p in _files(target) if _kept(p)]
    differ = sorted({str(p) for p in set(mine) ^ set(theirs)}
                    | {str(p) for p in set(mine) & set(theirs) if not filecmp.cmp(source / p, target / p, shallow=False)})
    if weights(target) != record["weights"]:
        differ.append("the weights' sha256")
    if differ:
        raise UserError(f"run {source.name[:12]} is already recorded in {target.parent.parent} with a different result "
                        f"({', '.join(differ[:4])} differ): a run id is one computation, recorded once. If the record "
                        f"is wrong, delete {target} and export again.")
    new, old = record["verification"], verification(target)
    if new is not None and new != old and (old is None or new["checked"] > old["checked"]):
        # a later `bench verify` of the same files: the newer verdict
        write_atomic(target / RECORD, json.dumps({**_read(target), "verification": new}, indent=1, sort_keys=True))
