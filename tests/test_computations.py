"""One computation, one training: a run's identity for training is what it computes (base, plan
content, recipes, penalty, seed, precision); its method, setup and row are memberships. Runs of
one computation train once and appear in every table, each audited against its own protocol."""

from __future__ import annotations

import json

import pytest

import prunebench.runner
from prunebench.errors import ProtocolViolation
from prunebench.protocol_files import load_protocol
from prunebench.report import build, shared_line
from prunebench.reverify import finished_runs, verify_runs
from prunebench.runner import Harness
from prunebench.store import Store
from tests.plugins import UNFAIR


@pytest.fixture
def trained(monkeypatch):
    """Epochs the training loop actually ran, counted at the loop itself (the real one, wrapped)."""
    epochs = []
    real = prunebench.runner.train_phases

    def counting(*args, **kwargs):
        trace = real(*args, **kwargs)
        epochs.append(len(trace.rows))
        return trace

    monkeypatch.setattr(prunebench.runner, "train_phases", counting)
    return epochs


def run(setup, methods, store, **kwargs):
    protocol, _, sha = load_protocol(setup, "synth-small")
    h = Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None, **kwargs)
    return h.run(methods, seeds=[0])


def by_row(rows):
    return {r["row"]: r for r in rows}


def test_a_pruned_run_repeated_across_setups_and_equal_scratch_baselines_train_once(user_protocols, store, trained):
    s2 = by_row(run("S2", ["l1norm", "random"], store))
    assert sum(trained) == 3 + 2 + 2  # the base, then l1norm and random retrained 2 epochs each
    trained.clear()

    sx = by_row(run("SX-B", ["l1norm", "random"], store))
    # the base and both pruned runs are S2's computations; Scratch-B of l1norm and of random at
    # ratio 0.5 have the same widths (per-layer ratio): one scratch training of 13 epochs
    assert trained == [13]
    assert set(sx) == {"dense", "l1norm", "random", "Scratch-B of l1norm", "Scratch-B of random"}
    for row in ("l1norm", "random"):  # the same numbers, in each setup's own table
        assert sx[row]["mean"] == s2[row]["mean"] and sx[row]["n"] == 1
    assert sx["Scratch-B of l1norm"]["mean"] == sx["Scratch-B of random"]["mean"]

    index = Store(store)
    runs = {(r["protocol"], r["row"]): dict(r) for r in index.query("SELECT * FROM runs")}
    own = {key: r for key, r in runs.items() if r["trained_in"] == r["id"]}
    assert sum(r["epochs"] for r in own.values()) == 3 + 2 + 2 + 13  # what trained, from the index too
    sx_l1 = runs[("synth-small/SX-B", "l1norm")]
    s2_l1 = runs[("synth-small/S2", "l1norm")]
    assert sx_l1["id"] != s2_l1["id"] and sx_l1["computation"] == s2_l1["computation"]
    assert sx_l1["trained_in"] == s2_l1["id"]
    # each membership carries its own protocol's audit: SX-B's budget, S2's none
    assert sx_l1["budget_kind"] == "flops" and s2_l1["budget_kind"] is None
    assert sx_l1["protocol_sha256"] != s2_l1["protocol_sha256"]

    verdicts = verify_runs(store, finished_runs(store))
    assert len(verdicts) == 7 and all(v.ok for v in verdicts), [(v.row, v.problems) for v in verdicts if not v.ok]

    # the report says which rows are another row's training
    tables = {t.setup: t for t in build(Store(store))}
    line = shared_line(tables["SX-B"])
    assert "Scratch-B of random: the training of Scratch-B of l1norm (SX-B)" in line
    assert f"l1norm: the training of l1norm (S2), run {s2_l1['id'][:8]}" in line
    assert tables["S2"].shared == []

    trained.clear()  # a second run of either grid is a cache hit
    run("SX-B", ["l1norm", "random"], store)
    assert trained == []


