"""Run records: a store's finished runs without their weights, to commit a leaderboard that was
trained in parts (one store per machine or session) and to report from all of the parts.

`bench export --store STORE --out DIR` copies the record of every finished run — spec, plan and
round plans, trace, metrics, what it was audited against (`protocol.json`, `base.json`), a
violation or a failure — into `DIR/runs/<id>/`, and writes `record.json` beside them: the sha256
of each weight file left out (`model.pt`, `masks.pt`) and the run's last `bench verify` verdict
while the files it verified are unchanged. `DIR/records.json` marks DIR as records and lists the
exports that filled it (when, from which store, on which machine).

DIR is a read-only store: `bench report --store DIR` builds its index in memory from the run
directories; a run is marked verified while its files, with the recorded weights' sha256, still
hash to what the verifier saw (`Store.digest`). `bench run` and `bench verify` refuse DIR: there
are no weights to train from or re-derive. Exports add up: a run already in DIR must be the same
record (one run id is one computation); a different one is an error, never a silent overwrite.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import prunebench
from prunebench import paths
from prunebench._atomic import disk_error, sha256_file, write_atomic
from prunebench.errors import UserError
from prunebench.machine import describe, label

MARKER = "records.json"  # at the root: this folder holds run records, not a store to train in
RECORD = "record.json"  # in each run's folder
WEIGHTS = ("model.pt", "masks.pt")  # left out; their sha256 kept (the files `bench verify` reads)
FINISHED = ("metrics.json", "violation.json", "failed.json")


def is_records(root: Path) -> bool:
    return (Path(root) / MARKER).is_file()


def refuse(root: Path, command: str) -> None:
    """`bench run`/`crossval`/`verify` cannot work on records: say what to do instead."""
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


def weights(run_dir: Path) -> dict[str, str]:
    """The sha256 of the weight files a record left out (empty for a run folder of a store)."""
    value = _read(run_dir).get("weights")
    return value if isinstance(value, dict) else {}


def verification(run_dir: Path) -> dict[str, Any] | None:
    """The verdict of `bench verify` a record carries, or None."""
    value = _read(run_dir).get("verification")
    return value if isinstance(value, dict) and {"files_sha256", "problems", "flags"} <= value.keys() else None


def _kept(path: Path) -> bool:
    """Whether a file of a finished run's folder is part of its record: not its weights, lock,
    leftover checkpoints or set-aside damage."""
    return not (path.suffix == ".pt" or path.name.endswith(".pt.sha256") or path.name == "lock")


def _record_files(directory: Path) -> list[Path]:
    """The files of a run's record, relative to its folder (round plans included)."""
    out = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not relative.parts[0].startswith("damaged-") and _kept(path) and path.name != RECORD:
            out.append(relative)
    return out


def export(store_root: Path, out: Path, suite: str | None = None, log=print) -> dict[str, int]:
    """Copy the records of `store_root`'s finished runs (of `suite`, or all) into `out`; returns
    counts: added, already there, unfinished (left out)."""
    from prunebench.store import Store

    store_root, out = Path(store_root), Path(out)
    if not paths.runs_dir(store_root).is_dir():
        raise UserError(f"no run store at {store_root} (no runs/ folder); pass --store DIR of a store that "
                        "`bench run` wrote.")
    if is_records(store_root):
        raise UserError(f"{store_root} is itself run records; export from the store the runs trained in.")
    if out.exists() and not is_records(out) and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a folder of run records (no {MARKER}): pass an empty or new folder, "
                        "or one `bench export` wrote.")
    store = Store(store_root)
    try:
        verified = store.verifications()
    finally:
        store.close()
    counts = {"added": 0, "already recorded": 0, "unfinished": 0}
    destination = paths.runs_dir(out)
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(destination, e) from None
    for stale in destination.glob(".*-*"):  # an export killed while copying a run: copy it again
        shutil.rmtree(stale, ignore_errors=True)
    for directory in sorted(paths.runs_dir(store_root).iterdir()):
        if not paths.is_run_id(directory.name) or not (directory / "spec.json").is_file():
            continue
        if suite is not None and json.loads((directory / "spec.json").read_text()).get("suite") != suite:
            continue
        if not any((directory / name).is_file() for name in FINISHED):
            counts["unfinished"] += 1
            continue
        record = {"weights": {name: sha256_file(directory / name) for name in WEIGHTS if (directory / name).is_file()},
                  "verification": _verdict(verified.get(directory.name))}
        target = destination / directory.name
        if target.exists():
            _same(directory, target, record)
            counts["already recorded"] += 1
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name[:12]}-", dir=destination))
        for relative in _record_files(directory):
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(directory / relative, staging / relative)
        write_atomic(staging / RECORD, json.dumps(record, indent=1, sort_keys=True))
        staging.rename(target)
        counts["added"] += 1
    marker = out / MARKER
    log_entry = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "from": str(store_root.resolve()),
                 "machine": label(describe("cpu")), "prunebench": prunebench.__version__, "suite": suite, **counts}
    exports = json.loads(marker.read_text())["exports"] if marker.is_file() else []
    write_atomic(marker, json.dumps({"what": "prunebench run records (bench export): finished runs without their "
                                             "weights", "exports": [*exports, log_entry]}, indent=1))
    return counts


def _verdict(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {**{k: row[k] for k in ("problems", "flags", "files_sha256", "test_acc", "recorded_acc", "checked")
               if k in row}, "ok": bool(row["ok"])}


def _same(source: Path, target: Path, record: dict[str, Any]) -> None:
    """A run already recorded must be the same record: same files, same weights."""
    mine, theirs = _record_files(source), _record_files(target)
    differ = sorted({str(p) for p in set(mine) ^ set(theirs)}
                    | {str(p) for p in set(mine) & set(theirs) if not filecmp.cmp(source / p, target / p, shallow=False)})
    if weights(target) != record["weights"]:
        differ.append("the weights' sha256")
    if differ:
        raise UserError(f"run {source.name[:12]} is already recorded in {target.parent.parent} with a different result "
                        f"({', '.join(differ[:4])} differ): a run id is one computation, recorded once. If the record "
                        f"is wrong, delete {target} and export again.")
    if record["verification"] is not None and verification(target) != record["verification"]:
        # a later `bench verify` of the same files: keep the newer verdict
        write_atomic(target / RECORD, json.dumps(record, indent=1, sort_keys=True))
