"""Deliberately unfair methods: each is caught under the setup that fixes what it changes, with
the rule named, and passes under a setup that leaves that freedom open."""

import json

import pytest

from prunebench.errors import ProtocolViolation
from prunebench.protocol_files import load_protocol
from prunebench.runner import Harness
from tests.plugins import UNFAIR

EXTRA_EPOCH = "unfair-extra-epoch"
HIGHER_LR = "unfair-higher-lr"
NO_WD = "unfair-no-weight-decay"
LOW_MOMENTUM = "unfair-momentum"
MORE_SAMPLES = "unfair-more-samples"
OWN_BASE = "unfair-own-base"
LONG_PRUNE = "unfair-long-prune"
OVER_BUDGET = "unfair-over-budget"
MUTATES = "unfair-mutates-protocol"


def run(setup, method, store):
    protocol, _, _ = load_protocol(setup, "synth-small")
    h = Harness(protocol, store=store, device="cpu", progress=False, log=lambda m: None, plugins=(UNFAIR,))
    return h, h.run([method], seeds=[0])


CASES = [
    # method, setup that catches it, rule, setup that leaves the freedom open
    (EXTRA_EPOCH, "S3.1", "retrain epochs", "S2"),
    (HIGHER_LR, "S3.2", "retrain epoch 0 LR", "S3.1"),
    (NO_WD, "S3.1", "retrain epoch 0 weight decay", "S2"),
    (LOW_MOMENTUM, "S3.1", "retrain epoch 0 momentum", "S2"),
    (OWN_BASE, "S2", "same base checkpoint (sha256)", "S1"),
    (LONG_PRUNE, "S4.1", "prune epochs", "S3.2"),
    (OVER_BUDGET, "SX-B", "total flops budget (+1% tolerance)", "S2"),
    (OVER_BUDGET, "SX-A", "total epochs budget (+0% tolerance)", "S2"),
    (MORE_SAMPLES, "S3.1", "retrain epoch 0 samples per epoch", "S2"),
]


@pytest.mark.parametrize("method, setup, rule, open_setup", CASES)
def test_unfair_method_is_caught_with_the_rule_named(user_protocols, tmp_path, method, setup, rule, open_setup):
    with pytest.raises(ProtocolViolation) as caught:
        run(setup, method, tmp_path / "strict")
    assert caught.value.setup == setup and caught.value.rule == rule
    # the same method is fine where the setup leaves that freedom open
    _, rows = run(open_setup, method, tmp_path / "open")
    assert any(r["row"] == method and r["n"] == 1 for r in rows)


def test_altering_the_protocol_is_caught_under_every_setup(user_protocols, tmp_path):
    for setup in ("S1", "S3.2", "SX-B"):
        with pytest.raises(ProtocolViolation, match="protocol is read-only"):
            run(setup, MUTATES, tmp_path / setup)


def test_a_violated_run_is_marked_and_not_retrained(user_protocols, tmp_path):
    with pytest.raises(ProtocolViolation):
        run("S3.1", EXTRA_EPOCH, tmp_path)
    h, _ = run("S2", "l1norm", tmp_path)  # the store still works for fair runs
    rows = h.store.query("SELECT status, violation FROM runs WHERE method = ?", (EXTRA_EPOCH,))
    assert [r["status"] for r in rows] == ["violated"] and "retrain epochs" in rows[0]["violation"]
    violated = next(p for p in (tmp_path / "runs").iterdir() if (p / "violation.json").exists())
    assert json.loads((violated / "violation.json").read_text())["rule"] == "retrain epochs"
    assert not (violated / "metrics.json").exists()
    with pytest.raises(ProtocolViolation, match="retrain epochs"):  # from the store, at once
        run("S3.1", EXTRA_EPOCH, tmp_path)


def test_fair_l1norm_passes_every_setup(user_protocols, tmp_path):
    for setup in ("S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2", "SX-A", "SX-B"):
        _, rows = run(setup, "l1norm", tmp_path)
        assert any(r["row"] == "l1norm" for r in rows)


def test_s4_trains_the_pruning_phase_before_cutting(user_protocols, tmp_path):
    h, rows = run("S4.1", "l1norm", tmp_path)
    pruned = next(r for r in rows if r["row"] == "l1norm")
    trace = json.loads((tmp_path / "runs" / pruned["run_ids"][0] / "trace.json").read_text())["rows"]
    assert [(r["phase"], r["epoch"]) for r in trace] == [("prune", 0), ("retrain", 0), ("retrain", 1)]
    assert trace[0]["macs"] > trace[1]["macs"]  # dense during the pruning phase, pruned after


def _pruned_id(rows, method):
    return next(r for r in rows if r["row"] == method)["run_ids"][0]


