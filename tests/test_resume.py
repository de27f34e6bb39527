"""`kill -9` in the middle of a run, then the same command: it resumes and ends where an
uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CMD = [sys.executable, "-m", "prunebench.cli", "run", "--protocol", "SX-B", "--suite", "synth-small",
       "--method", "l1norm", "--seeds", "0", "--json"]


def bench(store: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(CMD + ["--store", str(store)], env=env, capture_output=True, text=True, timeout=300)


def final_state(store: Path) -> dict:
    out = {}
    for run in sorted((store / "runs").iterdir()):
        metrics = json.loads((run / "metrics.json").read_text())
        trace = json.loads((run / "trace.json").read_text())["rows"]
        for row in trace:
            row.pop("seconds")
        out[run.name] = (metrics["test_acc"], metrics["train_flops"], trace)
    return out


def test_kill_9_then_rerun_resumes_and_matches_an_uninterrupted_run(user_protocols, tmp_path):
    env = {**os.environ, "PRUNEBENCH_PROTOCOLS": str(user_protocols)}
    clean = bench(tmp_path / "clean", env)
    assert clean.returncode == 0, clean.stderr

    store = tmp_path / "killed"
    proc = subprocess.Popen(CMD + ["--store", str(store)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and victim is None:
        for path in store.glob("runs/*/checkpoint.pt"):
            victim = path.parent
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert victim is not None, "no checkpoint appeared"
    assert not (victim / "metrics.json").exists(), "killed too late: the run had finished"

    again = bench(store, env)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    assert final_state(store) == final_state(tmp_path / "clean")
    assert json.loads(again.stdout) == json.loads(clean.stdout.replace(str(tmp_path / "clean"), str(store)))
