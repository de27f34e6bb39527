"""Targets enforced: a plan is checked against its target over every prunable filter or weight,
before anything trains; a miss is a "pruning target" violation, recorded on the run it concerns."""

import json
from pathlib import Path

import pytest
import torch

from prunebench.config import Protect
from prunebench.errors import ProtocolViolation
from prunebench.method import Target
from prunebench.methods._common import global_plan
from prunebench.methods.magnitude import magnitude_masks
from prunebench.models import ARCHS
from prunebench.protocol_files import load_protocol
from prunebench.pruning import PruningPlan
from prunebench.runner import Harness
from prunebench.targets import TargetRule, check, density

TARGETS = str(Path(__file__).with_name("plugins") / "targets.py")
SMALL = ARCHS.get("smallcnn")
WIDTHS = {"features.0": 8, "features.3": 16, "features.6": 32}  # 56 prunable filters


def small():
    return SMALL.build(10, 1)


def first(counts):
    return PruningPlan(keep={n: tuple(range(k)) for n, k in counts.items()})


LAYER = TargetRule()


def violation(plan, rule=LAYER, ratio=0.5, config=None, granularity="filter", model=None, arch=SMALL):
    with pytest.raises(ProtocolViolation) as caught:
        check("S2", plan, model or small(), arch, Target(ratio=ratio, config=config), rule, granularity)
    assert caught.value.rule == "pruning target"
    return caught.value


def test_per_layer_targets_keep_exactly_the_counts():
    # li: int(C * 0.5) = 4, 8, 16; wang: C - min(ceil(0.5 C), C - 1) = the same at 0.5
    kept = check("S2", first({"features.0": 4, "features.3": 8, "features.6": 16}), small(), SMALL,
                 Target(ratio=0.5), TargetRule(), "filter")
    assert kept == {"kept": 28, "of": 56, "unit": "filters", "scope": "layer", "expected": 28, "slack": 0}
    v = violation(first({"features.0": 4, "features.3": 8, "features.6": 17}))
    assert "features.6 keeps 16 of 32" in str(v.expected) and "17" in str(v.actual)
    v = violation(first({"features.0": 4, "features.3": 8}))  # a layer left out keeps all its filters
    assert "features.6 keeps 16" in str(v.expected) and "32 (the plan keeps 44 of 56" in str(v.actual)
    # ratio 0.3 with Wang et al.'s rounding: 8 - ceil(2.4) = 5, 16 - ceil(4.8) = 11, 32 - ceil(9.6) = 22
    wang = {"features.0": 5, "features.3": 11, "features.6": 22}
    check("S2", first(wang), small(), SMALL, Target(ratio=0.3), TargetRule(rounding="wang"), "filter")
    violation(first({**wang, "features.6": 23}), TargetRule(rounding="wang"), ratio=0.3)


def test_global_targets_keep_exactly_the_fraction_and_every_protected_floor():
    rule = TargetRule(scope="global")
    # 56 filters at 0.5: exactly 28 kept, every layer one filter at least (the default floor)
    kept = check("S2", first({"features.0": 1, "features.3": 3, "features.6": 24}), small(), SMALL,
                 Target(ratio=0.5), rule, "filter")
    assert (kept["kept"], kept["expected"], kept["slack"]) == (28, 28, 0)
    v = violation(first({"features.0": 1, "features.3": 1, "features.6": 28}), rule)  # 30: one kept per layer is no excuse
    assert str(v.actual) == "30 of 56" and "28 of 56" in str(v.expected)
    v = violation(first({"features.0": 8, "features.3": 16, "features.6": 28}), rule)  # 90% kept
    assert str(v.actual) == "52 of 56" and "28 of 56" in str(v.expected)
    violation(first({"features.0": 1, "features.3": 1, "features.6": 20}), rule)  # fewer than the target
    # protected layers: a quarter of each layer's filters (2, 4, 8), whatever the threshold
    quarter = Target(ratio=0.5, protect=Protect(min_fraction=0.25))
    with pytest.raises(ProtocolViolation, match="protected layers") as caught:
        check("S2", first({"features.0": 1, "features.3": 3, "features.6": 24}), small(), SMALL, quarter, rule,
              "filter")
    assert "features.0 keeps 1 of 8" in str(caught.value.actual)
    check("S2", first({"features.0": 2, "features.3": 4, "features.6": 22}), small(), SMALL, quarter, rule, "filter")
    # at 0.9 the floors (14 filters) keep more than 56 - int(50.4) = 6: exactly the floors
    steep = Target(ratio=0.9, protect=Protect(min_fraction=0.25))
    kept = check("S2", first({"features.0": 2, "features.3": 4, "features.6": 8}), small(), SMALL, steep, rule,
                 "filter")
    assert kept["expected"] == 14
    # per layer, the floor raises the counts: li keeps int(8 x 0.1) -> 1, the floor 2
    assert steep.keep_counts(SMALL, small()) == {"features.0": 2, "features.3": 4, "features.6": 8}
    assert Protect(min_filters=3).floor(2) == 2 and Protect(min_fraction=0.1).floor(16) == 2


