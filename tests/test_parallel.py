"""Many runs at once: the Ray executor against the sequential one, a driver killed mid-grid, two
`bench run` processes on one store, and the per-run lock underneath."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prunebench._atomic import sha256_file
from prunebench.protocol_files import load_protocol
from prunebench.runner import Harness
from prunebench.store import RunFiles

GRID = ["run", "--protocol", "SX-B", "--suite", "synth-small", "--method", "l1norm", "--method", "random",
        "--seeds", "0", "1"]
EPOCH_LINE = re.compile(r"^  (?P<run>.+): (?P<phase>\w+) epoch (?P<epoch>\d+)/\d+, ", re.M)


def bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "prunebench.cli", *args]


def finished(store: Path) -> dict[str, tuple[str, float, int]]:
    """run id -> (model sha256, test accuracy, epochs) of every finished run."""
    out = {}
    for run in (store / "runs").glob("*"):
        if (run / "metrics.json").exists():
            m = json.loads((run / "metrics.json").read_text())
            out[run.name] = (sha256_file(run / "model.pt"), m["test_acc"], m["epochs"])
    return out


def trained_here(store: Path) -> dict[str, int]:
    """run id -> epochs it trained itself (0: it took another run's training of the same computation)."""
    out = {}
    for metrics in (store / "runs").glob("*/metrics.json"):
        m = json.loads(metrics.read_text())
        out[metrics.parent.name] = m["epochs"] if m["computation"]["trained_in"] == metrics.parent.name else 0
    return out


def epochs_logged(*logs: str) -> collections.Counter:
    """How often each (run, phase, epoch) was reported trained (reported once its checkpoint is written)."""
    return collections.Counter((m["run"], m["phase"], m["epoch"]) for log in logs for m in EPOCH_LINE.finditer(log))


def test_ray_executor_gives_the_sequential_results(user_protocols, tmp_path):
    ray = pytest.importorskip("ray")
    from prunebench.executor import RayExecutor

    protocol, _, sha = load_protocol("SX-B", "synth-small")
    lines: list[str] = []
    parallel = Harness(protocol, store=tmp_path / "ray", protocol_sha256=sha, device="cpu", log=lines.append,
                       executor=RayExecutor(num_cpus=2))
    try:
        rows_ray = parallel.run(["l1norm", "random"], seeds=[0, 1])
    finally:
        ray.shutdown()
    # a Ray task trains with one thread (OMP_NUM_THREADS = its one CPU); the floating-point
    # summation order, and so the last bits, depend on the thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sequential = Harness(protocol, store=tmp_path / "seq", protocol_sha256=sha, device="cpu", progress=False,
                             log=lambda m: None)
        rows_seq = sequential.run(["l1norm", "random"], seeds=[0, 1])
    finally:
        torch.set_num_threads(threads)

    assert finished(tmp_path / "ray") == finished(tmp_path / "seq")  # bit-identical models
    assert len(finished(tmp_path / "ray")) == 2 + 2 * 2 * 2  # bases, pruned and Scratch-B runs
    # the same rows in the same order, each row's runs by seed, whatever order Ray finished them in
    key = [(r["row"], [(s["seed"], s["run_id"], s["test_acc"]) for s in r["per_seed"]]) for r in rows_seq]
    assert [(r["row"], [(s["seed"], s["run_id"], s["test_acc"]) for s in r["per_seed"]]) for r in rows_ray] == key
    assert all([s["seed"] for s in r["per_seed"]] == [0, 1] for r in rows_ray)
    assert json.dumps(rows_ray) == json.dumps(rows_seq)
    # bases were started first, and every run was started before it was reported done
    started = [line for line in lines if " training " in line]
    assert [("dense" in line) for line in started] == [True] * 2 + [False] * 8
    assert lines[-1].startswith("[10/10 done, 0 running, 0 queued] done ")
    # the driver wrote the index: every run is there, done
    db = sqlite3.connect(tmp_path / "ray" / "index.sqlite")
    assert db.execute("SELECT count(*), min(status), max(status) FROM runs").fetchone() == (10, "done", "done")


