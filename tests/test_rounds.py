"""Iterative pruning: rounds owned by the harness. Each round's plan is the method's, on the
weights the harness hands it; masks tighten monotonically; every round trains as a phase of the
trace, audited, and counted in SX budgets; a rewound round starts from init x mask exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import prunebench.runner
import prunebench.train
from prunebench.config import Rounds
from prunebench.errors import ProtocolViolation, UserError
from prunebench.method import Target
from prunebench.methods.magnitude import magnitude_masks, weights
from prunebench.protocol_files import load_protocol
from prunebench.pruning import PruningPlan
from prunebench.reverify import finished_runs, verify_runs
from prunebench.runner import Harness
from tests.conftest import RETRAIN, write_yaml

ROUNDS_PLUGIN = str(Path(__file__).with_name("plugins") / "rounds.py")


def test_the_schedule_prunes_a_fraction_of_what_remains_and_ends_on_the_target():
    # the paper's 20% per round to 50%: 1 - 0.8^r until it would pass 0.5, then 0.5
    assert Rounds(per_round=0.2).schedule(0.5) == pytest.approx([0.2, 0.36, 0.488, 0.5])
    # three rounds to 50%: each keeps the cube root of a half of what remains
    q = 1 - 0.5 ** (1 / 3)
    assert Rounds(rounds=3).schedule(0.5) == pytest.approx([q, 1 - (1 - q) ** 2, 0.5])
    assert Rounds(rounds=1).schedule(0.5) == [0.5]
    with pytest.raises(ValueError, match="before the last round"):  # rounds past the target would only train
        Rounds(rounds=4, per_round=0.5).schedule(0.6)
    with pytest.raises(ValueError, match="at most 100 rounds"):
        Rounds(per_round=0.001).schedule(0.9)
    with pytest.raises(ValueError):
        Rounds()


def harness(setup, store, **kwargs):
    protocol, _, sha = load_protocol(setup, "synth-small")
    return Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None,
                   **kwargs)


def only_run(store: Path, method: str) -> Path:
    """The finished pruned run of `method` in the store (its one seed)."""
    for metrics in store.glob("runs/*/metrics.json"):
        spec = json.loads((metrics.parent / "spec.json").read_text())
        if spec["kind"] == "pruned" and spec["method"]["name"] == method:
            return metrics.parent
    raise AssertionError(f"no finished pruned run of {method}")


def test_masks_after_each_round_are_the_methods_on_the_weights_so_far_and_tighten(user_protocols, store):
    h = harness("S2", store)
    rows = {r["row"]: r for r in h.run(["magnitude:rounds=2"], seeds=[0])}  # per layer, magnitude's default
    assert rows["magnitude(rounds=2)"]["n"] == 1
    run = only_run(store, "magnitude")
    first = PruningPlan.load(run / "rounds" / "1").masks
    final = PruningPlan.load(run).masks
    s1 = 1 - 0.5 ** 0.5
    # round 1: magnitude's own masks at 1 - sqrt(0.5) of every tensor, computed here on the base's weights
    base = json.loads((run / "spec.json").read_text())["base"]
    model = h.build()
    model.load_state_dict(torch.load(store / "runs" / base / "model.pt", weights_only=True))
    expected = magnitude_masks(weights(model, "conv+linear"), Target(ratio=s1, protect=h.protocol.protect), "layer")
    assert expected.keys() == first.keys() and all(torch.equal(expected[n], first[n]) for n in first)
    for name, mask in first.items():
        n = mask.numel()
        assert int((~mask).sum()) == min(int(s1 * n), n - h.protocol.protect.weight_floor(n))
        # the last round reaches the target exactly and keeps nothing the first removed
        assert int((~final[name]).sum()) == min(int(0.5 * n), n - h.protocol.protect.weight_floor(n))
        assert not bool((final[name] & ~mask).any())
    trace = json.loads((run / "trace.json").read_text())["rows"]
    assert [r["phase"] for r in trace] == ["round1"] * RETRAIN["epochs"] + ["retrain"] * RETRAIN["epochs"]
    verdicts = verify_runs(store, finished_runs(store))
    assert all(v.ok for v in verdicts), [(v.row, v.problems) for v in verdicts if not v.ok]
    # a round's plan swapped for the final one: it still tightens, but it is not at its round's ratio
    PruningPlan.load(run).save(run / "rounds" / "1")
    verdict = next(v for v in verify_runs(store, finished_runs(store)) if v.row.startswith("magnitude"))
    assert any(p.startswith("round 1's plan misses its ratio") for p in verdict.problems), verdict.problems


def test_a_round_whose_plan_revives_a_removed_weight_is_refused(user_protocols, store):
    with pytest.raises(ProtocolViolation) as caught:
        harness("S2", store, plugins=(ROUNDS_PLUGIN,)).run(["cheat-revive:rounds=3"], seeds=[0])
    assert caught.value.rule == "masks tighten monotonically (round 2)"


def test_a_rewound_round_starts_from_init_times_its_mask_bit_for_bit(user_protocols, store, monkeypatch):
    starts = {}
    real = Harness._train

    def spying(self, model, spec, directory, phases, checkpoint, *args, **kwargs):
        if phases[0][0].startswith("round"):
            starts[phases[0][0]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return real(self, model, spec, directory, phases, checkpoint, *args, **kwargs)

    monkeypatch.setattr(Harness, "_train", spying)
    h = harness("S2", store)
    h.run(["lottery:rounds=3"], seeds=[0])
    run = only_run(store, "lottery")
    init = h._fresh(0).state_dict()  # the base's init: the same seeded construction
    assert set(starts) == {"round1", "round2"}
    for r in (1, 2):
        masks = PruningPlan.load(run / "rounds" / str(r)).masks
        for name, value in starts[f"round{r}"].items():
            want = init[name] * masks[name] if name in masks else init[name]
            assert torch.equal(value.cpu(), want), (r, name)


@pytest.mark.parametrize("method", ["lottery", "l1norm"])  # masks; filters silenced by masks, cut at the end
def test_every_round_counts_in_the_sx_budget(user_protocols, store, method):
    folder = user_protocols / "synth-small"
    write_yaml(folder / "SX-B.yaml", {"setup": "SX-B", "suite": "synth-small", "ratios": [0.5],
                                       "retrain": {**RETRAIN, "epochs": 6, "lr": "0:0.01,3:0.001"},
                                       "budget": {"kind": "flops", "tolerance": 0.01}})
    rows = {r["row"]: r for r in harness("SX-B", store).run([f"{method}:rounds=3"], seeds=[0])}
    assert {f"{method}(rounds=3)", f"Scratch-B of {method}(rounds=3)"} <= set(rows)
    run = only_run(store, method)
    metrics = json.loads((run / "metrics.json").read_text())
    trace = json.loads((run / "trace.json").read_text())["rows"]
    phases = [r["phase"] for r in trace]
    # one epoch a round under SX; the retraining keeps what is left of its budget
    assert phases.count("round1") == phases.count("round2") == 1 and 1 <= phases.count("retrain") < 6
    assert metrics["total_train_flops"] <= metrics["budget"]["amount"] * 1.01
    own = sum(6 * r["samples"] * r["macs"] for r in trace)
    assert metrics["train_flops"] == own  # the rounds' FLOPs are the run's own, counted with the retraining's
    # rounds that would leave no retraining epoch are refused before anything trains, saying how to fix it
    with pytest.raises(UserError, match=r"between 10 pruning rounds \(9 x 1 epoch.*fewer 'rounds'"):
        harness("SX-B", store).run(["magnitude:rounds=10"], seeds=[0])
    with pytest.raises(AssertionError, match="no finished pruned run of magnitude"):
        only_run(store, "magnitude")


def test_s4_fixes_the_rounds_and_their_recipe(user_protocols, store):
    folder = user_protocols / "synth-small"
    s41 = json.loads(json.dumps(load_protocol("S4.1", "synth-small")[0].model_dump(mode="json")))
    write_yaml(folder / "S4.1.yaml", {k: v for k, v in s41.items() if v is not None})
    # no rounds in the protocol: one shot for everyone; a method's own rounds are more training
    with pytest.raises(ProtocolViolation) as caught:
        harness("S4.1", store).run(["magnitude:rounds=50"], seeds=[0])
    assert caught.value.rule == "pruning rounds" and (caught.value.expected, caught.value.actual) == (1, 50)
    # the protocol's rounds and round recipe: every method prunes in them, a method's own epochs are refused
    write_yaml(folder / "S4.1.yaml", {**{k: v for k, v in s41.items() if v is not None}, "rounds": 2,
                                      "round": {**RETRAIN, "epochs": 1, "lr": "0:0.01"}})
    with pytest.raises(ProtocolViolation) as caught:
        harness("S4.1", store).run(["magnitude:round_epochs=2"], seeds=[0])
    assert caught.value.rule == "round epochs"
    rows = {r["row"] for r in harness("S4.1", store).run(["magnitude", "l1norm"], seeds=[0])}
    assert {"magnitude", "l1norm"} <= rows
    trace = json.loads((only_run(store, "l1norm") / "trace.json").read_text())["rows"]
    assert [r["phase"] for r in trace].count("round1") == 1  # the protocol's one round before the last


def test_the_dry_run_shows_the_rounds(user_protocols, capsys):
    from prunebench.cli import main

    assert main(["run", "--protocol", "SX-B", "--method", "lottery:rounds=3", "--seeds", "0", "--dry-run",
                 "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    lottery = next(p for p in planned if p["row"] == "lottery(rounds=3)")
    assert [ph["phase"] for ph in lottery["phases"]] == ["round1", "round2", "retrain"]
    q = 1 - 0.5 ** (1 / 3)
    assert [ph.get("ratio") for ph in lottery["phases"]] == [round(q, 4), round(1 - (1 - q) ** 2, 4), None]


def test_one_shot_is_one_round(user_protocols, store, monkeypatch):
    trained = []
    real = prunebench.runner.train_phases
    monkeypatch.setattr(prunebench.runner, "train_phases",
                        lambda *a, **k: trained.append([p for p, _ in a[1]]) or real(*a, **k))
    harness("S2", store).run(["lottery:rounds=1"], seeds=[0])
    assert trained[-1] == ["retrain"]


@pytest.mark.parametrize("method, needle", [
    ("l1norm:round_epochs=2", "prunes in one shot; give it 'rounds' too"),
    ("lottery:rounds=1,round_epochs=2", "prunes in one shot; give it 'rounds' too"),
])
def test_settings_that_rounds_cannot_honour_are_refused_before_anything_trains(user_protocols, store, method,
                                                                                needle):
    with pytest.raises(UserError, match=needle):
        harness("S2", store).run([method], seeds=[0])
    assert not list(store.glob("runs/*/trace.json"))


def test_stage_ratios_are_not_pruned_in_rounds(user_protocols, capsys):
    from prunebench.cli import main

    assert main(["run", "--protocol", "S2", "--suite", "cifar10-resnet20", "--method",
                 "l1norm:rounds=2,stage_ratios=[0,0.5,0.3,0.5,0]", "--seeds", "0", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "drop 'rounds' or 'stage_ratios'" in err and "Traceback" not in err


def test_a_run_killed_between_rounds_resumes_to_the_same_model(user_protocols, tmp_path, monkeypatch):
    def pruned_sha(store):
        return json.loads((only_run(store, "lottery") / "metrics.json").read_text())["model_sha256"]

    harness("S2", tmp_path / "clean").run(["lottery:rounds=3"], seeds=[0])
    real, seen = prunebench.runner.train_phases, []

    def killed_in_round2(*a, **k):
        seen.append(a[1][0][0])
        if seen.count("round2") == 1 and a[1][0][0] == "round2":
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(prunebench.runner, "train_phases", killed_in_round2)
    with pytest.raises(KeyboardInterrupt):
        harness("S2", tmp_path / "killed").run(["lottery:rounds=3"], seeds=[0])
    assert "round1" in seen and list((tmp_path / "killed").glob("runs/*/rounds/1/plan.json"))
    epochs = []
    real_epoch = prunebench.train._train_epoch
    monkeypatch.setattr(prunebench.train, "_train_epoch", lambda *a, **k: epochs.append(1) or real_epoch(*a, **k))
    harness("S2", tmp_path / "killed").run(["lottery:rounds=3"], seeds=[0])
    assert len(epochs) == 2 * RETRAIN["epochs"]  # round 2 and the retraining: round 1 resumed from its checkpoint
    assert pruned_sha(tmp_path / "killed") == pruned_sha(tmp_path / "clean")


def test_an_iterative_run_taken_by_another_membership_keeps_its_rounds_and_verifies(user_protocols, store,
                                                                                    monkeypatch):
    # recipe cross-validation: lottery retrained with magnitude's recipe (the protocol's) is the same
    # computation as lottery's own run: it takes that training, round plans included
    h = harness("S2", store)
    own = {r["row"]: r for r in h.run(["lottery:rounds=3"], seeds=[0])}
    trained = []
    real = prunebench.runner.train_phases
    monkeypatch.setattr(prunebench.runner, "train_phases", lambda *a, **k: trained.append(a[1]) or real(*a, **k))
    lent = {r["row"]: r for r in h.run(["lottery:rounds=3"], seeds=[0],
                                        borrow={"lottery:rounds=3": ("magnitude", h.protocol.retrain)})}
    taken = next(r for row, r in lent.items() if "with the recipe of magnitude" in row)
    assert trained == [] and taken["mean"] == own["lottery(rounds=3)"]["mean"]
    directory = store / "runs" / taken["run_ids"][0]
    assert [p.name for p in sorted((directory / "rounds").iterdir())] == ["1", "2"]
    verdicts = verify_runs(store, finished_runs(store))
    assert all(v.ok for v in verdicts), [(v.row, v.problems) for v in verdicts if not v.ok]


def test_rounds_under_a_budget_train_at_the_first_lr_however_short_the_retraining_left(user_protocols, store):
    folder = user_protocols / "synth-small"
    write_yaml(folder / "SX-A.yaml", {"setup": "SX-A", "suite": "synth-small", "ratios": [0.5],
                                       "retrain": {**RETRAIN, "epochs": 3, "lr": "0:0.01,2:0.001"},
                                       "budget": {"kind": "epochs"}})
    harness("SX-A", store).run(["lottery:rounds=3"], seeds=[0])
    trace = json.loads((only_run(store, "lottery") / "trace.json").read_text())["rows"]
    # two rounds of one epoch leave one retraining epoch; the rounds still train at 0.01, not the last stage's LR
    assert [(r["phase"], r["lr"]) for r in trace] == [("round1", 0.01), ("round2", 0.01), ("retrain", 0.001)]


def test_revived_names_what_a_later_plan_keeps_that_an_earlier_one_removed():
    from prunebench.pruning import revived

    first = PruningPlan(masks={"w": torch.tensor([True, False, False, True])})
    assert revived(PruningPlan(masks={"w": torch.tensor([True, False, False, False])}), first, {}) is None
    assert revived(PruningPlan(masks={"w": torch.tensor([True, True, True, False])}), first, {}) == ("weights of w", 2)
    assert revived(PruningPlan(masks={"v": torch.tensor([True])}), first, {})[0].startswith("a plan of another kind")
    widths = {"conv": 4}
    kept = PruningPlan(keep={"conv": (0, 2)})
    assert revived(PruningPlan(keep={"conv": (2,)}), kept, widths) is None
    assert revived(PruningPlan(keep={"conv": (0, 1, 2)}), kept, widths) == ("filters of conv", 1)
    assert revived(PruningPlan(keep={}), kept, widths) == ("filters of conv", 2)  # the layer left whole again
