"""The run store: one directory per run id, plus a SQLite index for queries and reports.

A run directory holds `spec.json` (the resolved config), `plan.json` (pruned runs),
`checkpoint.pt` (latest epoch), and on completion `model.pt`, `trace.csv`, `trace.json` and
`metrics.json`, all written atomically; `metrics.json` appears last, so its presence means the
run is complete. Only the driver process writes the index; the processes that train (Ray
workers) touch run directories alone (`RunFiles`).

A run trains under its lock (`runs/<id>/lock`, an `flock`): a second `bench run` on the same
store waits for the run instead of training it twice. The kernel drops the lock when its holder
dies, and the holder's name left in the file tells that the last holder was killed mid-run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from prunebench import paths, records, stats
from prunebench._atomic import disk_error, write_atomic
from prunebench.config import RunSpec, canonical
from prunebench.errors import DamagedFile, ProtocolViolation, UserError
from prunebench.machine import label as machine_label
from prunebench.trace import Trace

T = TypeVar("T")
# SQLite errors of an index that is fine but busy, full or not writable (anything else is damage)
NOT_DAMAGE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")

SCHEMA_VERSION = 11  # PRAGMA user_version; an older index is rebuilt from the run directories
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,              -- base | pruned | scratch
    suite TEXT NOT NULL,
    protocol TEXT,                   -- 'suite/setup', NULL for base models (shared by protocols)
    setup TEXT,
    row TEXT NOT NULL,               -- the leaderboard row: dense, l1norm, 'Scratch-B of l1norm', ...
    method TEXT,
    method_code TEXT,                -- sha256 of the method's code: an edited method is a new version
    settings TEXT,                   -- JSON, non-default settings only
    ratio REAL,
    config TEXT,
    target TEXT,                     -- '0.5', '2x' (a speedup), 'config A', or '-' for base models
    speedup REAL,                    -- the speedup target (dense MACs / pruned MACs), NULL for a ratio or config
    knob REAL,                       -- at a speedup target: the ratio the harness's search found
    variant TEXT,
    recipe_of TEXT,
    division TEXT NOT NULL DEFAULT 'closed',  -- closed | open (method code inside training, ranked apart)
    sandboxed INTEGER,               -- 1 when the run's planning ran under bubblewrap, 0 when not
    method_cpu_seconds REAL,         -- CPU seconds its method's code spent (planning worker, measured from outside)
    suite_sha256 TEXT,               -- content of the suite the run was audited against (tables group by it)
    protocol_sha256 TEXT,            -- content of the protocol it was audited against (NULL for base models)
    data_fingerprint TEXT,           -- of the train and test splits it trained on (tables group by it too)
    machine TEXT,                    -- where it ran: CPU or GPU model, threads, torch version
    seed INTEGER NOT NULL,
    base TEXT,
    status TEXT NOT NULL,            -- running | done | violated | failed
    violation TEXT,
    failure TEXT,                    -- why a failed run failed (a non-finite loss, a divergence)
    test_acc REAL,                   -- last epoch, on the test set
    train_acc REAL,
    base_test_acc REAL,
    ta_train REAL,                   -- trainability accuracy (Wang et al. Eq. 1), train accuracy
    ta_test REAL,                    -- the same over test accuracy
    ta_epochs INTEGER,               -- N: the first LR stage's length of the final phase
    macs INTEGER,
    effective_macs INTEGER,
    params INTEGER,
    density REAL,
    epochs INTEGER,
    total_epochs INTEGER,
    train_flops INTEGER,
    total_train_flops INTEGER,       -- the whole pipeline's, the base's training included (SX-B counts it)
    budget_kind TEXT,                -- SX-A: epochs, SX-B: flops, NULL outside SX
    budget REAL,                     -- the SX budget the run was held to, in that unit
    seconds REAL,
    computation TEXT,                -- what it computes (Computation's id): runs of one computation trained once
    trained_in TEXT,                 -- the run whose training it is: its own id, or another run's of its computation
    spec TEXT NOT NULL,
    updated REAL NOT NULL            -- when the run was last indexed (run, or found done)
);
CREATE TABLE IF NOT EXISTS verifications (  -- the last `bench verify` of each run
    run_id TEXT PRIMARY KEY,
    ok INTEGER NOT NULL,
    problems TEXT NOT NULL,          -- JSON list: why it failed
    flags TEXT NOT NULL,             -- JSON list: what was said without failing (e.g. another machine)
    files_sha256 TEXT NOT NULL,      -- of the run's files as verified (RunFiles.digest): a later change voids it
    test_acc REAL,                   -- as re-evaluated
    recorded_acc REAL,               -- as metrics.json records it: a table showing another number is not verified
    checked REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (  -- the trace of every finished run, one row per epoch
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,           -- position in the run's trace
    phase TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    lr REAL NOT NULL,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL,
    samples INTEGER, macs INTEGER, seconds REAL,
    PRIMARY KEY (run_id, step)
);
"""
RUN_COLUMNS = ("id", "kind", "suite", "protocol", "setup", "row", "method", "method_code", "settings", "ratio", "config",
               "target", "speedup", "knob", "variant", "recipe_of", "division", "sandboxed", "method_cpu_seconds",
               "suite_sha256", "protocol_sha256", "data_fingerprint", "machine", "seed", "base", "status", "violation",
               "failure", "test_acc", "train_acc",
               "base_test_acc", "ta_train", "ta_test", "ta_epochs", "macs", "effective_macs", "params",
               "density", "epochs", "total_epochs", "train_flops", "total_train_flops", "budget_kind", "budget",
               "seconds", "computation", "trained_in", "spec", "updated")


