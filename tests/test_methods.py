"""Method-specific tests with numbers that can be checked by hand."""

import math

import pytest
import torch
from torch import nn

from prunebench.data import load_dataset
from prunebench.errors import UserError
from prunebench.method import METHODS, Method, PruneContext, Target, kept, load_builtin_methods
from prunebench.methods.greg import GReg, GRegSettings
from prunebench.methods.magnitude import magnitude_masks
from prunebench.methods.thinet import contributions, greedy_remove
from prunebench.models import ARCHS, Arch, conv_layers
from prunebench.penalties import BnL1, GrowingL2, regularizer
from prunebench.pruning import PruningPlan, apply_masks
from prunebench.train import train_phases

load_builtin_methods()


def toy_arch(model: nn.Module, prunable: list[str] | None = None) -> Arch:
    return Arch("toy", lambda n, c: model, (1, 4, 4), 2, "hand-made", lambda m: prunable or conv_layers(m))


def ctx_for(model, prunable=None, data=None, shape=(1, 4, 4), seed=0):
    arch = toy_arch(model, prunable)
    arch = Arch(arch.name, arch.build, shape, 2, arch.description, arch.prunable)
    return PruneContext(arch, shape, torch.Generator().manual_seed(seed), data=data, batch_size=8)


def plan(name, model, ratio, ctx, **settings):
    method = METHODS.get(name)
    return method.plan(model, Target(ratio=ratio), method.settings(settings), ctx)


# --- l1norm -------------------------------------------------------------------------------

def test_l1norm_keeps_the_lowest_l1_filters_out_of_a_hand_made_conv():
    conv = nn.Conv2d(1, 4, 2, bias=False)
    with torch.no_grad():  # L1 norms 4, 0.4, 8, -> filter 3 has mixed signs: |1|+|-1|+|1|+|-1| = 4.0
        conv.weight.copy_(torch.tensor([[1.0, 1, 1, 1], [0.1, 0.1, -0.1, 0.1], [2, 2, 2, 2], [1, -1, 1, -1]])
                          .reshape(4, 1, 2, 2))
    model = nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 1, 4, 4))
    # ratio 0.5 keeps int(4 x 0.5) = 2: filter 2 (L1 8), then the tie of 0 and 3 (L1 4) goes to 0
    assert plan("l1norm", model, 0.5, ctx_for(model, ["0"])).keep == {"0": (0, 2)}
    assert plan("l1norm", model, 0.25, ctx_for(model, ["0"])).keep == {"0": (0, 2, 3)}


@pytest.mark.parametrize("channels, ratio, li, wang", [
    (16, 0.5, 8, 8), (64, 0.6, 25, 25), (512, 0.21, 404, 404),
    (10, 0.8, 1, 2),  # 10 x (1 - 0.8) = 1.9999999999999996 in floats: Li's int() keeps 1
    (100, 0.9, 9, 10), (4, 0.99, 1, 1), (7, 0.0, 7, 7),
])
def test_rounding_variants(channels, ratio, li, wang):
    assert kept(channels, ratio, "li") == li
    assert kept(channels, ratio, "wang") == wang == channels - min(math.ceil(ratio * channels), channels - 1)


def test_l1norm_stage_ratios_of_wang_et_al_on_resnet50():
    arch = ARCHS.get("resnet50")
    model = arch.build(1000, 3)
    ctx = PruneContext(arch, arch.input_shape, torch.Generator())
    widths = plan("l1norm", model, 0.5, ctx, stage_ratios=[0, 0.6, 0.6, 0.6, 0.21, 0], rounding="wang").widths()
    assert widths["layer1.0.conv1"] == 64 - math.ceil(0.6 * 64) == 25
    assert widths["layer2.3.conv2"] == 128 - math.ceil(0.6 * 128) == 51
    assert widths["layer3.5.conv1"] == 256 - math.ceil(0.6 * 256) == 102
    assert widths["layer4.2.conv2"] == 512 - math.ceil(0.21 * 512) == 404
    assert "conv1" not in widths and not any(n.endswith("conv3") for n in widths)  # residual widths stay


def test_stage_ratios_need_one_entry_per_stage():
    from prunebench.errors import UserError

    arch = ARCHS.get("resnet20")
    with pytest.raises(UserError, match="needs 5"):
        plan("l1norm", arch.build(10, 3), 0.5, PruneContext(arch, arch.input_shape, torch.Generator()),
             stage_ratios=[0, 0.5, 0.5, 0])


