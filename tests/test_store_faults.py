"""Damaged store files: each is a clear error naming the file, or a repair that says so."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from prunebench.cli import main
from prunebench.store import Store
from tests.test_faults import harness

# --- damaged store files --------------------------------------------------------------------------

def finished_runs(store: Path) -> dict[str, tuple[str, float]]:
    out = {}
    for run in (store / "runs").iterdir():
        if (run / "metrics.json").is_file():
            m = json.loads((run / "metrics.json").read_text())
            out[run.name] = (m["model_sha256"], m["test_acc"])
    return out


@pytest.fixture
def trained(user_protocols, tmp_path_factory):
    """A finished S2 grid (a base and l1norm, seed 0), copied fresh for each test."""
    store = tmp_path_factory.mktemp("trained") / "store"
    h = harness(store)
    rows = h.run(["l1norm"], seeds=[0])
    return store, rows, h.base_spec(0).run_id, rows[1]["run_ids"][0]


def rerun(store: Path) -> tuple[list[dict], list[str]]:
    logged: list[str] = []
    h = harness(store, log=logged.append)
    return h.run(["l1norm"], seeds=[0]), logged


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
@pytest.mark.parametrize("which, name", [("base", "metrics.json"), ("base", "model.pt"), ("base", "trace.json"),
                                         ("pruned", "metrics.json"), ("pruned", "model.pt"),
                                         ("pruned", "trace.json"), ("pruned", "plan.json")])
def test_a_damaged_finished_run_is_retrained_after_saying_so(trained, damage, which, name):
    store, rows, base_id, pruned_id = trained
    before = finished_runs(store)
    run = store / "runs" / (base_id if which == "base" else pruned_id)
    path = run / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(random.Random(len(name)).randbytes(200))  # fixed bytes: the same test every run
    again, logged = rerun(store)
    assert finished_runs(store) == before  # retrained to the same numbers (deterministic on one machine)
    assert again == rows
    if (name, damage) == ("metrics.json", "delete"):
        return  # without metrics the run is simply unfinished: it trains again
    assert any(f"{name} is damaged" in line and "retrained" in line for line in logged), logged
    assert (run / "spec.json").exists() and (list(run.glob(f"damaged-*/{name}")) or damage == "delete")
    assert list(run.glob("damaged-*/*"))  # the damaged files are kept aside, not deleted


def test_a_swapped_but_readable_base_model_is_still_a_violation(trained):
    import torch

    from prunebench.errors import ProtocolViolation

    store, _, base_id, _ = trained
    path = store / "runs" / base_id / "model.pt"
    state = torch.load(path)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, path)
    with pytest.raises(ProtocolViolation, match="sha256"):
        harness(store).run(["l1norm"], seeds=[0], ratio=0.25)
    # "marked violated" is true: the run directory and the index say so, and no table ranks it
    assert json.loads((store / "runs" / base_id / "violation.json").read_text())["rule"].startswith("model file")
    (row,) = Store(store).query("SELECT status FROM runs WHERE id = ?", (base_id,))
    assert row["status"] == "violated"


def test_damaged_records_of_a_run_are_set_aside_and_the_run_goes_on(trained):
    store, rows, _, pruned_id = trained
    run = store / "runs" / pruned_id
    (run / "failed.json").write_text('{"reason": "trunc')
    again, logged = rerun(store)
    assert again == rows and (run / "failed.json.damaged").exists()
    assert any("failed.json is damaged" in line for line in logged)


def test_a_file_of_another_prunebench_version_is_an_error_not_a_repair(trained):
    from prunebench.errors import UserError

    store, _, _, pruned_id = trained
    path = store / "runs" / pruned_id / "trace.json"
    data = json.loads(path.read_text())
    data["rows"][0]["from_the_future"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="another version of prunebench"):
        rerun(store)
    assert path.exists() and not list(path.parent.glob("damaged-*"))  # nothing moved


def test_compare_names_a_damaged_spec(trained, capsys):
    store, _, _, pruned_id = trained
    (store / "runs" / pruned_id / "spec.json").write_text("{")
    assert main(["compare", pruned_id, pruned_id, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "spec.json is damaged" in err and "Traceback" not in err


def test_a_damaged_index_is_kept_aside_and_rebuilt(trained):
    store, rows, _, _ = trained
    db = store / "index.sqlite"
    before = {r["id"]: r["status"] for r in Store(store).query("SELECT id, status FROM runs")}
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[:100] + random.Random(1).randbytes(4000))
    with pytest.warns(UserWarning, match="damaged"):
        s = Store(store)
    assert {r["id"]: r["status"] for r in s.query("SELECT id, status FROM runs")} == before
    assert list(store.glob("index.sqlite.damaged-*"))


def test_a_leftover_checkpoint_of_a_finished_run_is_removed(trained):
    store, rows, _, pruned_id = trained
    run = store / "runs" / pruned_id
    (run / "checkpoint.pt").write_bytes(b"left by a kill between metrics.json and the clean-up")
    again, _ = rerun(store)
    assert again == rows and not (run / "checkpoint.pt").exists()


@pytest.mark.parametrize("name", ["checkpoint.pt", "plan.json"])
def test_a_damaged_file_of_an_unfinished_run_is_discarded_and_the_run_goes_on(trained, name):
    store, rows, _, pruned_id = trained
    run = store / "runs" / pruned_id
    before = finished_runs(store)
    # make the pruned run unfinished again, with a damaged checkpoint or plan
    for f in ("metrics.json", "model.pt", "trace.json", "trace.csv"):
        (run / f).unlink()
    (run / name).write_bytes(b"\x00PK garbage")
    again, logged = rerun(store)
    assert any(name in line and "damaged" in line for line in logged), logged
    assert finished_runs(store) == before and again == rows


@pytest.fixture
def read_only(tmp_path):
    """Make a folder read-only for this process: a read-only bind mount when running as root (root
    ignores permission bits), else permission bits. Yields a function of the folder that returns
    the read-only path."""
    mounted: list[Path] = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for p in [folder, *folder.rglob("*")]:
                os.chmod(p, 0o555 if p.is_dir() else 0o444)
            return folder
        view = tmp_path / "read-only-view"
        view.mkdir()
        ok = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True).returncode == 0
        if not ok:
            pytest.skip("root cannot bind-mount here, and permission bits do not stop root")
        mounted.append(view)
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        return view

    yield make
    for view in mounted:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)  # lazily: the test may hold files open


def test_a_read_only_store_serves_report_and_cached_runs(trained, tmp_path, read_only, capsys):
    store, rows, _, _ = trained
    view = read_only(store)
    with pytest.raises(OSError):
        (view / "probe").write_text("x")  # really read-only
    again, logged = rerun(view)
    assert again == rows  # cache hits, the index not written
    assert main(["report", "--store", str(view), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").exists()
    code = main(["run", "--protocol", "S2", "--suite", "synth-small", "--method", "random", "--seeds", "0",
                 "--store", str(view)])
    err = capsys.readouterr().err
    assert code == 2 and "the store is read-only here" in err and "Traceback" not in err


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(user_protocols, tmp_path, capsys):
    """/dev/full answers every write with ENOSPC: the checkpoint's temporary file points there."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    store = tmp_path / "store"
    h = harness(store)
    base = h.base_spec(0)
    run = store / "runs" / base.run_id
    run.mkdir(parents=True)
    tmp = run / f"checkpoint.pt.{os.getpid()}.tmp"  # the temporary file bench (this process) writes first
    tmp.symlink_to("/dev/full")
    code = main(["run", "--protocol", "S2", "--suite", "synth-small", "--method", "l1norm", "--seeds", "0",
                 "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2 and "no space left to write" in err and "checkpoint.pt" in err and "Traceback" not in err
    assert not tmp.exists() and not tmp.is_symlink() and not (run / "checkpoint.pt").exists()
    # with space again, the same command trains and finishes
    assert main(["run", "--protocol", "S2", "--suite", "synth-small", "--method", "l1norm", "--seeds", "0",
                 "--store", str(store)]) == 0


def test_a_busy_index_is_not_mistaken_for_a_damaged_one(trained):
    """Another process holding the index (here: a write transaction, and a 0 s wait) is a clear error;
    nothing is moved aside."""
    import sqlite3

    from prunebench import store as store_module
    from prunebench.errors import UserError

    store, _, _, _ = trained
    holder = sqlite3.connect(store / "index.sqlite", isolation_level=None)
    holder.execute("PRAGMA user_version = 3")  # an older index: opening it rebuilds it, which needs the write lock
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:
        connect = sqlite3.connect
        store_module.sqlite3.connect = lambda *a, **k: connect(*a, **{**k, "timeout": 0})
        with pytest.raises(UserError, match="database is locked"):
            Store(store)
    finally:
        store_module.sqlite3.connect = connect
        holder.rollback()
        holder.close()
    assert not list(store.glob("index.sqlite.damaged-*"))
