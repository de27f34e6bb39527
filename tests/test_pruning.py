import pytest
import torch
from torch import nn

from prunebench.method import PruneContext, Target, load_builtin_methods
from prunebench.methods.l1norm import l1_keep
from prunebench.models import ARCHS, reinitialise
from prunebench.pruning import PruningPlan, apply_plan

load_builtin_methods()


def test_l1_keeps_the_filters_of_largest_l1_norm():
    w = torch.zeros(5, 2, 3, 3)
    # L1 norms: 18, 9, 36, 4.5, 27  ->  keeping 3 keeps filters 0, 2, 4
    for i, v in enumerate([1.0, 0.5, 2.0, 0.25, 1.5]):
        w[i] = v
    w[1, 0] = -0.5  # sign does not matter
    assert l1_keep(w, 3) == (0, 2, 4)
    assert l1_keep(w, 1) == (2,)


def test_l1norm_keeps_int_c_times_one_minus_p_and_the_original_weights():
    arch = ARCHS.get("smallcnn")
    torch.manual_seed(0)
    model = arch.build(10, 1)
    original = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    from prunebench.method import METHODS

    method = METHODS.get("l1norm")
    plan = method.plan(model, Target(ratio=0.3), method.settings({}), PruneContext(arch, (1, 28, 28), torch.Generator()))
    assert plan.widths() == {"features.0": int(8 * 0.7), "features.3": int(16 * 0.7), "features.6": int(32 * 0.7)}
    keep0 = plan.keep["features.0"]
    norms = original["features.0"].abs().sum((1, 2, 3))
    assert set(keep0) == set(torch.topk(norms, len(keep0)).indices.tolist())
    apply_plan(model, plan, (1, 28, 28))
    convs = dict(model.named_modules())
    assert torch.equal(convs["features.0"].weight, original["features.0"][list(keep0)])
    # the next conv lost the matching input channels
    assert torch.equal(convs["features.3"].weight,
                       original["features.3"][list(plan.keep["features.3"])][:, list(keep0)])
    assert convs["features.1"].num_features == len(keep0)
    assert model.fc.in_features == len(plan.keep["features.6"])


def test_resnet_small_dense_model_has_real_smaller_tensors():
    arch = ARCHS.get("resnet56")
    model = arch.build(10, 3)
    keep = Target(ratio=0.5).keep_counts(arch, model)
    assert set(keep) == {n for n in keep if n.endswith(".conv1")} and len(keep) == 27
    apply_plan(model, PruningPlan.first_k(keep), (3, 32, 32))
    block = model.layer2[3]
    assert block.conv1.weight.shape == (16, 32, 3, 3)
    assert block.bn1.weight.shape == (16,)
    assert block.conv2.weight.shape == (32, 16, 3, 3)  # output width of the block is untouched
    assert model.layer3[0].conv1.weight.shape == (32, 32, 3, 3)
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)


def test_plan_validation():
    model = ARCHS.get("smallcnn").build(10, 1)
    with pytest.raises(ValueError, match="invalid indices"):
        apply_plan(model, PruningPlan(keep={"features.0": (0, 0, 1)}), (1, 28, 28))
    with pytest.raises(Exception, match="not a Conv2d"):
        apply_plan(model, PruningPlan(keep={"fc": (0,)}), (1, 28, 28))


def test_reinitialise_draws_fresh_weights_with_the_standard_init():
    torch.manual_seed(0)
    model = ARCHS.get("smallcnn").build(10, 1)
    before = model.features[0].weight.detach().clone()
    model.features[1].running_mean.fill_(3.0)
    reinitialise(model)
    assert not torch.equal(before, model.features[0].weight)
    assert torch.all(model.features[1].running_mean == 0)
    # kaiming_uniform(a=sqrt(5)) bound = 1/sqrt(fan_in)
    assert model.features[0].weight.abs().max() <= 1 / 3


def test_plan_round_trips_through_json():
    plan = PruningPlan(keep={"b": (1, 3), "a": (0,)})
    assert PruningPlan.from_json(plan.to_json()) == plan
