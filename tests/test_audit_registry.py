import pytest

from prunebench._registry import Registry
from prunebench.audit import audit_budget, audit_phase
from prunebench.config import Recipe
from prunebench.errors import ProtocolViolation, UserError
from prunebench.trace import Trace, TraceRow

RECIPE = Recipe(epochs=2, lr="0:0.1,1:0.01", batch_size=32, momentum=0.9, weight_decay=1e-4)


def row(epoch, **kw):
    base = dict(phase="retrain", epoch=epoch, lr=[0.1, 0.01][epoch] if epoch < 2 else 0.01, samples=100,
                steps=4, batch_size=32, momentum=0.9, weight_decay=1e-4, nesterov=False, augment="crop+flip",
                pad=4, macs=1000,
                train_loss=1.0, train_acc=50.0, test_loss=1.0, test_acc=50.0, seconds=0.1)
    return TraceRow(**{**base, **kw})


def test_a_faithful_phase_passes():
    for setup in ("S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2", "SX-A", "SX-B"):
        audit_phase(setup, "retrain", RECIPE, [row(0), row(1)], n_train=100)


@pytest.mark.parametrize("rows, rule", [
    ([row(0), row(1), row(2)], "retrain epochs"),
    ([row(0), row(1, lr=0.1)], "retrain epoch 1 LR"),
    ([row(0, samples=200), row(1)], "retrain epoch 0 samples per epoch"),
    ([row(0), row(1, weight_decay=0.0)], "retrain epoch 1 weight decay"),
    ([row(0, momentum=0.5), row(1)], "retrain epoch 0 momentum"),
    ([row(0, batch_size=64), row(1)], "retrain epoch 0 batch size"),
    ([row(0), row(1, pad=0)], "retrain epoch 1 crop padding"),
    ([row(0, pad=None), row(1)], "retrain epoch 0 crop padding"),  # a trace that does not say
    ([row(0, precision="bf16"), row(1)], "retrain epoch 0 precision"),
])
def test_each_broken_rule_is_named(rows, rule):
    with pytest.raises(ProtocolViolation) as e:
        audit_phase("S3.2", "retrain", RECIPE, rows, n_train=100)
    assert e.value.rule == rule and e.value.setup == "S3.2"
    audit_phase("S2", "retrain", RECIPE, rows, n_train=100)  # S2 leaves retraining free


def test_s3_1_leaves_the_lr_free_but_not_the_epochs():
    audit_phase("S3.1", "retrain", RECIPE, [row(0, lr=0.5), row(1, lr=0.5)], n_train=100)
    with pytest.raises(ProtocolViolation, match="retrain epochs"):
        audit_phase("S3.1", "retrain", RECIPE, [row(0)], n_train=100)


def test_a_missing_fixed_phase_is_caught():
    with pytest.raises(ProtocolViolation, match="prune epochs"):
        audit_phase("S4.1", "prune", RECIPE, [], n_train=100)
    audit_phase("S3.2", "prune", RECIPE, [], n_train=100)


def test_budget_overrun_beyond_tolerance():
    trace = Trace(rows=(row(0), row(1)))  # 2 x 100 samples x 6 x 1000 = 1.2e6 FLOPs
    assert trace.train_flops == 1.2e6
    audit_budget("SX-B", "flops", 1.2e6, trace.train_flops, 0.0)
    audit_budget("SX-B", "flops", 1.19e6, trace.train_flops, 0.01)
    with pytest.raises(ProtocolViolation, match="budget"):
        audit_budget("SX-B", "flops", 1.1e6, trace.train_flops, 0.01)
    with pytest.raises(ProtocolViolation):
        audit_budget("SX-A", "epochs", 1, trace.epochs, 0.0)


def test_registry_rejects_duplicates_and_lists_names():
    reg: Registry[int] = Registry("widget")
    reg.register("b", 1)
    reg.register("a")(2)
    assert reg.names() == ["a", "b"] and reg.get("a") == 2
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 3)
    with pytest.raises(UserError, match="unknown widget 'c'. Valid names: a, b"):
        reg.get("c")
