"""Closed and open divisions: method code never runs in the training process unless the grid says
`--division open`, and then every run says so. Each class of cheat (tests/plugins/cheats.py) is
refused in the closed division or has no effect on its result."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunebench.cli import main
from prunebench.errors import ProtocolViolation, UserError
from prunebench.planning import bwrap_problem
from prunebench.protocol_files import load_protocol
from prunebench.runner import Harness
from tests.plugins import CHEATS

HAS_BWRAP = not bwrap_problem()
# CI installs bubblewrap: there the sandboxed path must be the one tested
assert HAS_BWRAP or not os.environ.get("PRUNEBENCH_REQUIRE_BWRAP"), "bubblewrap (bwrap) is not installed"


def harness(setup: str, store: Path, **kw) -> Harness:
    protocol, _, sha = load_protocol(setup, "synth-small")
    kw.setdefault("plugins", (CHEATS,))
    return Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None,
                   **kw)


def accuracies(rows: list[dict]) -> dict[str, float]:
    return {r["row"]: r["per_seed"][0]["test_acc"] for r in rows}


def metrics(store: Path, run_id: str) -> dict:
    return json.loads((store / "runs" / run_id / "metrics.json").read_text())


def test_cheats_on_reachable_objects_and_import_time_patches_have_no_effect(user_protocols, store):
    """plan() training the model it is handed (and every module it finds), altering protocol
    objects, overwriting the training split; SGD patched to 10x the LR and the audit patched out
    at import: the closed-division results are bit-identical to l1norm's."""
    h = harness("S2", store)
    cheats = ["cheat-trains-model", "cheat-alters-protocol", "cheat-overwrites-data"]
    acc = accuracies(h.run(["l1norm", *cheats], seeds=[0]))
    assert all(acc[c] == acc["l1norm"] for c in cheats), acc
    assert h.protocol.retrain.epochs == 2 and h.data()[0].images.any()  # nothing of the harness's changed
    pruned = [m for m in map(lambda d: metrics(store, d.name), (store / "runs").iterdir()) if m.get("planning")]
    assert len(pruned) == 4 and all(m["division"] == "closed" for m in pruned)
    assert all(m["planning"]["process"] == "planning worker" and m["planning"]["sandboxed"] == HAS_BWRAP
               for m in pruned)


def test_compute_spent_in_method_code_is_measured_from_outside_and_named(user_protocols, store, tmp_path, capsys):
    """Compute in method code is not training the harness counts: a plug-in could search for its
    plan out of sight (a supermask trained in plan()). Here a thread and a child process spend a
    second of CPU each, every time it plans: the run records what its method's code spent,
    measured by the harness from /proc (the worker's whole process tree), and its table names it.
    Sandboxed, a daemon's second is counted too (orphans stay in the sandbox's process namespace)."""
    rows = harness("S2", store).run(["l1norm", "cheat-hidden-compute", "cheat-hidden-daemon"], seeds=[0])
    spent = {r["row"]: metrics(store, r["run_ids"][0])["planning"]["method_cpu_seconds"] for r in rows
             if r["row"] != "dense"}
    assert spent["cheat-hidden-compute"] >= 2.0 and spent["l1norm"] < 0.5, spent  # at least one plan: 2 s
    plans = spent["cheat-hidden-compute"] // 2  # as many plans as the other cheat, a second each
    if HAS_BWRAP:
        assert plans - 0.5 <= spent["cheat-hidden-daemon"] <= plans + 1.0, spent
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "report"), "--json"]) == 0
    (table,) = json.loads(capsys.readouterr().out)
    assert table["method_cpu_seconds"] == {row: round(s, 1) for row, s in spent.items()}
    page = next((tmp_path / "report").glob("synth-small_S2*.md")).read_text()
    assert (f"Compute in method code, not counted in training FLOPs (CPU seconds a run, mean over seeds: planning, "
            f"target search, intents; measured by the harness from outside the planning worker): cheat-hidden-compute "
            f"{spent['cheat-hidden-compute']:.1f} s, cheat-hidden-daemon {spent['cheat-hidden-daemon']:.1f} s, l1norm "
            f"{spent['l1norm']:.1f} s.") in page


