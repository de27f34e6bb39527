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


def test_a_resumed_run_counts_the_seconds_of_its_epochs_trained_before(user_protocols, tmp_path, monkeypatch):
    """`seconds` in metrics.json is a run's wall time over every process that trained it: an epoch
    trained before the process stopped (here one said to take 10,000 s) counts in the resumed run's."""
    import pytest

    from prunebench import train
    from prunebench.protocol_files import load_protocol
    from prunebench.runner import Harness

    protocol, _, sha = load_protocol("S2", "synth-small")
    real, calls = train._train_epoch, []

    def slow_then_stopped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        row = real(*args, **kwargs)
        return row.model_copy(update={"seconds": row.seconds + 1e4})

    def bench() -> None:
        h = Harness(protocol, store=tmp_path / "store", protocol_sha256=sha, device="cpu", progress=False,
                    log=lambda m: None)
        list(h.run(["l1norm"], seeds=[0]))

    monkeypatch.setattr(train, "_train_epoch", slow_then_stopped)
    with pytest.raises(KeyboardInterrupt):
        bench()
    (base,) = [r for r in (tmp_path / "store" / "runs").iterdir() if (r / "checkpoint.pt").is_file()]
    monkeypatch.setattr(train, "_train_epoch", real)
    bench()
    seconds = [row["seconds"] for row in json.loads((base / "trace.json").read_text())["rows"]]
    assert seconds[0] >= 1e4 and all(s < 1e3 for s in seconds[1:])  # the first epoch, trained before the stop
    assert json.loads((base / "metrics.json").read_text())["seconds"] >= sum(seconds)
