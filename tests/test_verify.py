"""`bench verify` re-derives finished runs from their files in a fresh process: it passes on a real
store and fails on each kind of tampering; the report marks verified rows, and `--verify` refuses
the rows that fail."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from prunebench.cli import main
from prunebench.machine import label
from prunebench.protocol_files import load_protocol
from prunebench.reverify import finished_runs, index_problems, verify_runs
from prunebench.runner import Harness


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A finished grid of every kind of run: bases, filter and masked pruned runs, Scratch-B of each."""
    root = tmp_path_factory.mktemp("verify")
    from tests.conftest import synth_protocols

    mp = synth_protocols(root)
    store = root / "store"
    ids = {}
    for setup, methods in (("S2", ["l1norm", "magnitude"]), ("SX-B", ["l1norm", "magnitude"])):
        protocol, _, sha = load_protocol(setup, "synth-small")
        h = Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None)
        for r in h.run(methods, seeds=[0]):
            ids[(setup, r["row"])] = r["run_ids"][0]
    yield store, ids
    mp.undo()


@pytest.fixture
def store(grid, tmp_path):
    """A fresh copy of the grid's store, to tamper with."""
    copy = tmp_path / "store"
    shutil.copytree(grid[0], copy)
    return copy, grid[1]


def verdict(store, run_id):
    (v,) = verify_runs(store, [run_id])
    return v


def test_every_run_of_a_real_store_verifies(store):
    root, ids = store
    runs = finished_runs(root)
    assert len(runs) == len(set(ids.values())) == 7  # one base, l1norm/magnitude under S2 and SX-B, two Scratch-B
    verdicts = verify_runs(root, runs)
    assert [(v.row, v.problems, v.flags) for v in verdicts if not v.ok or v.flags] == []
    recorded = {v.run_id: json.loads((root / "runs" / v.run_id / "metrics.json").read_text())["test_acc"]
                for v in verdicts}
    assert all(v.test_acc == recorded[v.run_id] for v in verdicts)  # the same number, from the file alone
    assert index_problems(root) == []


def edit_json(path: Path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def rewrite_model(run: Path, state: dict) -> None:
    torch.save(state, run / "model.pt")
    import hashlib

    edit_json(run / "metrics.json", model_sha256=hashlib.sha256((run / "model.pt").read_bytes()).hexdigest())


def test_an_edited_accuracy_fails(store):
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    edit_json(run / "metrics.json", test_acc=99.0)
    problems = " ".join(verdict(root, run.name).problems)
    assert "re-evaluated accuracy" in problems and "trace's last epoch" in problems and "index's test_acc" in problems


def test_an_edited_index_fails(store):
    root, ids = store
    db = sqlite3.connect(root / "index.sqlite")
    db.execute("UPDATE runs SET test_acc = 5.0 WHERE id = ?", (ids[("S2", "magnitude")],))
    db.commit()
    db.close()
    recorded = json.loads((root / "runs" / ids[("S2", "magnitude")] / "metrics.json").read_text())["test_acc"]
    assert verdict(root, ids[("S2", "magnitude")]).problems == [
        f"the index's test_acc (5.0) is not the run directory's ({recorded})"]


def test_a_swapped_model_with_its_sha256_rewritten_fails(store):
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    state = torch.load(run / "model.pt", weights_only=True)
    rewrite_model(run, {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state.items()})
    assert any("re-evaluated accuracy" in p for p in verdict(root, run.name).problems)


def test_hidden_capacity_fails(store):
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    state = torch.load(run / "model.pt", weights_only=True)
    rewrite_model(run, {**state, "teacher.weight": torch.ones(10, 10)})
    assert any("does not fit the architecture" in p and "teacher.weight" in p for p in verdict(root, run.name).problems)


def test_a_pruned_run_whose_base_pin_and_base_record_were_both_rewritten_fails(store):
    """To pass off a pruned run as started from other base weights (those of records made
    elsewhere), its pin and its base's metrics are rewritten to agree: the base's model file, hashed,
    still says otherwise."""
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    base = root / "runs" / json.loads((run / "base.json").read_text())["base"]
    assert verdict(root, run.name).ok
    edit_json(run / "base.json", model_sha256="e" * 64)
    edit_json(base / "metrics.json", model_sha256="e" * 64)
    problems = verdict(root, run.name).problems
    assert "the base it started from is not the base model stored now (sha256 differs)" in problems


@pytest.mark.parametrize("row, field", [(("S2", "l1norm"), "base_test_acc"), (("SX-B", "l1norm"), "total_epochs"),
                                        (("SX-B", "Scratch-B of l1norm"), "total_train_flops"),
                                        (("SX-B", "Scratch-B of l1norm"), "budget")])
@pytest.mark.parametrize("how", ["edited", "deleted"])
def test_a_pipeline_total_or_budget_edited_fails(store, row, field, how):
    """The numbers a table shows beside the accuracy — the drop from the dense model, the
    pipeline's epochs and training FLOPs, the SX budget — are re-derived from the trace, the base's
    metrics and the protocol, not taken from the run's own metrics; one deleted (the table would
    show "-") fails too: the loop always writes them."""
    root, ids = store
    run = root / "runs" / ids[row]
    metrics = json.loads((run / "metrics.json").read_text())
    assert verdict(root, run.name).ok and metrics[field] is not None
    if how == "deleted":
        (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != field}))
    else:
        edited = ({**metrics[field], "amount": metrics[field]["amount"] * 1.5} if field == "budget"
                  else metrics[field] + 1)
        edit_json(run / "metrics.json", **{field: edited})
    said = [p for p in verdict(root, run.name).problems if p.startswith(f"{field}: recorded")]
    assert len(said) == 1 and (how == "edited") != said[0].startswith(f"{field}: recorded none")


