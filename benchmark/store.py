"""The run store: one directory per run id, plus a SQLite index for queries and reports.

A run directory holds `spec.json` (the resolved config), `plan.json` (pruned runs),
`checkpoint.pt` (latest epoch), and on completion `model.pt`, `trace.csv`, `trace.json` and
`metrics.json`, all written atomically; `metrics.json` appears last, so its presence means the
run is complete. Only the driver process writes the index.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from benchmark import paths
from benchmark.config import RunSpec, canonical

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    suite TEXT NOT NULL,
    protocol TEXT,
    method TEXT,
    ratio REAL,
    config TEXT,
    variant TEXT,
    seed INTEGER NOT NULL,
    base TEXT,
    status TEXT NOT NULL,
    violation TEXT,
    test_acc REAL,
    train_acc REAL,
    macs INTEGER,
    params INTEGER,
    epochs INTEGER,
    train_flops INTEGER,
    spec TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        paths.runs_dir(self.root).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(paths.db_path(self.root))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def run_dir(self, run_id: str) -> Path:
        return paths.run_dir(self.root, run_id)

    def prepare(self, spec: RunSpec) -> Path:
        """Create the run's directory and write its resolved config."""
        directory = self.run_dir(spec.run_id)
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / "spec.json").exists():
            write_atomic(directory / "spec.json", json.dumps(json.loads(canonical(spec)), indent=2))
        return directory

    def spec(self, run_id: str) -> RunSpec:
        """The resolved config a stored run was started with."""
        return RunSpec.model_validate_json((self.run_dir(run_id) / "spec.json").read_text())

    def metrics(self, run_id: str) -> dict[str, Any] | None:
        """The final metrics of a completed run, or None."""
        path = self.run_dir(run_id) / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else None

    def violation(self, run_id: str) -> dict[str, Any] | None:
        path = self.run_dir(run_id) / "violation.json"
        return json.loads(path.read_text()) if path.exists() else None

    def index(self, spec: RunSpec, status: str, metrics: dict[str, Any] | None = None,
              violation: str | None = None) -> None:
        m = metrics or {}
        method = spec.method
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (spec.run_id, spec.kind, spec.suite, spec.protocol,
                 method.name if method else None, method.ratio if method else None,
                 method.config if method else None, spec.variant, spec.seed, spec.base, status,
                 violation, m.get("test_acc"), m.get("train_acc"), m.get("macs"), m.get("params"),
                 m.get("epochs"), m.get("train_flops"), canonical(spec), time.time()),
            )

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        self._db.row_factory = sqlite3.Row
        return list(self._db.execute(sql, args))

    def close(self) -> None:
        self._db.close()