def test_a_patched_audit_in_the_plugin_does_not_switch_the_harness_audit_off(user_protocols, store):
    with pytest.raises(ProtocolViolation, match="retrain epochs"):
        harness("S3.1", store).run(["cheat-patched"], seeds=[0])


OWN_LOOP = ["cheat-bn-momentum", "cheat-forward-hook", "cheat-extra-parameter", "cheat-extra-steps",
            "cheat-scaled-loss", "cheat-wider-layer"]


@pytest.mark.parametrize("cheat", OWN_LOOP)
def test_code_inside_the_loop_is_refused_in_the_closed_division(user_protocols, store, cheat):
    with pytest.raises(UserError, match="--division open"):
        harness("S2", store).plan([cheat], seeds=[0])
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a fresh process: the open division imports plug-ins (and their import-time
    patches) into the process that trains, which must not be this test process."""
    return subprocess.run([sys.executable, "-m", "prunebench", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ}, timeout=600)


def test_the_open_division_runs_them_labelled_and_records_what_changed(user_protocols, store, tmp_path):
    methods = OWN_LOOP
    args = ["run", "--protocol", "S2", "--suite", "synth-small", "--plugins", CHEATS, "--seeds", "0",
            "--store", str(store)]
    done = bench(*args, "--division", "open", *(a for m in methods for a in ("--method", m)), "--json",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["row"]: r for r in json.loads(done.stdout)}
    assert {r["division"] for r in rows.values()} == {"open"}
    for method in methods:
        m = metrics(store, rows[method]["run_ids"][0])
        assert m["division"] == "open" and m["planning"]["process"] == "training process"
        if method != "cheat-scaled-loss":  # changes nothing in the model: its label is what tells
            assert m["open_changes"], f"{method}: the change it made was not recorded"
        assert any(name.startswith("prunebench_plugin_") for name in m["planning"]["method_modules_in_training_process"])
    with sqlite3.connect(store / "index.sqlite") as db:
        assert {d for (d,) in db.execute("SELECT DISTINCT division FROM runs")} == {"open"}
    report = bench("report", "--store", str(store), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    text = "".join(p.read_text() for p in (tmp_path / "report").glob("*.md"))
    tables = [line for line in text.splitlines() if line.startswith("## ") and "under S2, target ratio 0.5" in line]
    assert tables and all(line.endswith("OPEN DIVISION") for line in tables)  # no closed table holds them

    # the closed division, in the same kind of process: no method module loaded where it trains
    done = bench(*args, "--method", "l1norm", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(r for r in json.loads(done.stdout) if r["row"] == "l1norm")
    record = metrics(store, row["run_ids"][0])
    assert record["division"] == "closed" and record["planning"]["method_modules_in_training_process"] == []
    # an open run and a closed one are comparable under no setup
    done = bench("compare", rows[methods[0]]["run_ids"][0], row["run_ids"][0], "--store", str(store), cwd=tmp_path)
    assert "not comparable under any setup: division" in done.stdout, done.stderr[-1000:]


def test_a_checkpoint_the_loop_did_not_write_is_never_resumed_from(user_protocols, tmp_path):
    """A forged checkpoint.pt (weights trained elsewhere, a conforming trace) in the run directory:
    set aside, the run trains from its start, and its result is the honest one."""
    honest = harness("S2", tmp_path / "honest", plugins=())
    acc = accuracies(honest.run(["l1norm"], seeds=[0]))
    forged_store = tmp_path / "forged"
    h = harness("S2", forged_store, plugins=())
    spec = next(p.spec for p in h.plan(["l1norm"], seeds=[0]) if p.spec.kind == "pruned")
    base = next(p.spec for p in h.plan(["l1norm"], seeds=[0]) if p.spec.kind == "base")
    h.execute(base, h._base_job(base).start)  # the base, trained honestly
    honest_model = torch.load(tmp_path / "honest" / "runs" / spec.run_id / "model.pt")
    trace = json.loads((tmp_path / "honest" / "runs" / spec.run_id / "trace.json").read_text())
    directory = forged_store / "runs" / spec.run_id
    directory.mkdir(parents=True)
    forged = {k: v * 1.01 if v.is_floating_point() else v for k, v in honest_model.items()}
    torch.save({"model": forged, "optimizer": None, "phase_index": 0, "epoch": 1,
                "trace": {"rows": trace["rows"][:1]}, "rng": {"torch": torch.get_rng_state(),
                "python": __import__("random").getstate(), "numpy": __import__("numpy").random.get_state()}},
               directory / "checkpoint.pt")
    (directory / "plan.json").write_text((tmp_path / "honest" / "runs" / spec.run_id / "plan.json").read_text())
    lines: list[str] = []
    h.log = lines.append
    assert accuracies(h.run(["l1norm"], seeds=[0]))["l1norm"] == acc["l1norm"]
    assert (directory / "checkpoint.pt.damaged").exists() and not (directory / "checkpoint.pt").exists()
    assert any("not written by the training loop" in line for line in lines)


FORGER = '''
from pathlib import Path

import torch

from prunebench.method import Method, register_method
from prunebench.methods.l1norm import L1Norm

STORE = Path({store!r})


@register_method
class Forger(Method):
    """plan() retrains the base it is planned on and rewrites its model.pt and recorded sha256."""

    name = "cheat-forges-base"

    def plan(self, model, target, settings, ctx):
        import hashlib, json

        for directory in (STORE / "runs").iterdir():
            metrics = directory / "metrics.json"
            if metrics.exists() and json.loads((directory / "spec.json").read_text())["kind"] == "base":
                state = torch.load(directory / "model.pt")
                torch.save({{k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()}},
                           directory / "model.pt")
                record = json.loads(metrics.read_text())
                record["model_sha256"] = hashlib.sha256((directory / "model.pt").read_bytes()).hexdigest()
                metrics.write_text(json.dumps(record))
        return L1Norm().plan(model, target, L1Norm().settings({{}}), ctx)
'''


def test_a_base_rewritten_after_it_finished_is_a_violation(user_protocols, store, tmp_path):
    """Unsandboxed, a plug-in can rewrite the base model and its recorded sha256; the pruned run
    checks the base against the sha256 the loop kept when the base finished."""
    plugin = tmp_path / "forger.py"
    plugin.write_text(FORGER.format(store=str(store)))
    h = harness("S2", store, plugins=(str(plugin),), sandbox="off")
    with pytest.raises(ProtocolViolation, match="base checkpoint sha256"):
        h.run(["cheat-forges-base"], seeds=[0])


PEEKER = '''
from pathlib import Path

from prunebench.errors import UserError
from prunebench.method import Method, register_method

DATA, STORE = Path({data!r}), Path({store!r})


@register_method
class Peeker(Method):
    name = "cheat-peeks"

    def plan(self, model, target, settings, ctx):
        outcomes = []
        try:
            outcomes.append("read the test split: " + (DATA / "test_batch").read_text())
        except OSError as e:
            outcomes.append(f"test split: {{type(e).__name__}}")
        try:
            (STORE / "planted.txt").write_text("x")
            outcomes.append("wrote into the store")
        except OSError as e:
            outcomes.append(f"store: {{type(e).__name__}}")
        raise UserError("; ".join(outcomes))
'''


def test_the_sandbox_hides_the_data_root_and_keeps_the_store_read_only(user_protocols, tmp_path):
    data, store = tmp_path / "data", tmp_path / "store"
    data.mkdir()
    (data / "test_batch").write_text("the labels")
    store.mkdir()
    plugin = tmp_path / "peeker.py"
    plugin.write_text(PEEKER.format(data=str(data), store=str(store)))
    if HAS_BWRAP:
        with pytest.raises(UserError) as sandboxed:
            harness("S2", store, plugins=(str(plugin),), sandbox="on", data_root=data).plan(["cheat-peeks"], [0])
        assert "test split: FileNotFoundError" in str(sandboxed.value)
        assert "store: OSError" in str(sandboxed.value) and not (store / "planted.txt").exists()
    else:
        with pytest.raises(UserError, match="needs bubblewrap"):  # and says why it cannot have it
            harness("S2", store, plugins=(str(plugin),), sandbox="on", data_root=data).plan(["cheat-peeks"], [0])
    # without the sandbox the same plug-in reads and writes: what the sandbox stops is real
    with pytest.raises(UserError, match="read the test split: the labels; wrote into the store"):
        harness("S2", store, plugins=(str(plugin),), sandbox="off", data_root=data).plan(["cheat-peeks"], [0])


def test_auto_refuses_a_plugin_where_bubblewrap_cannot_run(user_protocols, store, tmp_path, monkeypatch, capsys):
    """Where bubblewrap cannot run, `--sandbox auto` would hand a plug-in the user's rights (the
    peeker above shows what that allows): a plug-in is refused before any of its code runs, with
    the reason and the ways on; the built-ins still plan, and only `--sandbox off` runs a plug-in."""
    from prunebench.cli import main

    marker = tmp_path / "imported.txt"
    plugin = tmp_path / "loud.py"  # a plug-in that leaves a mark when its code is imported
    plugin.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
                      f"from prunebench.methods.l1norm import L1Norm\nclass Loud(L1Norm):\n    name = 'loud'\n"
                      f"from prunebench.method import register_method\nregister_method(Loud)\n")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no bwrap on it: as on a machine without bubblewrap
    for plugins in ((CHEATS,), (str(plugin),)):
        with pytest.raises(UserError) as refused:
            harness("S2", store, plugins=plugins).plan(["l1norm"], [0])
        said = str(refused.value)
        assert f"plug-in {plugins[0]} would run unsandboxed: bubblewrap (`bwrap`) is not installed" in said
        assert "apt-get install bubblewrap" in said and "--sandbox off" in said
    assert not marker.exists() and not list((store / "runs").glob("*"))  # refused before it was imported
    assert main(["list", "methods", "--plugins", str(plugin)]) == 2
    assert "would run unsandboxed" in capsys.readouterr().err and not marker.exists()
    planned = harness("S2", store, plugins=()).plan(["l1norm"], [0])  # the built-ins: unsandboxed, as before
    assert [p.spec.kind for p in planned] == ["base", "pruned"]
    planned = harness("S2", store, plugins=(str(plugin),), sandbox="off").plan(["loud"], [0])
    assert marker.read_text() == "ran" and [p.spec.method.name for p in planned if p.spec.method] == ["loud"]


def test_a_plugin_that_replaces_a_builtin_is_refused(user_protocols, store, tmp_path):
    plugin = tmp_path / "takeover.py"
    plugin.write_text("from prunebench.method import METHODS\nfrom prunebench.methods.random import RandomFilters\n"
                      "class Fake(RandomFilters):\n    name = 'l1norm'\nMETHODS._items['l1norm'] = Fake()\n")
    with pytest.raises(UserError, match="replaces the built-in method 'l1norm'"):
        harness("S2", store, plugins=(str(plugin),)).plan(["l1norm"], seeds=[0])


BROKEN = '''
import os, sys

from prunebench.method import Method, register_method
from prunebench.pruning import PruningPlan


@register_method
class Chatty(Method):
    name = "chatty"

    def plan(self, model, target, settings, ctx):
        print("a method that prints", flush=True)
        sys.stdout.buffer.write(b"raw bytes on stdout")
        return PruningPlan.first_k(target.keep_counts(ctx.arch, model))


@register_method
class Exits(Method):
    name = "exits"

    def plan(self, model, target, settings, ctx):
        os._exit(3)


@register_method
class NotAPlan(Method):
    name = "not-a-plan"

    def plan(self, model, target, settings, ctx):
        return {{"keep": "everything"}}
'''


def test_a_worker_that_prints_exits_or_returns_junk_gives_a_clear_error(user_protocols, store, tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN.format())
    h = harness("S2", store, plugins=(str(plugin),))
    assert [p.row for p in h.plan(["chatty"], seeds=[0])] == ["dense", "chatty"]  # prints do not jam the pipe
    with pytest.raises(UserError, match="not a PruningPlan"):
        h.plan(["not-a-plan"], seeds=[0])
    with pytest.raises(UserError, match="exited \\(exit code 3\\) while planning"):
        h.plan(["exits"], seeds=[0])
    assert [p.row for p in harness("S2", store, plugins=(str(plugin),)).plan(["chatty"], [0])] == ["dense", "chatty"]