def test_a_shared_run_is_audited_against_its_own_protocol(user_protocols, store, trained):
    # LR 0.1 retraining is free under S3.1 and breaks S3.2's fixed schedule: the same computation
    # is taken, not retrained, and S3.2 refuses it under its own rule
    rows = by_row(run("S3.1", ["unfair-higher-lr"], store, plugins=(UNFAIR,)))
    assert rows["unfair-higher-lr"]["n"] == 1
    trained.clear()
    with pytest.raises(ProtocolViolation) as caught:
        run("S3.2", ["unfair-higher-lr"], store, plugins=(UNFAIR,))
    assert caught.value.rule == "retrain epoch 0 LR" and trained == []
    violated = Store(store).query("SELECT status, protocol FROM runs WHERE row = 'unfair-higher-lr'")
    assert sorted((r["protocol"], r["status"]) for r in violated) == [
        ("synth-small/S3.1", "done"), ("synth-small/S3.2", "violated")]


def test_a_pruning_phase_run_is_shared_within_its_protocol_only(user_protocols, store, trained):
    # slimming trains its own BN-L1 phase (2 epochs) and then plans: its method stands for its
    # plan, and the method sees the protocol, so only a run under the same protocol content takes it
    protocol, _, sha = load_protocol("S2", "synth-small")
    h = Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None)
    own = by_row(h.run(["slimming"], seeds=[0]))
    assert sum(trained) == 3 + 2 + 2
    trained.clear()
    # recipe cross-validation: slimming retrained with l1norm's recipe, which is the protocol's, as its own
    lent = by_row(h.run(["slimming"], seeds=[0], borrow={"slimming": ("l1norm", protocol.retrain)}))
    assert trained == [] and lent["slimming with the recipe of l1norm"]["mean"] == own["slimming"]["mean"]
    run("S3.1", ["slimming"], store)
    assert sum(trained) == 2 + 2  # another protocol: its pruning phase and retraining train
    verdicts = verify_runs(store, finished_runs(store))
    assert len(verdicts) == 4 and all(v.ok for v in verdicts), [(v.row, v.problems) for v in verdicts if not v.ok]


def test_a_run_that_breaks_the_base_rule_takes_no_training(user_protocols, store, trained):
    # its own, longer base is allowed under S1 only; under S2 the rule is checked before anything
    # else, with a pruning phase of its own as without one
    for method in ("unfair-own-base", "unfair-own-base-phase"):
        run("S1", [method], store, plugins=(UNFAIR,))
        trained.clear()
        with pytest.raises(ProtocolViolation) as caught:
            run("S2", [method], store, plugins=(UNFAIR,))
        assert caught.value.rule == "same base checkpoint (sha256)" and trained == []  # every base trained under S1
        trained.clear()


def _metrics(store, protocol, row):
    run_id = Store(store).query("SELECT id FROM runs WHERE protocol = ? AND row = ?", (protocol, row))[0]["id"]
    return store / "runs" / run_id / "metrics.json"


def test_a_forged_record_of_who_trained_a_computation_is_not_taken(user_protocols, store, trained):
    s2 = by_row(run("S2", ["l1norm", "random"], store))
    l1 = json.loads(_metrics(store, "synth-small/S2", "l1norm").read_text())
    random_id = json.loads(_metrics(store, "synth-small/S2", "random").read_text())["run_id"]
    # the computations' record says l1norm's computation was trained by the random run
    record = store / "computations" / l1["computation"]["id"] / "trained.json"
    record.write_text(json.dumps({"run": random_id, "status": "done"}))
    trained.clear()
    sx = by_row(run("SX-A", ["l1norm"], store))
    assert trained[0] == 2  # l1norm trained again (then its Scratch-E): random's model is another computation
    assert sx["l1norm"]["mean"] == s2["l1norm"]["mean"]  # the same computation, trained again, the same result