# --- random -------------------------------------------------------------------------------

def test_random_keeps_l1norms_counts_with_a_seeded_choice():
    arch = ARCHS.get("resnet20")
    model = arch.build(10, 3)
    ctx = lambda seed: PruneContext(arch, arch.input_shape, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = (plan("random", model, 0.5, ctx(s)) for s in (0, 0, 1))
    assert a == b and a != c
    assert a.widths() == plan("l1norm", model, 0.5, ctx(0)).widths()


# --- slimming -----------------------------------------------------------------------------

def test_slimming_global_threshold_removes_exactly_the_smallest_gammas():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -0.01, 0.3]))
        model[4].weight.copy_(torch.tensor([0.02, 0.9, -0.04, 0.2]))
    ctx = ctx_for(model)
    # 7 channels, ratio 3/7 -> int(7 x 3/7) = 3 go: |γ| 0.01, 0.02, 0.04 (one global threshold)
    assert plan("slimming", model, 3 / 7, ctx).keep == {"0": (0, 2), "3": (1, 3)}
    # ratio 0.9 -> 6 of 7 would go; each layer keeps its largest |γ|
    assert plan("slimming", model, 0.9, ctx).keep == {"0": (0,), "3": (1,)}
    method = METHODS.get("slimming")
    penalty = method.penalty(method.settings({"sparsity": 0.1}))  # the harness's bn_l1, as data
    assert penalty == BnL1(lam=0.1)
    reg = regularizer(penalty, None, ["0", "3"])(model, 0)
    assert reg.item() == pytest.approx(0.1 * (0.5 + 0.01 + 0.3 + 0.02 + 0.9 + 0.04 + 0.2))


# --- taylor -------------------------------------------------------------------------------

class OneBatch:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def batches(self, batch_size, generator=None, augment="none"):
        yield self.x, self.y


def test_taylor_matches_a_hand_computation_on_a_two_filter_layer():
    # logits = (a·x, b·x) from a 1x1 conv of 2 filters on a 1-pixel input; CE with label 0
    a, b, x = 0.7, -0.4, 2.0
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.Flatten())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([a, b]).reshape(2, 1, 1, 1))
    p0, p1 = torch.softmax(torch.tensor([a * x, b * x]), 0).tolist()
    # dL/dw0 = (p0 - 1)·x, dL/dw1 = p1·x; importance (g·w)^2
    want = [((p0 - 1) * x * a) ** 2, (p1 * x * b) ** 2]
    from prunebench.methods.taylor import taylor_scores

    data = [(torch.tensor([[[[x]]]]), torch.tensor([0]))] * 3  # averaged over 3 equal batches
    scores = taylor_scores(model, ["0"], data, "weight", (1, 1, 1))
    assert scores["0"].tolist() == pytest.approx(want)
    ctx = ctx_for(model, ["0"], OneBatch(torch.tensor([[[[x]]]]), torch.tensor([0])), shape=(1, 1, 1))
    # the filter with the smaller importance goes
    keep = plan("taylor", model, 0.5, ctx, criterion="weight", batches=1).keep["0"]
    assert keep == ((0,) if want[0] > want[1] else (1,))


# --- thinet -------------------------------------------------------------------------------

def test_thinet_greedy_finds_the_known_optimum():
    # channels 0 and 1 cancel exactly; 2 and 3 are large: removing {0, 1} loses nothing
    contrib = torch.tensor([[1.0, -1.0, 5.0, 0.0], [2.0, -2.0, 0.0, 5.0], [0.5, -0.5, 1.0, 1.0]])
    assert sorted(greedy_remove(contrib, 2)) == [0, 1]
    # a single removal: the channel of least energy (channel 0: 1 + 4 + 0.25 = 5.25 ties with 1 -> 0)
    assert greedy_remove(contrib, 1) == [0]


def test_thinet_contributions_sum_to_the_next_layers_output():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 1, 3, bias=False)
    x = torch.randn(4, 3, 3, 3)  # one output position per image
    contrib = contributions(conv, x, 5, torch.Generator().manual_seed(0))
    assert contrib.shape == (20, 3)
    want = conv(x).flatten().repeat_interleave(5)
    assert torch.allclose(contrib.sum(1), want, atol=1e-6)


