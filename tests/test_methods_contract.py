"""Contract tests, parametrised over the method registry: every method gets them on registration."""

import pytest
import torch

from benchmark.flops import forward_macs
from benchmark.method import METHODS, PruneContext, Target, load_builtin_methods
from benchmark.models import ARCHS
from benchmark.pruning import apply_plan

load_builtin_methods()
ARCH = ARCHS.get("smallcnn")
SHAPE = (1, 16, 16)


def plan_for(name, seed=0, ratio=0.5):
    torch.manual_seed(seed)
    model = ARCH.build(10, 1)
    method = METHODS.get(name)
    plan = method.plan(model, Target(ratio=ratio), method.settings({}), PruneContext(ARCH, SHAPE, torch.Generator().manual_seed(seed)))
    return model, plan


@pytest.mark.parametrize("name", METHODS.names())
def test_plan_is_valid_and_the_pruned_model_runs(name):
    model, plan = plan_for(name)
    dense = forward_macs(model, SHAPE)
    plan.validate_for(model)
    apply_plan(model, plan, SHAPE)
    assert model(torch.randn(3, *SHAPE)).shape == (3, 10)
    assert forward_macs(model, SHAPE) < dense
    convs = dict(model.named_modules())
    assert {n: convs[n].out_channels for n in plan.keep} == plan.widths()


@pytest.mark.parametrize("name", METHODS.names())
def test_plan_is_deterministic_under_a_seed(name):
    assert plan_for(name, seed=3)[1] == plan_for(name, seed=3)[1]


@pytest.mark.parametrize("name", METHODS.names())
def test_ratio_zero_keeps_everything(name):
    model, plan = plan_for(name, ratio=0.0)
    convs = dict(model.named_modules())
    assert all(len(idx) == convs[n].out_channels for n, idx in plan.keep.items())