def test_verify_finds_a_run_whose_computation_record_was_edited(user_protocols, store):
    run("S2", ["l1norm", "random"], store)
    run("SX-A", ["l1norm", "random"], store)
    adopted = _metrics(store, "synth-small/SX-A", "l1norm")
    metrics = json.loads(adopted.read_text())
    owner = metrics["computation"]["trained_in"]
    random_id = json.loads(_metrics(store, "synth-small/S2", "random").read_text())["run_id"]
    metrics["computation"]["trained_in"] = random_id  # claims another run's training
    adopted.write_text(json.dumps(metrics))
    other = _metrics(store, "synth-small/SX-A", "random")
    forged = json.loads(other.read_text())
    forged["computation"]["content"]["seed"] = 1  # a computation it is not
    other.write_text(json.dumps(forged))
    verdicts = {v.run_id: v for v in verify_runs(store, finished_runs(store))}
    problems = verdicts[metrics["run_id"]].problems
    assert any("computation is not its own" in p for p in problems), problems
    problems = verdicts[forged["run_id"]].problems
    assert any("does not hash to the id" in p for p in problems) and any(
        "not what the run's spec trains" in p for p in problems), problems
    assert verdicts[owner].ok


def test_a_store_of_an_older_prunebench_opens_and_its_runs_are_not_shared(user_protocols, store, trained):
    import shutil
    import sqlite3

    run("S2", ["l1norm"], store)
    for metrics in (store / "runs").glob("*/metrics.json"):  # what runs of the previous version record
        record = json.loads(metrics.read_text())
        del record["computation"]
        metrics.write_text(json.dumps(record))
    shutil.rmtree(store / "computations")
    db = sqlite3.connect(store / "index.sqlite")
    db.execute("ALTER TABLE runs DROP COLUMN trained_in")  # the version-8 layout
    db.execute("PRAGMA user_version = 8")
    db.commit()
    db.close()
    trained.clear()
    assert by_row(run("S2", ["l1norm"], store))["l1norm"]["n"] == 1 and trained == []  # cache hits, index rebuilt
    run("SX-A", ["l1norm"], store)
    assert trained[0] == 2  # an old run records no computation: SX-A's l1norm trains its own
    rows = Store(store).query("SELECT protocol, computation, trained_in FROM runs WHERE row = 'l1norm'")
    assert sorted((r["protocol"], r["computation"] is None) for r in rows) == [
        ("synth-small/S2", True), ("synth-small/SX-A", False)]
    verdicts = verify_runs(store, finished_runs(store))
    assert all(v.ok for v in verdicts), [(v.row, v.problems) for v in verdicts if not v.ok]


def test_a_pruned_run_is_not_shared_once_its_base_was_retrained(user_protocols, store, trained):
    import torch

    from prunebench._atomic import sha256_file

    run("S2", ["l1norm"], store)
    # the base found damaged, set aside and trained again, on a device whose kernels are not
    # deterministic: the same computation, other weights (here: the weights nudged, as that gives)
    index = Store(store)
    base_id = index.query("SELECT id FROM runs WHERE kind = 'base'")[0]["id"]
    directory = store / "runs" / base_id
    metrics = json.loads((directory / "metrics.json").read_text())
    aside = index.set_aside(base_id)
    state = torch.load(aside / "model.pt", weights_only=True)
    state[next(iter(state))] += 1e-3
    torch.save(state, directory / "model.pt")
    for name in ("spec.json", "trace.json", "trace.csv", "protocol.json"):
        (directory / name).write_bytes((aside / name).read_bytes())
    (directory / "metrics.json").write_text(json.dumps({**metrics, "model_sha256": sha256_file(directory / "model.pt")}))
    trained.clear()
    rows = by_row(run("SX-A", ["l1norm"], store))
    assert trained[0] == 2  # S2's l1norm started from the first weights: SX-A's trains from the new ones
    assert rows["l1norm"]["n"] == 1
