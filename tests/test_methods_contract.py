"""Contract tests, parametrised over the method registry: every method gets them on registration.

Each method plans on a tiny model, then runs through the harness on synthetic data under S2 and
SX-B: the plan is valid, the pruned model runs, the reported MACs/params/density are those of the
model stored, the same seed gives the same result, and the protocol audit passes.
"""

import json

import pytest
import torch

from prunebench.data import load_dataset
from prunebench.flops import effective_macs, forward_macs, param_count
from prunebench.method import METHODS, PruneContext, Target, load_builtin_methods
from prunebench.models import ARCHS
from prunebench.protocol_files import load_protocol
from prunebench.pruning import PruningPlan, apply_plan
from prunebench.runner import Harness
from tests.conftest import write_yaml

load_builtin_methods()
# the built-in methods; test plug-ins other modules register (and which break rules on purpose) are left out
BUILTIN = [n for n in METHODS.names() if type(METHODS.get(n)).__module__.startswith("prunebench.methods.")]
ARCH = ARCHS.get("smallcnn")
SHAPE = (1, 16, 16)


def plan_for(name, seed=0, ratio=0.5):
    torch.manual_seed(seed)
    model = ARCH.build(10, 1)
    method = METHODS.get(name)
    train, _ = load_dataset("synthetic")
    ctx = PruneContext(ARCH, SHAPE, torch.Generator().manual_seed(seed), data=train, batch_size=64)
    return model, method.plan(model, Target(ratio=ratio), method.settings({}), ctx)


@pytest.mark.parametrize("name", BUILTIN)
def test_plan_is_valid_and_the_pruned_model_runs(name):
    model, plan = plan_for(name)
    dense = forward_macs(model, SHAPE)
    plan.validate_for(model)
    apply_plan(model, plan, SHAPE)
    assert model(torch.randn(3, *SHAPE)).shape == (3, 10)
    assert effective_macs(model, SHAPE) < dense
    if plan.structured:
        convs = dict(model.named_modules())
        assert {n: convs[n].out_channels for n in plan.keep} == plan.widths()
    else:
        assert forward_macs(model, SHAPE) == dense  # masks keep the dense shapes
        assert plan.density() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("name", BUILTIN)
def test_plan_is_deterministic_under_a_seed(name):
    assert plan_for(name, seed=3)[1] == plan_for(name, seed=3)[1]


@pytest.mark.parametrize("name", BUILTIN)
def test_method_declares_what_it_is(name):
    method = METHODS.get(name)
    assert method.granularity in ("filter", "weight")
    assert set(method.hooks) <= {"regularizer", "rewind"}
    settings = method.settings({})  # every setting has a default (the paper's)
    assert type(settings).model_config.get("extra") == "forbid"
    assert ("regularizer" in method.hooks) == (type(method).regularizer is not type(METHODS.get("l1norm")).regularizer)


def stored(h, run_id):
    directory = h.store.run_dir(run_id)
    return h.store.spec(run_id), json.loads((directory / "metrics.json").read_text()), directory


def check_reported_numbers_match_the_stored_model(h, run_id):
    spec, metrics, directory = stored(h, run_id)
    model = h.build()
    plan = PruningPlan.load(directory)
    if spec.kind == "scratch" and spec.widths is not None:
        plan = PruningPlan.first_k(spec.widths)
    if plan is not None and plan.structured:
        apply_plan(model, PruningPlan.first_k(plan.widths()), h.input_shape)
    model.load_state_dict(torch.load(directory / "model.pt"))  # the shapes are the planned ones
    assert model(torch.randn(2, *h.input_shape)).shape == (2, 10)
    assert metrics["macs"] == forward_macs(model, h.input_shape)
    assert metrics["effective_macs"] == effective_macs(model, h.input_shape)
    assert metrics["params"] == param_count(model)
    if plan is not None and plan.masks:  # the masks survived training: pruned weights are still zero
        params = dict(model.named_parameters())
        for name, mask in plan.masks.items():
            assert torch.count_nonzero(params[name][~mask]) == 0
        assert metrics["density"] == pytest.approx(plan.density())
        assert metrics["effective_macs"] < metrics["macs"]
    return metrics


# A faster sibling of the synthetic suite: 128 samples per epoch, so that every method runs its
# whole pipeline twice under each setup in a few seconds. SX-B has a one-epoch pruning phase for
# everyone: a regularising method's own phase at the dense MACs would not fit a tiny retraining
# budget (that case is tested in test_setups).
TINY = {"epochs": 1, "lr": "0:0.01", "batch_size": 32, "augment": "flip", "samples_per_epoch": 128}


@pytest.fixture
def tiny_suite(user_protocols):
    folder = user_protocols / "synth-tiny"
    write_yaml(folder / "suite.yaml", {"name": "synth-tiny", "dataset": "synthetic", "arch": "smallcnn",
                                       "base": {**TINY, "epochs": 2, "lr": "0:0.1,1:0.01"}})
    write_yaml(folder / "S2.yaml", {"setup": "S2", "suite": "synth-tiny", "retrain": TINY})
    write_yaml(folder / "SX-B.yaml", {"setup": "SX-B", "suite": "synth-tiny", "retrain": TINY, "prune": TINY,
                                      "budget": {"kind": "flops"}})
    return folder


@pytest.mark.parametrize("setup", ["S2", "SX-B"])
@pytest.mark.parametrize("name", BUILTIN)
def test_method_runs_through_the_harness(name, setup, tiny_suite, tmp_path):
    protocol, _, sha = load_protocol(setup, "synth-tiny")
    # lottery's default rounds (20% a round: 4 rounds to 0.5) cannot fit this one-epoch SX budget (that
    # refusal is tested in test_rounds); it runs one-shot here
    spec = "lottery:rounds=1" if (name, setup) == ("lottery", "SX-B") else name
    results = []
    for store in ("a", "b"):
        h = Harness(protocol, store=tmp_path / store, protocol_sha256=sha, device="cpu", progress=False,
                    log=lambda m: None)
        rows = h.run([spec], seeds=[0])  # a protocol violation would raise here
        runs = h.store.query("SELECT id, status FROM runs")
        assert all(r["status"] == "done" for r in runs)
        pruned = [r for r in rows if r["row"] != "dense"]
        assert pruned, rows
        dense = next(r for r in rows if r["row"] == "dense")
        for row in pruned:
            metrics = check_reported_numbers_match_the_stored_model(h, row["run_ids"][0])
            assert row["effective_macs"] == metrics["effective_macs"] < dense["macs"]
            assert row["speedup"] == pytest.approx(dense["macs"] / metrics["effective_macs"])
        if setup == "SX-B":
            assert any(r["row"].startswith("Scratch-B of") for r in rows)
        results.append([(r["row"], r["mean"], [stored(h, i)[1]["model_sha256"] for i in r["run_ids"]])
                        for r in rows])
    assert results[0] == results[1]  # same seed, same result, bit for bit
