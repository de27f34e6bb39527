"""The setups' budget arithmetic, by hand, without training: a dense model of 100 MACs pruned to
50, a 3-epoch base, 2 retraining epochs, 1,000 training images."""

from __future__ import annotations

import pytest

from prunebench.budget import Budgets
from prunebench.config import Protocol, Recipe, Suite
from prunebench.errors import UserError
from prunebench.method import Choices

BASE = {"epochs": 3, "lr": "0:0.1,2:0.01"}
SUITE = Suite.model_validate({"name": "toy", "dataset": "synthetic", "arch": "smallcnn", "base": BASE})


def budgets(setup: str, retrain_epochs: int = 2, **protocol) -> Budgets:
    kind = {"SX-A": "epochs", "SX-B": "flops"}.get(setup)
    p = Protocol.model_validate({"setup": setup, "suite": "toy", "retrain": {"epochs": retrain_epochs, "lr": 0.01},
                                 **({"budget": {"kind": kind}} if kind else {}), **protocol})
    return Budgets(p, SUITE, dense_macs=100, registered_size=1000)


def test_scratch_epochs_and_budgets_of_each_setup():
    b = budgets("SX-B")
    assert b.k1_k2(50) == (3, 2) and b.variant == "Scratch-B"
    assert b.scratch_epochs(50) == int(3 * 100 / 50) + 2 == 8  # the same FLOPs as the pipeline, rounded down
    assert b.budget(50, 1000) == 6 * (3 * 1000 * 100 + 2 * 1000 * 50)  # 6 FLOPs per MAC and sample (fwd + bwd)
    assert b.budget(50, 40) == 6 * (3 * 40 * 100 + 2 * 40 * 50)  # the images present, when fewer
    a = budgets("SX-A")
    assert a.variant == "Scratch-E" and a.scratch_epochs(50) == 5 and a.budget(50, 1000) == 5.0
    s2 = budgets("S2")
    assert s2.variant == "Scratch" and s2.scratch_epochs(50) == 3 and s2.budget(50, 1000) is None


def test_a_p_f_schedule_squeezes_the_dense_part_by_the_speedup():
    b = budgets("SX-B", pf="P3F2")
    assert b.squeezes and b.base_recipe.epochs == 3
    assert b.pipeline_base(50).epochs == int(3 * 50 / 100) == 1  # pruned at epoch P / speedup
    assert b.scratch_epochs(50) == 5  # the anchor: P + F
    assert b.budget(50, 1000) == 6 * (5 * 1000 * 50)
    assert not budgets("SX-A").squeezes


def test_an_own_pruning_phase_comes_out_of_the_retraining_budget():
    phase = Recipe(epochs=1, lr=0.01)
    # SX-A: epochs for epochs
    fitted = budgets("SX-A").fit(Choices(prune=phase), 50)
    assert fitted.retrain.epochs == 1
    # SX-B: a dense epoch costs F1/F2 = 2 pruned ones: (4*1000*50 - 1*1000*100) // (1000*50) = 2
    assert budgets("SX-B", retrain_epochs=4).fit(Choices(prune=phase), 50).retrain.epochs == 2
    with pytest.raises(UserError, match="leave no retraining epoch"):
        budgets("SX-B").fit(Choices(prune=phase), 50)  # (2*1000*50 - 100000) // 50000 = 0
    # a method that chose its own retraining length is left to the audit; outside SX nothing is fitted
    own = Choices(prune=phase, retrain=Recipe(epochs=5, lr=0.01))
    assert budgets("SX-A").fit(own, 50) == own
    assert budgets("S2").fit(Choices(prune=phase), 50) == Choices(prune=phase)