def test_driver_killed_mid_grid_then_rerun_loses_nothing_and_trains_nothing_twice(user_protocols, tmp_path):
    store = tmp_path / "store"
    cmd = bench(*GRID, "--store", str(store))
    log1 = tmp_path / "first.log"
    with open(log1, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=os.environ.copy())
    deadline = time.time() + 240
    # kill in the middle of a run, once one base and one pruned run are finished
    while time.time() < deadline:
        text = log1.read_text()
        if text.count("] done ") >= 2 and any(store.glob("runs/*/checkpoint.pt")):
            break
        assert proc.poll() is None, f"finished before the kill:\n{text}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = log1.read_text()
    killed = [p.parent.name for p in store.glob("runs/*/checkpoint.pt")]
    assert killed and len(finished(store)) < 10, "the kill came too late to interrupt anything"

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert again.returncode == 0, again.stderr
    assert f"(run {killed[0][:12]})" in again.stderr and "resuming" in again.stderr
    assert "is stale (that process was killed)" in again.stderr

    done = finished(store)
    assert len(done) == 10  # nothing lost
    counts = epochs_logged(first, again.stderr)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]  # nothing trained twice
    own = trained_here(store)
    assert sum(counts.values()) == sum(own.values())  # every epoch trained once
    # Scratch-B of random at ratio 0.5 is Scratch-B of l1norm's computation (equal widths): trained once a seed
    assert sorted(own.values()).count(0) == 2
    # a run the first process finished is a cache hit the second time: it never reports an epoch again
    assert sum(epochs_logged(again.stderr).values()) < sum(counts.values())


def test_two_processes_on_one_store_train_each_run_once(user_protocols, tmp_path):
    store = tmp_path / "store"
    cmd = bench(*GRID, "--store", str(store), "--json")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    counts = epochs_logged(*(err for _, err in outs))
    done = finished(store)
    assert len(done) == 10
    assert max(counts.values()) == 1  # no run trained by both
    own = trained_here(store)
    assert sum(counts.values()) == sum(own.values())  # and no computation twice (the computation's lock)
    assert sorted(own.values()).count(0) == 2  # Scratch-B of random: Scratch-B of l1norm's training, per seed
    # both processes report the same results, and the index is whole
    assert json.loads(outs[0][0]) == json.loads(outs[1][0])
    db = sqlite3.connect(store / "index.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*), count(DISTINCT id), max(status) FROM runs").fetchone() == (10, 10, "done")


HOLD = """
import sys, time
from prunebench.store import RunFiles
with RunFiles(sys.argv[1]).claim("r1"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_run_lock_waits_for_a_live_holder_and_detects_a_killed_one(tmp_path):
    files = RunFiles(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    heard: dict[str, str] = {}
    began = time.monotonic()
    with files.claim("r1", waiting=lambda who: heard.setdefault("waiting", who),
                     stale=lambda who: heard.setdefault("stale", who)):
        waited = time.monotonic() - began
    holder.wait()
    assert heard == {"waiting": heard["waiting"]} and f"pid {holder.pid} on " in heard["waiting"]
    assert waited > 0.5  # blocked until the holder let go; a clean release leaves no stale mark

    victim = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "60"], stdout=subprocess.PIPE, text=True)
    assert victim.stdout.readline() == "held\n"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    heard.clear()
    with files.claim("r1", waiting=lambda who: heard.setdefault("waiting", who),
                     stale=lambda who: heard.setdefault("stale", who)):
        pass
    assert set(heard) == {"stale"} and f"pid {victim.pid} on " in heard["stale"]


def test_ray_driver_killed_mid_grid_then_rerun_finishes_with_the_same_models(user_protocols, tmp_path):
    pytest.importorskip("ray")
    store = tmp_path / "store"
    cmd = bench(*GRID, "--store", str(store), "--executor", "ray")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 240
    while time.time() < deadline and not (len(finished(store)) >= 3 and any(store.glob("runs/*/checkpoint.pt"))):
        assert proc.poll() is None, "the grid finished before the kill"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # the driver; its local Ray instance and tasks go with it
    proc.wait()
    assert 3 <= len(finished(store)) < 10
    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert again.returncode == 0, again.stderr

    protocol, _, sha = load_protocol("SX-B", "synth-small")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray task trains
    try:
        Harness(protocol, store=tmp_path / "seq", protocol_sha256=sha, device="cpu", progress=False,
                log=lambda m: None).run(["l1norm", "random"], seeds=[0, 1])
    finally:
        torch.set_num_threads(threads)
    assert finished(store) == finished(tmp_path / "seq")  # nothing lost, every model as if never killed
    db = sqlite3.connect(store / "index.sqlite")
    assert db.execute("SELECT count(*), min(status), max(status) FROM runs").fetchone() == (10, "done", "done")