@pytest.mark.parametrize("row", [("S2", "l1norm"), ("SX-B", "Scratch-B of l1norm")])
def test_a_run_whose_planning_record_was_deleted_fails(store, row, tmp_path, capsys):
    """Whether the method's code ran sandboxed is what a reader weighs a closed-division result by;
    deleting the record fails verification, and the table names the row as not sandboxed."""
    from prunebench.store import Store

    root, ids = store
    run = root / "runs" / ids[row]
    metrics = json.loads((run / "metrics.json").read_text())
    assert isinstance(metrics["planning"], dict) and verdict(root, run.name).ok

    def flagged() -> dict[str, list[str]]:
        assert main(["report", "--store", str(root), "--out", str(tmp_path / "r"), "--json"]) == 0
        return {t["setup"]: t["unsandboxed"] for t in json.loads(capsys.readouterr().out)}

    metrics["planning"]["sandboxed"] = True  # as under bubblewrap, whether or not this machine has it
    (run / "metrics.json").write_text(json.dumps(metrics))
    Store(root).reindex()
    before = flagged()[row[0]]  # (other rows are flagged where this machine has no bubblewrap)
    assert row[1] not in before
    (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "planning"}))
    assert any(p.startswith("planning: recorded none") for p in verdict(root, run.name).problems)
    Store(root).reindex()
    assert flagged()[row[0]] == sorted([*before, row[1]])


@pytest.mark.parametrize("how", ["other data", "deleted"])
def test_a_run_trained_on_another_copy_of_the_data_fails(store, how):
    """A run that trained on other data than the copy it is verified on (say, test images in its
    train split: re-evaluation alone would pass it) is not this table's computation: it fails, and
    deleting the fingerprint the loop recorded does not hide it."""
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    metrics = json.loads((run / "metrics.json").read_text())
    recorded = metrics["data_fingerprint"]
    assert len(recorded) == 32 and verdict(root, run.name).ok
    if how == "deleted":
        del metrics["data_fingerprint"]
    else:  # the train split's half of the fingerprint is another copy's, the test split's the same
        metrics["data_fingerprint"] = "0" * 16 + recorded[16:]
    (run / "metrics.json").write_text(json.dumps(metrics))
    problems = [p for p in verdict(root, run.name).problems if p.startswith("the data read here")]
    assert len(problems) == 1 and f"({recorded[:12]}) are not the copy the run trained on" in problems[0]
    assert ("none recorded" in problems[0]) == (how == "deleted")