def test_thinet_prunes_the_filters_whose_contribution_cancels():
    # conv A makes 3 channels (x scaled by 3, 1, -1); conv B sums them. Channels 1 and 2 cancel in
    # B's output: removing both loses nothing (the optimum). Greedy removes the least-energy
    # channel first (1, tied with 2, lower index), then the one that cancels it (2).
    a = nn.Conv2d(1, 3, 1, bias=False)
    b = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([3.0, 1.0, -1.0]).reshape(3, 1, 1, 1))
        b.weight.fill_(1.0)
    model = nn.Sequential(a, b, nn.Flatten(), nn.Linear(16, 2))
    data = OneBatch(torch.randn(8, 1, 4, 4), torch.zeros(8, dtype=torch.long))
    keep = plan("thinet", model, 0.6, ctx_for(model, ["0"], data), batches=1).keep
    assert keep == {"0": (0,)}


# --- greg ---------------------------------------------------------------------------------

def test_greg_penalty_grows_and_hits_only_the_filters_to_prune():
    s = GRegSettings(delta=0.01, update_every=10, ceiling=0.05)
    assert [GReg().penalty(s).lam(step) for step in (0, 9, 10, 25, 40, 1000)] == pytest.approx([0, 0, 0.01, 0.02, 0.04, 0.05])
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, 0.5]).reshape(2, 1, 1, 1))
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(16, 2))
    method = METHODS.get("greg")
    settings = method.settings({"delta": 0.01, "update_every": 10, "ceiling": 0.05})
    intent = method.intent(model, Target(ratio=0.5), settings, ctx_for(model, ["0"]))
    assert intent.keep == {"0": (0,)}  # the smaller-L1 filter 1 is to go
    # ½ λ ||w_1||² at step 25: 0.5 x 0.02 x 0.25
    penalty = method.penalty(settings)
    assert penalty == GrowingL2(delta=0.01, update_every=10, ceiling=0.05)
    assert regularizer(penalty, intent, ["0"])(model, 25).item() == pytest.approx(0.5 * 0.02 * 0.25)
    ctx = ctx_for(model, ["0"])
    ctx.intent = PruningPlan(keep={"0": (1,)})
    assert method.plan(model, Target(ratio=0.5), settings, ctx) == ctx.intent  # it removes what it regularised


# --- magnitude and lottery ----------------------------------------------------------------

def test_magnitude_keeps_exactly_the_right_count_per_layer_and_globally():
    params = {"a.weight": torch.tensor([[0.1, -5.0, 0.3, 2.0]]), "b.weight": torch.tensor([[1.0, -0.2], [0.05, 4.0]])}
    layer = magnitude_masks(params, Target(ratio=0.5), "layer")
    assert layer["a.weight"].tolist() == [[False, True, False, True]]
    assert layer["b.weight"].tolist() == [[True, False], [False, True]]
    # global, 8 weights at 0.25 -> the 2 smallest |w| of all (0.05, 0.1) go
    glob = magnitude_masks(params, Target(ratio=0.25), "global")
    assert glob["a.weight"].tolist() == [[False, True, True, True]]
    assert glob["b.weight"].tolist() == [[True, True], [False, True]]
    model = ARCHS.get("smallcnn").build(10, 1)
    ctx = PruneContext(ARCHS.get("smallcnn"), (1, 16, 16), torch.Generator())
    masks = plan("magnitude", model, 0.3, ctx).masks
    for name, p in model.named_parameters():
        if name in masks:
            assert int(masks[name].sum()) == p.numel() - int(0.3 * p.numel())


def test_masks_survive_optimizer_steps_in_the_training_loop(tmp_path):
    torch.manual_seed(0)
    model = ARCHS.get("smallcnn").build(10, 1)
    ctx = PruneContext(ARCHS.get("smallcnn"), (1, 16, 16), torch.Generator())
    masks = plan("magnitude", model, 0.7, ctx).masks
    apply_masks(model, masks)
    train, test = load_dataset("synthetic")
    from prunebench.config import Recipe

    recipe = Recipe(epochs=1, lr="0:0.1", batch_size=64, weight_decay=5e-4, samples_per_epoch=128)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_phases(model, [("retrain", recipe)], train, test, seed=0, input_shape=(1, 16, 16),
                 checkpoint=tmp_path / "c.pt", masks=masks, progress=False)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0  # momentum and weight decay did not revive them
        assert not torch.equal(params[name][mask], before[name][mask])  # the kept weights trained


# --- through the harness: rewinding, budgets, plug-ins ------------------------------------