def trainability(spec: RunSpec, trace: Trace) -> dict[str, Any]:
    """Trainability accuracy (Wang et al. Eq. 1) of a run's final phase (retraining, or a scratch
    or base model's training): mean train and test accuracy over its first LR stage."""
    phase, recipe = spec.phases[-1]
    n = stats.first_stage_epochs(recipe.lr.stages if recipe.lr.kind == "piecewise" else None, recipe.epochs)
    rows = trace.phase(phase)
    return {"ta_train": stats.trainability([r.train_acc for r in rows], n),
            "ta_test": stats.trainability([r.test_acc for r in rows], n), "ta_epochs": n}




class RunFiles:
    """The run directories of a store: everything a training process reads and writes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.records = records.is_records(self.root)  # run records (`bench export`): no weights
        if not paths.runs_dir(self.root).is_dir():
            try:
                paths.runs_dir(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise disk_error(paths.runs_dir(self.root), e) from None

    def run_dir(self, run_id: str) -> Path:
        return paths.run_dir(self.root, run_id)

    def prepare(self, spec: RunSpec) -> Path:
        """Create the run's directory and write its resolved config."""
        records.refuse(self.root, "run")  # records hold no weights: nothing trains in them
        directory = self.run_dir(spec.run_id)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise disk_error(directory, e) from None
        if not (directory / "spec.json").exists():
            write_atomic(directory / "spec.json", json.dumps(json.loads(canonical(spec)), indent=2))
        return directory

    def _read(self, run_id: str, name: str, parse: Callable[[str], T]) -> T | None:
        """The one place a run's JSON files are read: None when the file does not exist, a
        `DamagedFile` naming it when it cannot be read or parsed."""
        path = self.run_dir(run_id) / name
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise DamagedFile(path, getattr(e, "strerror", None) or str(e)) from None
        try:
            return parse(text)
        except ValidationError as e:
            if all(err["type"] == "json_invalid" for err in e.errors()):  # truncated or overwritten
                raise DamagedFile(path, str(e.errors()[0]["msg"])[:200]) from None
            # well-formed, but not what this prunebench writes: another version (or an edit), not damage
            raise UserError(f"{path} does not hold what this prunebench version writes ({e.errors()[0]['msg']} at "
                            f"'{'.'.join(map(str, e.errors()[0]['loc']))}'): it was written by another version "
                            "of prunebench, or edited. Use the version that wrote the store.") from None
        except (ValueError, TypeError, KeyError) as e:  # JSON syntax errors are ValueErrors
            raise DamagedFile(path, str(e).splitlines()[0][:200]) from None

    def spec(self, run_id: str) -> RunSpec:
        """The resolved config a stored run was started with."""
        spec = self._read(run_id, "spec.json", RunSpec.model_validate_json)
        if spec is None:
            raise DamagedFile(self.run_dir(run_id) / "spec.json", "missing")
        return spec

    def metrics(self, run_id: str) -> dict[str, Any] | None:
        """The final metrics of a completed run, or None."""
        return self._read(run_id, "metrics.json", _json_object)

    def violation(self, run_id: str) -> ProtocolViolation | None:
        """The protocol violation a run was stopped by, or None."""
        return self._read(run_id, "violation.json",
                          lambda text: ProtocolViolation(**_json_object(text)).recorded_as(run_id))

    VERIFIED_FILES = ("spec.json", "metrics.json", "model.pt", "trace.json", "plan.json", "masks.pt", "protocol.json",
                      "base.json")

    def digest(self, run_id: str) -> str:
        """sha256 over the files `bench verify` reads of a run (names and contents): a verified
        mark holds only while none of them changes."""
        h = hashlib.sha256()
        directory = self.run_dir(run_id)
        left_out = records.weights(directory) if self.records else {}  # a record's weights: their sha256
        rounds = sorted({str(p.relative_to(directory)) for p in directory.glob("rounds/*/*") if p.is_file()}
                        | {name for name in left_out if len(Path(name).parts) == 3 and name.startswith("rounds/")})
        for name in [*self.VERIFIED_FILES, *rounds]:  # an iterative run's round plans too
            path = directory / name
            if path.is_file():
                h.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
            elif name in left_out:
                h.update(name.encode() + b"\0" + bytes.fromhex(left_out[name]))
        return h.hexdigest()

    def audited(self, run_id: str) -> dict[str, Any] | None:
        """The suite and protocol content a run is (or was) audited against: `protocol.json`."""
        return self._read(run_id, "protocol.json", _json_object)

    def failure(self, run_id: str) -> str | None:
        """Why a run failed (its training went wrong), or None."""
        return self._read(run_id, "failed.json", lambda text: str(_json_object(text)["reason"]))

    def set_aside(self, run_id: str) -> Path:
        """Move a damaged run's files (all but its lock) into `damaged-<time>/` inside its
        directory, so that it trains again from the start; returns that folder."""
        directory = self.run_dir(run_id)
        aside = directory / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
        aside.mkdir()
        for path in directory.iterdir():
            if path.name != "lock" and not path.name.startswith("damaged-"):
                path.rename(aside / path.name)
        return aside

    def record_failure(self, run_id: str, reason: str) -> None:
        """Mark a run failed: `failed.json` with the reason; its checkpoints are removed (a retry,
        after deleting `failed.json`, starts over)."""
        directory = self.run_dir(run_id)
        write_atomic(directory / "failed.json", json.dumps({"reason": reason, "when": time.time()}, indent=1))
        for checkpoint in directory.glob("checkpoint*.pt"):
            checkpoint.unlink()

    def trace(self, run_id: str) -> Trace | None:
        return self._read(run_id, "trace.json", Trace.model_validate_json)

    def claim(self, run_id: str, waiting: Callable[[str], None] | None = None,
              stale: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold the run's lock while the body trains it. If another process holds it, `waiting`
        hears who, and the call blocks until that process finishes or dies; `stale` hears of a
        lock whose holder died without releasing it (a killed run, which then resumes here)."""
        return _locked(self.run_dir(run_id), "metrics.json", waiting, stale)

    def claim_computation(self, computation: str,
                          waiting: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold a computation's lock (under the run's own): two runs of one computation (two
        protocols' runs, or two scratch baselines of one architecture, in parallel) train it once."""
        return _locked(self.computation_dir(computation), "trained.json", waiting, None)

    def computation_dir(self, computation: str) -> Path:
        return paths.computations_dir(self.root) / computation

    def trained(self, computation: str) -> dict[str, Any] | None:
        """Which run trained a computation ({"run": id, "status": "done" | "failed", ...}), or None."""
        path = self.computation_dir(computation) / "trained.json"
        try:
            record = _json_object(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # a damaged record: the computation trains again, and records itself anew
        return record if isinstance(record.get("run"), str) and record.get("status") in ("done", "failed") else None

    def record_trained(self, computation: str, run_id: str, status: str, reason: str | None = None,
                       data: str | None = None, base: str | None = None) -> None:
        """The run that trained a computation (to the end, or until it failed), from which data
        (fingerprint) and base weights (sha256): later runs of the same computation, data and
        base take its result instead of training it again."""
        directory = self.computation_dir(computation)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise disk_error(directory, e) from None
        write_atomic(directory / "trained.json", json.dumps(
            {"run": run_id, "status": status, "data": data, "base": base, **({"reason": reason} if reason else {})},
            indent=1))


@contextmanager
def _locked(directory: Path, done: str, waiting: Callable[[str], None] | None,
            stale: Callable[[str], None] | None) -> Iterator[None]:
    """An `flock` on `directory/lock` for the body; the lock file goes once `directory/done` exists."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise disk_error(directory / "lock", e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting(_holder(fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
        left = _holder(fd)
        if left and stale is not None:  # a clean release empties the file
            stale(left)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        os.fsync(fd)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            if (directory / done).exists():
                # a finished run needs no lock: whoever waits on this one, or comes later,
                # finds the metrics once it holds a lock, and never trains the run again
                (directory / "lock").unlink(missing_ok=True)
    finally:
        os.close(fd)  # releases the flock


def _is_damage(e: sqlite3.DatabaseError) -> bool:
    """Whether an SQLite error means a damaged index rather than a busy, full or read-only one."""
    name = getattr(e, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return not name.startswith(NOT_DAMAGE)
    words = ("locked", "busy", "full", "readonly", "read-only", "unable to open")
    return not (isinstance(e, sqlite3.OperationalError) and any(w in str(e) for w in words))


def _writable(root: Path) -> bool:
    """Whether files can be created in the store (a real write: root ignores permission bits,
    but not a read-only mount)."""
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-probe-"):
            return True
    except OSError:
        return False


def _listed(value: Any) -> list:
    """A verdict's problems or flags: a JSON list in the index, a list in a record."""
    return json.loads(value) if isinstance(value, str) else list(value)


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, found {type(value).__name__}")
    return value


def _holder(fd: int) -> str:
    return os.pread(fd, 256, 0).decode(errors="replace").strip()


class Store(RunFiles):
    """Run directories plus the SQLite index (opened by the driver process only)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_only = self.records or not _writable(self.root)
        db = paths.db_path(self.root)
        if self.read_only:
            # reports and cached runs still work: the index is built in memory from the run
            # directories (the source of truth), and nothing is written to the store
            self._db = sqlite3.connect(":memory:")
            self._db.executescript(SCHEMA)
            self.reindex()
            return
        try:
            self._open(db)
        except sqlite3.DatabaseError as e:
            if not _is_damage(e):  # busy, full or not writable: move nothing
                raise UserError(f"cannot open the index {db}: {e}. If another bench process holds it, wait for it; "
                                "if the disk is full, free space; then run again.") from None
            # damaged (corrupt, not a database, I/O errors of a mangled file): keep it aside, rebuild
            aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{db}{suffix}").exists():
                    os.replace(f"{db}{suffix}", f"{aside}{suffix}")
            warnings.warn(f"run store {self.root}: the index {db.name} was damaged ({e}); it is kept as "
                          f"{aside.name} and was rebuilt from the run directories", stacklevel=2)
            self._open(db)

    def _open(self, db: Path) -> None:
        self._db = sqlite3.connect(db, timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._migrate()
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            self._db.close()
            raise

    def _migrate(self) -> None:
        """Rebuild an index written by an older prunebench from the run directories, in one
        transaction: another process opening the store waits, and then finds it rebuilt."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # re-read under the lock
                self._db.execute("DROP TABLE IF EXISTS runs")
                self._db.execute("DROP TABLE IF EXISTS epochs")
                self._db.execute("DROP TABLE IF EXISTS verifications")  # of the old layout: verify again
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self.reindex(commit=False)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def index(self, spec: RunSpec, status: str, metrics: dict[str, Any] | None = None,
              violation: str | None = None, commit: bool = True, updated: float | None = None,
              failure: str | None = None) -> None:
        """Record a run's state in the index; a finished run's trace goes in with it (from its
        run directory, which holds it before `metrics.json` is written)."""
        m = dict(metrics or {})
        trace = self.trace(spec.run_id) if status == "done" else None
        if trace is not None:
            m.update(trainability(spec, trace))
        method = spec.method
        computed = m.get("computation") if isinstance(m.get("computation"), dict) else {}
        values = {
            "id": spec.run_id, "kind": spec.kind, "suite": spec.suite, "protocol": spec.protocol,
            "setup": spec.protocol.split("/")[-1] if spec.protocol else None, "row": spec.row,
            "method": method.name if method else None, "method_code": method.code if method else None,
            "settings": json.dumps(method.settings, sort_keys=True) if method else None,
            "ratio": method.ratio if method else None, "config": method.config if method else None,
            "target": method.target if method else "-", "speedup": method.speedup if method else None,
            "knob": (m.get("target") or {}).get("knob") if isinstance(m.get("target"), dict) else None,
            "budget_kind": (m.get("budget") or {}).get("kind") if isinstance(m.get("budget"), dict) else None,
            "budget": (m.get("budget") or {}).get("amount") if isinstance(m.get("budget"), dict) else None,
            "variant": spec.variant, "recipe_of": spec.recipe_of,
            "division": spec.division,
            "sandboxed": (None if not isinstance(m.get("planning"), dict)
                          else int(bool(m["planning"].get("sandboxed")))),
            "method_cpu_seconds": (m["planning"].get("method_cpu_seconds") if isinstance(m.get("planning"), dict)
                                   else None),
            "suite_sha256": m.get("suite_sha256"), "protocol_sha256": m.get("protocol_sha256"),
            "data_fingerprint": m.get("data_fingerprint"),
            "machine": machine_label(m["machine"]) if isinstance(m.get("machine"), dict) else None,
            "seed": spec.seed, "base": spec.base, "status": status, "violation": violation, "failure": failure,
            **{k: m.get(k) for k in ("test_acc", "train_acc", "base_test_acc", "ta_train", "ta_test", "ta_epochs",
                                     "macs", "params", "density", "epochs", "total_epochs", "train_flops",
                                     "total_train_flops", "seconds")},
            "effective_macs": m.get("effective_macs", m.get("macs")),
            "computation": computed.get("id"), "trained_in": computed.get("trained_in"),
            "spec": canonical(spec), "updated": updated or time.time(),
        }
        db = self._db
        db.execute(f"INSERT OR REPLACE INTO runs ({','.join(RUN_COLUMNS)}) "
                   f"VALUES ({','.join('?' * len(RUN_COLUMNS))})", [values[c] for c in RUN_COLUMNS])
        db.execute("DELETE FROM epochs WHERE run_id = ?", (spec.run_id,))
        if trace is not None:
            db.executemany(
                "INSERT INTO epochs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(spec.run_id, i, r.phase, r.epoch, r.lr, r.train_loss, r.train_acc, r.test_loss, r.test_acc,
                  r.samples, r.macs, r.seconds) for i, r in enumerate(trace.rows)])
        if commit:
            try:
                db.commit()
            except sqlite3.OperationalError as e:  # e.g. "database or disk is full"
                raise UserError(f"cannot update the index {paths.db_path(self.root)}: {e}. Free space and run "
                                "again; the run directories hold every result, and the index is rebuilt from "
                                "them if needed.") from None

    def record_verifications(self, verdicts: list) -> None:
        """Keep what `bench verify` found (`reverify.Verdict`s); the report marks rows with it."""
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO verifications VALUES (?,?,?,?,?,?,?,?)",
                [(v.run_id, int(v.ok), json.dumps(v.problems), json.dumps(v.flags), v.files_sha256, v.test_acc,
                  v.recorded_acc, time.time()) for v in verdicts])
            self._db.commit()
        except sqlite3.OperationalError as e:
            raise UserError(f"cannot record the verification in {paths.db_path(self.root)}: {e}.") from None

    def verifications(self) -> dict[str, dict[str, Any]]:
        """The last verification of each run that still holds: its files are unchanged since."""
        out = {}
        rows = [{**v, "run_id": d.name} for d in paths.runs_dir(self.root).iterdir()
                if paths.is_run_id(d.name) and (v := records.verification(d)) is not None] if self.records else self.query("SELECT * FROM verifications")
        for row in rows:
            try:
                current = self.digest(row["run_id"])
            except OSError:
                continue
            if current == row["files_sha256"]:
                out[row["run_id"]] = {**dict(row), "problems": _listed(row["problems"]), "flags": _listed(row["flags"])}
        return out

    def reindex(self, commit: bool = True) -> int:
        """Rebuild the index from the run directories (the source of truth): finished runs from
        their metrics and trace, violated ones from their violation record, the rest as
        'running' (started, not finished). A directory this version cannot read (e.g. written
        by a much older prunebench) is skipped with a warning. Returns the number indexed."""
        count = 0
        for directory in sorted(paths.runs_dir(self.root).iterdir()):
            if directory.name.startswith(".") or not (directory / "spec.json").exists():
                continue  # no run (an export's staging folder, say)
            try:
                spec = self.spec(directory.name)
                if spec.run_id != directory.name:
                    raise ValueError("its spec.json does not hash to the directory's name")
                # when the run last changed, so the report's "latest version" survives a rebuild (a
                # record keeps the time of the store it came from: a clone or export resets mtimes)
                when = (self.records and records.updated(directory)) or max(f.stat().st_mtime
                                                                             for f in directory.iterdir())
                metrics = self.metrics(directory.name)
                try:  # which protocol's table a run that did not finish belongs to
                    audited = (self.audited(directory.name) or {}) if metrics is None else {}
                except DamagedFile:
                    audited = {}
                if metrics is not None:
                    self.index(spec, "done", metrics, commit=commit, updated=when)
                elif (v := self.violation(directory.name)) is not None:
                    self.index(spec, "violated", audited, violation=str(v), commit=commit, updated=when)
                elif (reason := self.failure(directory.name)) is not None:
                    self.index(spec, "failed", audited, failure=reason, commit=commit, updated=when)
                else:
                    self.index(spec, "running", audited, commit=commit, updated=when)
            except (OSError, ValueError, TypeError, KeyError, DamagedFile) as e:  # pydantic's are ValueErrors
                warnings.warn(f"run store {self.root}: not indexing {directory.name[:12]}: {e}", stacklevel=2)
                continue
            count += 1
        return count

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        self._db.row_factory = sqlite3.Row
        return list(self._db.execute(sql, args))

    def close(self) -> None:
        self._db.close()