def test_runs_on_two_copies_of_the_data_are_never_ranked_together(store, tmp_path, capsys):
    """Tables trust no dataset name: a run whose recorded data fingerprint is another copy's (here
    its record says so, as a run trained from another --data-root would) leaves the table of the
    protocol's other runs for one of its own, both named by their copy."""
    from prunebench.store import Store

    root, ids = store
    run = root / "runs" / ids[("S2", "magnitude")]
    metrics = json.loads((run / "metrics.json").read_text())
    ours, theirs = metrics["data_fingerprint"], "f" * 32

    def s2_tables() -> list[dict]:
        assert main(["report", "--store", str(root), "--out", str(tmp_path / "r"), "--json"]) == 0
        return [t for t in json.loads(capsys.readouterr().out) if t["setup"] == "S2"]

    (table,) = s2_tables()
    assert table["data_copy"] is None and {c["row"] for c in table["cells"]} == {"l1norm", "magnitude"}
    (run / "metrics.json").write_text(json.dumps({**metrics, "data_fingerprint": theirs}))
    Store(root).reindex()
    tables = {t["data_copy"]: t for t in s2_tables()}
    assert set(tables) == {ours, theirs}
    assert [c["row"] for c in tables[ours]["cells"]] == ["l1norm"]
    assert [c["row"] for c in tables[theirs]["cells"]] == ["magnitude"]
    assert [t["protocol"] for t in tables.values()] == [table["protocol"]] * 2, table  # the copy is said apart
    pages = sorted((tmp_path / "r").glob("*_S2_*.md"))  # a page for each copy's tables
    assert len(pages) == 2 and all("runs on two copies are never ranked together" in p.read_text() for p in pages)
    assert sorted(p.read_text().count(f"data copy {ours[:12]}") > 0 for p in pages) == [False, True]


def test_a_trace_with_an_extra_epoch_fails(store):
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    trace = json.loads((run / "trace.json").read_text())
    trace["rows"].insert(0, {**trace["rows"][0], "lr": 0.5})
    (run / "trace.json").write_text(json.dumps(trace))
    problems = " ".join(verdict(root, run.name).problems)
    assert "re-audit" in problems and "epochs or training FLOPs" in problems


def test_an_edited_protocol_record_fails(store):
    root, ids = store
    run = root / "runs" / ids[("SX-B", "Scratch-B of l1norm")]
    audited = json.loads((run / "protocol.json").read_text())
    audited["protocol"]["budget"]["tolerance"] = 0.5
    (run / "protocol.json").write_text(json.dumps(audited))
    assert any("protocol.json's protocol is not the content" in p for p in verdict(root, run.name).problems)


def test_a_plan_that_keeps_more_than_its_target_fails(store):
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    plan = json.loads((run / "plan.json").read_text())
    (run / "plan.json").write_text(json.dumps({k: list(range(len(v) * 2)) for k, v in plan.items()}))
    problems = " ".join(verdict(root, run.name).problems)
    assert "misses its target" in problems and "does not fit" in problems


def test_live_masked_weights_fail(store):
    root, ids = store
    run = root / "runs" / ids[("S2", "magnitude")]
    state = torch.load(run / "model.pt", weights_only=True)
    rewrite_model(run, {k: v + 1e-3 if k.endswith("weight") and v.dim() > 1 else v for k, v in state.items()})
    assert any("masked weights" in p for p in verdict(root, run.name).problems)


def test_an_edited_spec_and_a_stray_index_row_fail(store):
    root, ids = store
    run = root / "runs" / ids[("S2", "l1norm")]
    edit_json(run / "spec.json", seed=7)
    assert "does not hash to the run's id" in " ".join(verdict(root, run.name).problems)
    (root / "runs" / ids[("S2", "magnitude")] / "metrics.json").unlink()
    assert any(ids[("S2", "magnitude")][:12] in p for p in index_problems(root))