def harness(setup, store):
    from prunebench.protocol_files import load_protocol
    from prunebench.runner import Harness

    protocol, _, sha = load_protocol(setup, "synth-small")
    return Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None)


def retrain_start(h, method):
    """The model a stored pruned run started retraining from, rebuilt through the harness's path."""
    job = next(p for p in h.grid([method], [0], None, None, live=True) if p.spec.kind == "pruned")
    return job.spec, job.start(h.store.run_dir(job.spec.run_id))


@pytest.mark.parametrize("epoch", [0, 3])
def test_lottery_rewinds_the_kept_weights_bit_for_bit(user_protocols, store, epoch):
    h = harness("S2", store)
    method = f"lottery:rewind_epoch={epoch}"
    h.run([method], seeds=[0])
    spec, start = retrain_start(h, method)
    if epoch == 0:
        want = h._fresh(0).state_dict()  # the base run's init: the same seeded construction
    else:  # epoch 3 is the end of the base's training: the replay must equal the stored base model
        want = torch.load(h.store.run_dir(spec.base) / "model.pt")
    masks = start.masks
    for name, value in start.model.state_dict().items():
        expected = want[name] * masks[name] if name in masks else want[name]
        assert torch.equal(value, expected), name
    assert sum(int(m.sum()) for m in masks.values()) < sum(m.numel() for m in masks.values())


def test_rewinding_past_the_base_training_is_refused(user_protocols, store):
    from prunebench.errors import UserError

    with pytest.raises(UserError, match="rewind_epoch between 0 and 3"):
        harness("S2", store).run(["lottery:rewind_epoch=4"], seeds=[0])


def test_an_own_pruning_phase_comes_out_of_the_sx_a_retraining(user_protocols, store):
    h = harness("SX-A", store)
    rows = {r["row"]: r for r in h.run(["greg"], seeds=[0])}
    spec = h.store.spec(rows["greg"]["run_ids"][0])
    # 2 retraining epochs budgeted: GReg's phase takes half, retraining the rest; Scratch-E all 3 + 2
    assert [(phase, r.epochs) for phase, r in spec.phases] == [("prune", 1), ("retrain", 1)]
    assert rows["greg"]["epochs"] == rows["Scratch-E of greg"]["epochs"] == 5


def test_an_own_pruning_phase_that_cannot_fit_the_sx_b_budget_is_explained(user_protocols, store):
    from prunebench.errors import UserError

    with pytest.raises(UserError, match="leave no retraining epoch"):
        harness("SX-B", store).plan(["slimming"], seeds=[0])


def test_method_settings_reach_the_method_and_the_run_id(user_protocols, store):
    h = harness("S2", store)
    a = {p.row: p.spec.run_id for p in h.plan(["magnitude", "magnitude:scope=global"], seeds=[0])}
    assert set(a) == {"dense", "magnitude", "magnitude(scope=global)"}
    assert a["magnitude"] != a["magnitude(scope=global)"]
    # a default written out is the same computation: the same run
    b = {p.row: p.spec.run_id for p in h.plan(["magnitude:scope=layer"], seeds=[0])}
    assert b["magnitude"] == a["magnitude"]
    from prunebench.errors import UserError

    with pytest.raises(UserError, match="scope"):
        h.plan(["magnitude:scope=everywhere"], seeds=[0])


PLUGIN = '''
from prunebench.method import Method, register_method
from prunebench.pruning import PruningPlan


@register_method
class KeepFirst(Method):
    name = "keepfirst"
    description = "keeps the first filters of every layer"

    def plan(self, model, target, settings, ctx):
        return PruningPlan.first_k(target.keep_counts(ctx.arch, model))
'''


