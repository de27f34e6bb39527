import pytest
from pydantic import ValidationError

from prunebench.config import MethodSpec, Protocol, Recipe, RunSpec, run_id
from prunebench.schedule import LRSchedule


def test_parses_the_papers_piecewise_notation():
    s = LRSchedule.model_validate("0:0.1,30:0.01,60:0.001")
    assert s.stages == [(0, 0.1), (30, 0.01), (60, 0.001)]
    assert [s.lr_at(e, 90) for e in (0, 29, 30, 59, 60, 89)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert str(s) == "0:0.1,30:0.01,60:0.001"


def test_parses_cosine():
    s = LRSchedule.model_validate("cosine:0.1")
    assert s.lr_at(0, 10) == pytest.approx(0.1)
    assert s.lr_at(5, 10) == pytest.approx(0.05)
    s2 = LRSchedule.model_validate("cosine:0.1:0.01")
    assert s2.lr_at(5, 10) == pytest.approx(0.055)


@pytest.mark.parametrize("text, message", [
    ("10:0.1,30:0.01", "epoch 0"),
    ("0:0.1,30:0.01,20:0.001", "increase"),
    ("0:0.1,abc", "EPOCH:LR"),
    ("0:-0.1", "> 0"),
    ("cosine:x", "numbers"),
])
def test_rejects_bad_schedules_with_a_useful_message(text, message):
    with pytest.raises(ValidationError, match=message):
        LRSchedule.model_validate(text)


def test_schedule_longer_than_the_epochs_is_an_error():
    with pytest.raises(ValidationError, match="only 20 epochs"):
        Recipe(epochs=20, lr="0:0.1,30:0.01")


def test_stretch_keeps_decay_fractions():
    # Rethinking's base recipe: x0.1 at 50% and 75% of 160 epochs; Scratch-B trains longer.
    r = Recipe(epochs=160, lr="0:0.1,80:0.01,120:0.001").with_epochs(243)
    assert r.epochs == 243
    assert r.lr.stages == [(0, 0.1), (121, 0.01), (182, 0.001)]


def test_config_is_frozen_and_forbids_unknown_fields():
    r = Recipe(epochs=1, lr=0.1)
    with pytest.raises(ValidationError):
        r.epochs = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        Recipe(epochs=1, lr=0.1, warmup=3)


def _spec(**recipe) -> RunSpec:
    return RunSpec(kind="base", suite="s", dataset="fashion-mnist", arch="smallcnn", seed=0,
                   phases=[("pretrain", Recipe(epochs=8, lr="0:0.1,4:0.01", **recipe))])


def test_run_ids_are_pinned():
    # Changing these ids renames every stored run: only do it on purpose.
    assert run_id(_spec()) == PINNED_BASE
    pruned = RunSpec(kind="pruned", suite="s", dataset="fashion-mnist", arch="smallcnn", seed=1,
                     phases=[("retrain", Recipe(epochs=4, lr="0:0.01"))], protocol="s/SX-B",
                     base=PINNED_BASE, method=MethodSpec(name="l1norm", ratio=0.5))
    assert run_id(pruned) == PINNED_PRUNED


def test_defaults_do_not_change_the_id_but_values_do():
    assert run_id(_spec(momentum=0.9, weight_decay=1e-4)) == run_id(_spec())
    assert run_id(_spec(momentum=0.8)) != run_id(_spec())


def test_protocol_checks_ratios_and_budget():
    base = {"setup": "SX-B", "suite": "x", "retrain": {"epochs": 1, "lr": 0.1},
            "budget": {"kind": "flops"}}
    assert Protocol.model_validate(base).scratch_variant == "Scratch-B"
    with pytest.raises(ValidationError, match="outside"):
        Protocol.model_validate({**base, "ratios": [1.0]})
    with pytest.raises(ValidationError, match="kind: flops"):
        Protocol.model_validate({**base, "budget": {"kind": "epochs"}})
    with pytest.raises(ValidationError, match="setup"):
        Protocol.model_validate({**base, "setup": "S9"})


PINNED_BASE = "ff5108690b3d8537b0519695ba16f4f972b9052e3ee73c15d5cc86dd71bb4316"
PINNED_PRUNED = "1c0f4e20124865c49a1a22f806789e7aae0dfd4abeb05c50ca25cc47462b781d"
