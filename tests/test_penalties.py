"""The harness-owned penalties a closed-division method declares, on a model small enough to check
by hand."""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from prunebench.config import MethodSpec, Recipe, RunSpec, canonical
from prunebench.penalties import BnL1, GroupLasso, GrowingL2, Penalty, regularizer
from prunebench.pruning import PruningPlan


def tiny() -> nn.Module:
    """A 1x1 conv with two filters, weights 3 and 4, then a BN with scales 0.5 and -2."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([3.0, 4.0]).view(2, 1, 1, 1))
        model[1].weight.copy_(torch.tensor([0.5, -2.0]))
    return model


DROP_SECOND = PruningPlan(keep={"0": (0,)})


def test_bn_l1_is_lambda_times_the_sum_of_absolute_scales():
    term = regularizer(BnL1(lam=0.1), None, ["0"])(tiny(), 0)
    assert term.item() == pytest.approx(0.1 * (0.5 + 2.0))
    assert regularizer(BnL1(lam=0.0), None, ["0"])(tiny(), 0) is None


def test_growing_l2_acts_on_the_dropped_filters_with_a_growing_lambda():
    penalty = GrowingL2(delta=0.01, update_every=10, ceiling=0.03)
    assert [penalty.lam(s) for s in (0, 9, 10, 25, 1000)] == pytest.approx([0, 0, 0.01, 0.02, 0.03])
    term = regularizer(penalty, DROP_SECOND, ["0"])
    assert term(tiny(), 0) is None  # λ = 0 in the first K_u steps
    assert term(tiny(), 25).item() == pytest.approx(0.5 * 0.02 * 4.0**2)  # only filter 1 (weight 4)
    with pytest.raises(ValueError, match="intent"):
        regularizer(penalty, None, ["0"])


def test_group_lasso_sums_filter_norms_over_prunable_convs_or_the_dropped_filters():
    assert regularizer(GroupLasso(lam=0.5), None, ["0"])(tiny(), 0).item() == pytest.approx(0.5 * (3 + 4))
    assert regularizer(GroupLasso(lam=0.5, on="intent"), DROP_SECOND, ["0"])(tiny(), 0).item() == pytest.approx(2.0)


def test_a_penalty_is_data_with_finite_bounded_parameters_and_part_of_the_run_id():
    adapter = TypeAdapter(Penalty)
    assert adapter.validate_json('{"kind": "bn_l1", "lam": 0.001}') == BnL1(lam=0.001)
    for bad in ('{"kind": "bn_l1", "lam": NaN}', '{"kind": "bn_l1", "lam": -1}', '{"kind": "l0", "lam": 1}',
                '{"kind": "growing_l2", "delta": 1e9, "update_every": 1, "ceiling": 1}'):
        with pytest.raises(ValidationError):
            adapter.validate_json(bad)
    spec = RunSpec(kind="pruned", suite="s", dataset="synthetic", arch="smallcnn", seed=0,
                   phases=[("prune", Recipe(epochs=1, lr=0.1)), ("retrain", Recipe(epochs=1, lr=0.1))],
                   method=MethodSpec(name="slimming", ratio=0.5))
    with_penalty = spec.model_copy(update={"penalty": BnL1(lam=1e-4)})
    stronger = spec.model_copy(update={"penalty": BnL1(lam=1e-3)})
    assert len({spec.run_id, with_penalty.run_id, stronger.run_id}) == 3
    # a spec.json (defaults dropped) reads back to the same spec: the penalty keeps its kind
    assert RunSpec.model_validate_json(canonical(with_penalty)) == with_penalty
    # the default (no penalty, closed division) leaves the id of every other run as it was
    assert spec.model_copy(update={"penalty": None, "division": "closed"}).run_id == spec.run_id
