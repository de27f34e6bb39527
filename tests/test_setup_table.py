"""What each setup fixes is one table (`setups.PARTS`): the audit and `bench compare` read it and
agree on every recipe field under every setup; a scratch baseline is compared as its setup does."""

import pytest

from prunebench.audit import audit_phase
from prunebench.compare import StoredRun, compare, holds
from prunebench.config import SETUPS, Recipe, RunSpec
from prunebench.errors import ProtocolViolation
from prunebench.setups import PARTS, RULES, describe, fixed_fields
from prunebench.trace import TraceRow

N_TRAIN = 100
BASE = Recipe(epochs=2, lr="0:0.1,1:0.01", batch_size=32)
# one change of each field of a recipe; a new Recipe field fails here until it is classified
CHANGED = {
    "epochs": {"epochs": 3}, "lr": {"lr": "0:0.2,1:0.01"}, "batch_size": {"batch_size": 16},
    "samples_per_epoch": {"samples_per_epoch": 50}, "momentum": {"momentum": 0.5}, "weight_decay": {"weight_decay": 0.0},
    "nesterov": {"nesterov": True}, "augment": {"augment": "flip"}, "pad": {"pad": 0}, "precision": {"precision": "bf16"},
}


def test_every_recipe_field_is_in_exactly_one_part():
    fields = [f for part in PARTS.values() for f in part]
    assert sorted(fields) == sorted(Recipe.model_fields) == sorted(CHANGED)


def rows_of(recipe: Recipe) -> list[TraceRow]:
    """The trace a loop faithful to `recipe` records."""
    samples = recipe.samples_per_epoch or N_TRAIN
    return [TraceRow(phase="retrain", epoch=e, lr=recipe.lr.lr_at(e, recipe.epochs), samples=samples, steps=1,
                     batch_size=min(recipe.batch_size, samples), momentum=recipe.momentum,
                     weight_decay=recipe.weight_decay, nesterov=recipe.nesterov, augment=recipe.augment,
                     pad=recipe.pad, precision=recipe.precision, macs=10, train_loss=1.0, train_acc=50.0,
                     test_loss=1.0, test_acc=50.0, seconds=0.1) for e in range(recipe.epochs)]


def stored(recipe: Recipe, kind: str = "pruned", flops: int = 1) -> StoredRun:
    spec = RunSpec(kind=kind, suite="s", dataset="d", arch="a", seed=0, phases=[("retrain", recipe)],
                   base="b" if kind == "pruned" else None)
    return StoredRun(spec, {"total_epochs": recipe.epochs, "epochs": recipe.epochs, "train_flops": flops}, None)


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("field", sorted(CHANGED))
def test_audit_and_compare_agree_on_every_field_under_every_setup(setup, field):
    other = Recipe.model_validate({**BASE.model_dump(), **CHANGED[field]})
    fixed = field in fixed_fields(setup, "retrain")
    try:
        audit_phase(setup, "retrain", BASE, rows_of(other), N_TRAIN)
        caught = False
    except ProtocolViolation:
        caught = True
    phase_rules = [r for r in RULES[setup] if r.startswith("retrain.")]
    broken = [r for r in phase_rules if not holds(r, stored(BASE), stored(other))[0]]
    assert caught == fixed, f"audit under {setup} on {field}"
    assert bool(broken) == fixed, f"compare under {setup} on {field}"
    audit_phase(setup, "retrain", BASE, rows_of(BASE), N_TRAIN)  # the faithful trace passes


def test_pad_and_precision_are_fixed_from_s3_1_and_said_so():
    for field in ("pad", "precision"):
        assert field in fixed_fields("S3.1", "retrain") and field not in fixed_fields("S2", "retrain")
    from prunebench.config import Protocol

    protocol = Protocol(setup="S3.1", suite="s", retrain=BASE)
    fixed, _ = describe(protocol, 3)
    words = dict(fixed)["retraining batch size, samples per epoch, momentum, weight decay, nesterov, augmentation, "
                        "crop padding, precision"]
    assert "crop padding 4" in words and "precision fp32" in words


def test_a_pruned_run_and_its_scratch_baseline_compare_as_sx_does():
    # a pipeline of 1000 FLOPs; Scratch-B trains whole epochs of 90 FLOPs: 11 epochs (990) match
    pruned = stored(BASE, flops=1000)
    scratch = {n: stored(Recipe(epochs=n, lr="0:0.1", batch_size=64), kind="scratch", flops=90 * n) for n in (10, 11, 12)}
    result = compare(pruned, scratch[11])
    assert result["sx"]["SX-A"]["comparable"] is False and result["sx"]["SX-A"]["rule"] == "total.epochs"
    assert result["sx"]["SX-B"]["comparable"]  # same target, the budget's FLOPs: no base rule for scratch
    assert compare(scratch[11], pruned)["sx"]["SX-B"]["comparable"]
    assert result["strictest"] is None and result["breaks"]["rule"] == "kind"
    assert not compare(pruned, scratch[10])["sx"]["SX-B"]["comparable"]  # an epoch short of its budget
    assert not compare(pruned, scratch[12])["sx"]["SX-B"]["comparable"]  # over it