def test_a_plugin_file_registers_a_method_the_cli_can_run(user_protocols, store, tmp_path, capsys):
    from prunebench.cli import main

    path = tmp_path / "my_methods.py"
    path.write_text(PLUGIN)
    assert main(["run", "--protocol", "S2", "--suite", "synth-small", "--plugins", str(path), "--method",
                 "keepfirst", "--seeds", "0", "--store", str(store), "--json"]) == 0
    import json

    rows = {r["row"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["keepfirst"]["n"] == 1 and rows["keepfirst"]["speedup"] > 1
    assert main(["run", "--protocol", "S2", "--plugins", str(tmp_path / "nope.py"), "--method", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["list", "methods", "--plugins", str(broken)]) == 2
    assert "RuntimeError: boom" in capsys.readouterr().err


def test_an_entry_point_plugin_is_loaded_with_the_builtins(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    import prunebench.method as bm

    (tmp_path / "ep_methods.py").write_text(PLUGIN.replace('"keepfirst"', '"keepfirst-ep"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    found = [EntryPoint("keepfirst", "ep_methods", bm.ENTRY_POINTS)]
    monkeypatch.setattr(bm, "entry_points", lambda group: found if group == bm.ENTRY_POINTS else [])
    assert "keepfirst-ep" in bm.load_builtin_methods().names()


def test_scratch_and_the_pipeline_share_one_scratch_run(user_protocols, store):
    planned = harness("SX-A", store).plan(["l1norm", "scratch"], seeds=[0])
    rows = [p.row for p in planned]
    assert rows == ["dense", "l1norm", "Scratch-E of l1norm"]  # `scratch` adds nothing new


def test_user_mistakes_stop_the_grid_before_anything_trains(user_protocols, store):
    from prunebench.errors import UserError

    h = harness("S2", store)
    with pytest.raises(UserError, match="stage_ratios needs an architecture with stages"):
        h.run(["l1norm", "l1norm:stage_ratios=[0,0.5,0]"], seeds=[0])
    assert not (store / "runs").exists() or not list((store / "runs").iterdir())  # not even the base trained


def test_slimming_refuses_a_network_without_a_bn_per_conv_output():
    from prunebench.errors import UserError

    arch = ARCHS.get("densenet40")
    model = arch.build(10, 3)
    with pytest.raises(UserError, match="BatchNorm over each pruned conv's output channels alone"):
        plan("slimming", model, 0.5, PruneContext(arch, arch.input_shape, torch.Generator()))


def test_without_a_pruning_phase_under_s4_an_own_phase_is_not_added(user_protocols, store, tmp_path):
    from prunebench.protocol_files import load_protocol
    from prunebench.runner import Harness
    from tests.conftest import LADDER, write_yaml

    path = write_yaml(tmp_path / "s41.yaml", {k: v for k, v in LADDER["S4.1"].items() if k != "prune"})
    protocol, _, _ = load_protocol(str(path), "synth-small")
    h = Harness(protocol, store=store, device="cpu", progress=False, log=lambda m: None)
    spec = next(p.spec for p in h.plan(["greg"], seeds=[0]) if p.spec.kind == "pruned")
    assert [phase for phase, _ in spec.phases] == ["retrain"]


def readme_plugin() -> str:
    """The plug-in example of the README, as printed there."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("```python\n# my_methods.py\n", 1)[1].split("```", 1)[0]
    return block


def test_the_readme_plugin_runs_and_refuses_unknown_settings(user_protocols, store, tmp_path, capsys):
    from prunebench.cli import main

    path = tmp_path / "my_methods.py"
    path.write_text(readme_plugin())
    args = ["run", "--protocol", "S2", "--suite", "synth-small", "--plugins", str(path), "--seeds", "0",
            "--store", str(store), "--dry-run"]
    assert main([*args, "--method", "spread:power=1"]) == 0
    assert "spread(power=1.0)" in capsys.readouterr().out
    assert main([*args, "--method", "spread:powr=1"]) == 2  # a misspelt setting is not silently dropped
    assert "has no setting 'powr'. Did you mean 'power'?" in capsys.readouterr().err


def test_a_plain_pydantic_settings_model_still_refuses_unknown_and_non_finite_settings():
    from pydantic import BaseModel

    class Loose(BaseModel):  # ignores unknown keys on its own
        power: float = 2.0

    class Plain(Method):
        name = "test-plain-settings"
        Settings = Loose

        def plan(self, model, target, settings, ctx):
            return PruningPlan.first_k(target.keep_counts(ctx.arch, model))

    with pytest.raises(UserError, match="has no setting 'retrain_lr'"):
        Plain().settings({"retrain_lr": 0.1})
    with pytest.raises(UserError, match="setting 'power' is nan"):
        Plain().settings({"power": float("nan")})


def test_a_method_without_plan_or_name_is_refused_when_registered():
    from prunebench.method import register_method as register

    class NoPlan(Method):
        name = "test-noplan"

    class NoName(Method):
        def plan(self, model, target, settings, ctx):
            return None

    with pytest.raises(UserError, match="does not define plan"):
        register(NoPlan)
    with pytest.raises(UserError, match="has no `name`"):
        register(NoName)
    assert "test-noplan" not in METHODS