def test_compare_names_the_strictest_setup_and_the_first_broken_rule(user_protocols, tmp_path, capsys):
    from prunebench.cli import main
    from prunebench.compare import compare_ids

    _, rows = run("S3.2", "l1norm", tmp_path)
    fair = _pruned_id(rows, "l1norm")
    _, rows = run("S3.1", HIGHER_LR, tmp_path)
    higher = _pruned_id(rows, HIGHER_LR)
    _, rows = run("S1", OWN_BASE, tmp_path)
    own = _pruned_id(rows, OWN_BASE)
    _, rows = run("S2", EXTRA_EPOCH, tmp_path)
    longer = _pruned_id(rows, EXTRA_EPOCH)

    r = compare_ids(tmp_path, fair, higher)
    assert r["strictest"] == "S3.1"
    assert r["breaks"]["setup"] == "S3.2" and r["breaks"]["rule"] == "retrain.lr"
    assert r["breaks"]["a"] == "0:0.01,1:0.001" and r["breaks"]["b"] == "0:0.1"
    assert r["sx"]["SX-A"]["comparable"] and r["sx"]["SX-B"]["comparable"]

    r = compare_ids(tmp_path, fair, own)
    assert r["strictest"] == "S1" and r["breaks"]["rule"] == "base"

    r = compare_ids(tmp_path, fair, longer)
    assert r["strictest"] == "S2" and r["breaks"]["rule"] == "retrain.epochs"
    assert not r["sx"]["SX-A"]["comparable"] and r["sx"]["SX-A"]["rule"] == "total.epochs"

    assert compare_ids(tmp_path, fair, fair)["breaks"] is None

    assert main(["compare", fair[:10], higher[:10], "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "comparable under S3.1" in out and "S3.2 breaks on retrain.lr" in out
    assert main(["compare", "zzz", fair, "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no run in store" in err and "starting with 'zzz'" in err and "more characters" not in err
    assert main(["compare", "", fair, "--store", str(tmp_path)]) == 2  # an empty prefix matches nothing
    assert main(["compare", "*", fair, "--store", str(tmp_path)]) == 2  # not a glob
    assert "starting with '*'" in capsys.readouterr().err
    base = next(p.name for p in (tmp_path / "runs").iterdir()
                if json.loads((p / "spec.json").read_text())["kind"] == "base")
    assert main(["compare", base, fair, "--store", str(tmp_path)]) == 2
    assert "is a dense base model" in capsys.readouterr().err
    assert main(["compare", fair, higher, "--store", str(tmp_path / "nowhere")]) == 2
    assert "no run store at" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()
    record = tmp_path / "runs" / higher / "metrics.json"  # as if trained from another copy of the data
    record.write_text(json.dumps({**json.loads(record.read_text()), "data_fingerprint": "f" * 32}))
    r = compare_ids(tmp_path, fair, higher)
    assert r["strictest"] is None and r["breaks"]["rule"] == "data" and r["breaks"]["b"] == "f" * 32
    assert not r["sx"]["SX-A"]["comparable"] and not r["sx"]["SX-B"]["comparable"]


def test_drop_is_measured_from_the_methods_own_base_under_s1(user_protocols, tmp_path):
    _, rows = run("S1", OWN_BASE, tmp_path)
    own_base = next(r for r in rows if r["row"].startswith("dense (4 epochs"))
    pruned = next(r for r in rows if r["row"] == OWN_BASE)
    assert pruned["drop"] == pytest.approx(own_base["mean"] - pruned["mean"])
    assert pruned["epochs"] == 4 + 2


def test_sx_b_with_a_pf_schedule_squeezes_the_pruning_epoch(user_protocols, tmp_path):
    from tests.conftest import RETRAIN, SUITE, write_yaml

    folder = user_protocols / "synth-long"
    write_yaml(folder / "suite.yaml", {**SUITE, "name": "synth-long",
                                       "base": {**SUITE["base"], "epochs": 8, "lr": "0:0.1,4:0.01"}})
    write_yaml(folder / "SX-B.yaml", {"setup": "SX-B", "suite": "synth-long", "ratios": [0.5], "pf": "P8F2",
                                      "retrain": RETRAIN, "budget": {"kind": "flops"}})
    protocol, _, _ = load_protocol("SX-B", "synth-long")
    h = Harness(protocol, store=tmp_path, device="cpu", progress=False, log=lambda m: None)
    planned = h.plan(["l1norm"], seeds=[0])
    speedup = h.dense_macs / planned[-1].macs
    squeezed = int(8 / speedup)  # Wang et al.: P30 at speedup 1.11 prunes at epoch 27
    assert [(p.row, p.spec.epochs()) for p in planned] == [
        ("dense", 8), (f"dense ({squeezed} epochs)", squeezed), ("l1norm", 2), ("Scratch-B of l1norm", 10)]
    assert planned[2].spec.base == planned[1].spec.run_id
    rows = h.run(["l1norm"], seeds=[0])  # the audit accepts the squeezed pipeline against P + F
    assert next(r for r in rows if r["row"] == "l1norm")["epochs"] == squeezed + 2


def test_dry_run_prints_scratch_b_epochs_of_the_named_l1_configs(capsys):
    from prunebench.cli import main

    def scratch_epochs_of(suite):
        assert main(["run", "--protocol", "SX-B", "--suite", suite, "--method", "l1norm", "--seeds", "0",
                     "--dry-run", "--json"]) == 0
        planned = json.loads(capsys.readouterr().out)
        return {p["target"]: p["phases"][0]["epochs"] for p in planned if p["row"].startswith("Scratch-B")}

    # 160-epoch base + 40 retraining epochs: int(160 * F1 / F2) + 40
    assert scratch_epochs_of("cifar10-resnet56") == {"config A": 178 + 40, "config B": 220 + 40}
    assert scratch_epochs_of("cifar10-vgg16") == {"config A": 243 + 40}


def test_compare_finds_a_pruned_run_and_its_scratch_b_comparable_under_sx_b(user_protocols, tmp_path):
    from prunebench.compare import compare_ids

    _, rows = run("SX-B", "l1norm", tmp_path)
    pruned, scratch = _pruned_id(rows, "l1norm"), _pruned_id(rows, "Scratch-B of l1norm")
    result = compare_ids(tmp_path, pruned, scratch)
    assert result["sx"]["SX-B"] == {"comparable": True}
    assert result["breaks"]["rule"] == "kind"  # the ladder compares pruning pipelines only