def test_global_plans_protect_each_layers_best_filters():
    scores = {"a": torch.tensor([0.1, 0.2, 0.3, 0.4]), "b": torch.tensor([5.0, 6.0, 7.0, 8.0])}
    # floor 1: the 4 lowest go except a's best, which is protected: b loses its lowest instead
    assert global_plan(scores, Target(ratio=0.5)).keep == {"a": (3,), "b": (1, 2, 3)}
    # floor half: each keeps its best two; only 4 unprotected filters to drop
    assert global_plan(scores, Target(ratio=0.5, protect=Protect(min_fraction=0.5))).keep == {"a": (2, 3),
                                                                                               "b": (2, 3)}
    assert global_plan(scores, Target(ratio=0.25, protect=Protect(min_fraction=0.5))).keep == {"a": (2, 3),
                                                                                                "b": (0, 1, 2, 3)}
    w = {"x": torch.tensor([[1.0, -2.0], [3.0, 4.0]]), "y": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    masks = magnitude_masks(w, Target(ratio=0.5, protect=Protect(min_fraction=0.5)), "global")
    assert masks["x"].tolist() == [[False, False], [True, True]] and masks["y"].tolist() == [False, False, True, True]
    masks = magnitude_masks(w, Target(ratio=0.5), "global")  # no floor on weights by default: x goes whole
    assert not masks["x"].any() and masks["y"].all()


def test_named_configs_and_filters_outside_the_prunable_layers():
    resnet = ARCHS.get("resnet20")
    model = resnet.build(10, 3)
    convs = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    outside = next(n for n in convs if n not in resnet.prunable(model))
    v = violation(first({outside: 1}), model=model, arch=resnet)
    assert repr(outside) in str(v.actual)
    if resnet.configs:
        name = min(resnet.configs)
        want = resnet.configs[name](model)
        check("S2", first(want), model, resnet, Target(config=name), TargetRule(), "filter")
        more = dict(want)
        layer = next(iter(more))
        more[layer] = convs[layer]
        violation(first(more), config=name, ratio=None, model=model, arch=resnet)


def test_weight_masks_count_every_weight_of_their_kind():
    model = small()
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    total = sum(p.numel() for p in weights.values())  # 72 + 1152 + 4608 + 320 = 6152

    def keep_fraction(p, fraction):
        m = torch.ones_like(p, dtype=torch.bool)
        m.view(-1)[: p.numel() - round(p.numel() * fraction)] = False
        return m

    half = {n: keep_fraction(p, 0.5) for n, p in weights.items()}
    kept = check("S2", PruningPlan(masks=half), model, SMALL, Target(ratio=0.5), TargetRule(), "weight")
    assert kept["of"] == total == 6152 and kept["kept"] == 3076
    check("S2", PruningPlan(masks=half), model, SMALL, Target(ratio=0.5), TargetRule(scope="global"), "weight")
    # one weight too many: in one layer (per layer), or in total (global)
    more = {**half, "fc.weight": keep_fraction(weights["fc.weight"], 161 / 320)}
    assert "fc.weight keeps 160 of 320" in str(violation(PruningPlan(masks=more), granularity="weight").expected)
    violation(PruningPlan(masks=more), TargetRule(scope="global"), granularity="weight")
    # a global threshold may move weights between layers, not add any
    moved = {**more, "features.0.weight": keep_fraction(weights["features.0.weight"], 35 / 72)}
    check("S2", PruningPlan(masks=moved), model, SMALL, Target(ratio=0.5), TargetRule(scope="global"), "weight")
    violation(PruningPlan(masks=moved), granularity="weight")
    one_layer = PruningPlan(masks={"features.6.weight": keep_fraction(weights["features.6.weight"], 0.5)})
    v = violation(one_layer, granularity="weight")
    assert f"{total - 2304}" in str(v.actual)  # counted over all 6152 weights, not the masked 4608
    assert density(model, one_layer.masks) == pytest.approx((total - 2304) / total)
    violation(PruningPlan(masks={n: keep_fraction(p, 0.999) for n, p in weights.items()}), granularity="weight")
    bn = PruningPlan(masks={"features.1.weight": torch.zeros(8, dtype=torch.bool)})
    assert "features.1.weight" in str(violation(bn, granularity="weight").actual)
    convs_only = {n: m for n, m in half.items() if n != "fc.weight"}
    check("S2", PruningPlan(masks=convs_only), model, SMALL, Target(ratio=0.5), TargetRule(weights="conv"), "weight")
    violation(PruningPlan(masks=convs_only), granularity="weight")  # counted over conv + linear: too dense
    violation(PruningPlan(masks=half), granularity="filter")  # masks from a filter method


def test_plans_of_invalid_indices_are_violations_not_tracebacks():
    v = violation(PruningPlan(keep={"features.0": (0, 0, 1, 2), "features.3": tuple(range(8)),
                                    "features.6": tuple(range(16))}))
    assert "invalid indices" in str(v.actual)
    v = violation(first({"features.0": 4, "features.3": 8, "features.6": 16}), TargetRule(stage_ratios=(0.5,)))
    assert "stage ratios for the stages of smallcnn" in str(v.expected)


@pytest.fixture
def s2(user_protocols):
    return load_protocol("S2", "synth-small")[0]


def harness(protocol, store):
    return Harness(protocol, store=store, device="cpu", progress=False, log=lambda m: None, plugins=(TARGETS,))


@pytest.mark.parametrize("method", ["cheat-keeps-all", "cheat-keeps-90", "cheat-dense-masks", "cheat-one-layer-mask"])
def test_cheating_plans_stop_the_grid_before_anything_trains(s2, tmp_path, method):
    h = harness(s2, tmp_path)
    with pytest.raises(ProtocolViolation) as caught:
        h.run([method], seeds=[0])
    assert caught.value.rule == "pruning target" and caught.value.recorded is None
    assert not any((tmp_path / "runs").glob("*/model.pt"))  # not even the base trained


def test_stage_ratios_only_where_the_row_shows_them(s2, tmp_path):
    with pytest.raises(ProtocolViolation, match="stage_ratios setting"):
        harness(s2, tmp_path).plan(["cheat-undeclared-stages"], seeds=[0])


def test_a_plan_that_cheats_on_trained_weights_is_a_recorded_violation(s2, tmp_path, capsys):
    from prunebench.cli import main

    h = harness(s2, tmp_path)
    assert [p.row for p in h.plan(["cheat-trained-only"], seeds=[0])] == ["dense", "cheat-trained-only"]
    with pytest.raises(ProtocolViolation) as caught:
        h.run(["cheat-trained-only"], seeds=[0])
    run_id = caught.value.recorded
    assert run_id and json.loads((tmp_path / "runs" / run_id / "violation.json").read_text())["rule"] == "pruning target"
    assert not (tmp_path / "runs" / run_id / "model.pt").exists()
    assert main(["run", "--protocol", "S2", "--suite", "synth-small", "--method", "cheat-trained-only", "--seeds", "0",
                 "--plugins", TARGETS, "--store", str(tmp_path)]) == 3
    assert f"Run {run_id[:12]} is marked violated" in capsys.readouterr().err


def test_honest_runs_record_what_they_keep(s2, tmp_path, user_protocols):
    rows = harness(s2, tmp_path).run(["l1norm", "magnitude:layers=conv"], seeds=[0])
    metrics = {r["row"]: json.loads((tmp_path / "runs" / r["run_ids"][0] / "metrics.json").read_text())
               for r in rows}
    assert metrics["l1norm"]["target"] == {"kept": 28, "of": 56, "unit": "filters", "scope": "layer",
                                           "expected": 28, "slack": 0, "rule": TargetRule().model_dump(mode="json"),
                                           "protect": {"min_filters": 1, "min_fraction": 0.0}}
    model = harness(s2, tmp_path).build()
    convs = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    fc = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    magnitude = metrics["magnitude(layers=conv)"]
    assert magnitude["target"]["unit"] == "conv weights" and magnitude["target"]["of"] == convs
    # its density is over every conv and linear weight: the dense fc counts
    assert magnitude["density"] == pytest.approx((convs - magnitude["target"]["of"] // 2 + fc) / (convs + fc), abs=1e-3)