def test_report_marks_verified_rows_and_verify_refuses_failing_ones(store, tmp_path, capsys):
    root, ids = store
    assert main(["verify", "--store", str(root)]) == 0
    assert "7 of 7 runs verified." in capsys.readouterr().out
    assert main(["report", "--store", str(root), "--out", str(tmp_path / "r1"), "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    assert {c["verified"] for t in tables for c in t["cells"]} == {"yes"}
    assert "| ✓ " in (tmp_path / "r1" / "synth-small_S2.md").read_text()
    edit_json(root / "runs" / ids[("S2", "l1norm")] / "metrics.json", test_acc=99.0)  # the mark no longer holds
    assert main(["report", "--store", str(root), "--out", str(tmp_path / "r2"), "--json"]) == 0
    s2 = next(t for t in json.loads(capsys.readouterr().out) if t["setup"] == "S2")
    assert {c["row"]: c["verified"] for c in s2["cells"]}["l1norm"] == "no"
    assert main(["report", "--store", str(root), "--out", str(tmp_path / "r3"), "--verify", "--json"]) == 0
    captured = capsys.readouterr()
    s2 = next(t for t in json.loads(captured.out) if t["setup"] == "S2")
    assert "l1norm" not in [c["row"] for c in s2["cells"]]
    refused = next(c for c in s2["incomplete"] if c["row"] == "l1norm")
    assert "refused by verification" in refused["missing"]["0"] and "re-evaluated accuracy" in refused["missing"]["0"]
    assert "refused: l1norm seed 0" in captured.err
    assert main(["verify", ids[("S2", "l1norm")][:10], "--store", str(root)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_a_model_whose_accuracy_needs_a_hidden_forward_hook_fails(user_protocols, tmp_path):
    """Open division: a hook adds a hidden model's logits; the recorded accuracy is the hooked
    model's, which the model file alone does not reproduce."""
    from tests.test_divisions import bench

    teacher = str(Path(__file__).with_name("plugins") / "teacher.py")
    store = tmp_path / "store"
    done = bench("run", "--protocol", "S2", "--suite", "synth-small", "--plugins", teacher, "--division", "open",
                 "--method", "cheat-teacher-hook", "--seeds", "0", "--store", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    run_id = next(r for r in rows if r["row"] == "cheat-teacher-hook")["run_ids"][0]
    (v,) = verify_runs(store, [run_id])
    assert any("re-evaluated accuracy" in p and "on the machine that trained it" in p for p in v.problems), v.problems
    assert all(w.ok for w in verify_runs(store, [r["run_ids"][0] for r in rows if r["row"] == "dense"]))


def test_an_index_edited_after_verification_loses_its_mark(store, tmp_path, capsys):
    root, ids = store
    assert main(["verify", "--store", str(root), "--json"]) == 0
    capsys.readouterr()
    db = sqlite3.connect(root / "index.sqlite")
    db.execute("UPDATE runs SET test_acc = 99.0 WHERE id = ?", (ids[("S2", "magnitude")],))
    db.commit()
    db.close()
    assert main(["report", "--store", str(root), "--out", str(tmp_path / "r"), "--json"]) == 0
    s2 = next(t for t in json.loads(capsys.readouterr().out) if t["setup"] == "S2")
    marks = {c["row"]: c["verified"] for c in s2["cells"]}
    assert marks["magnitude"] == "no" and marks["l1norm"] == "yes"


def test_a_run_re_evaluated_elsewhere_says_where(store):
    root, ids = store
    run = ids[("S2", "l1norm")]
    metrics = json.loads((root / "runs" / run / "metrics.json").read_text())
    edit_json(root / "runs" / run / "metrics.json", compiled=True)  # trained through torch.compile
    v = verdict(root, run)
    assert v.ok and v.flags == ["re-evaluated on other kernels (trained through torch.compile, re-evaluated eagerly): "
                                "equal"]
    edit_json(root / "runs" / run / "metrics.json", machine={**metrics["machine"], "cpu": "Some Other CPU"})
    v = verdict(root, run)
    other = label({**metrics["machine"], "cpu": "Some Other CPU"})
    assert v.ok and v.flags == [f"re-evaluated on another machine ({other} -> {label(metrics['machine'])}): equal"]


@pytest.mark.parametrize("kernels", ["other", None])
def test_a_cpu_of_the_same_name_with_other_kernels_is_another_machine(store, kernels):
    """A cloud CPU may call itself "AMD EPYC" on an AVX2 part and on an AVX-512 part, whose kernels
    sum in other orders: an honest run re-evaluated on the other part must not be held to equality
    as on the machine that trained it (a false accusation), but re-evaluated as on another machine.
    A record from before the kernels were recorded (None) counts as another machine too."""
    root, ids = store
    run = ids[("S2", "l1norm")]
    path = root / "runs" / run / "metrics.json"
    metrics = json.loads(path.read_text())
    assert metrics["machine"]["cpu_kernels"] and verdict(root, run).flags == []  # here: the same machine
    if kernels == "other":  # kernels this machine does not run
        kernels = "AVX2" if metrics["machine"]["cpu_kernels"] != "AVX2" else "AVX512, AVX512-BF16"
    there = {**metrics["machine"], "cpu_kernels": kernels}  # the same model name, other kernels
    edit_json(path, machine=there)
    v = verdict(root, run)
    here = label(metrics["machine"])
    assert v.ok and v.flags == [f"re-evaluated on another machine ({label(there)} -> {here}): equal"]
