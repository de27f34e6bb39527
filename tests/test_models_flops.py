import copy
import functools
import json

import pytest
import torch
from torch import nn

from prunebench.cli import main
from prunebench.flops import forward_macs, param_count
from prunebench.method import Target
from prunebench.models import ARCHS, conv_layers
from prunebench.pruning import PruningPlan, apply_plan


@functools.cache  # building VGG-16 (ImageNet) takes a second
def macs(name: str, config: str | None = None) -> int:
    arch = ARCHS.get(name)
    model = arch.build(arch.num_classes, arch.input_shape[0])
    if config:
        apply_plan(model, PruningPlan.first_k(Target(config=config).keep_counts(arch, model)), arch.input_shape)
    return forward_macs(model, arch.input_shape)


@pytest.mark.parametrize("name, expected", [
    ("resnet20", 40_551_040), ("resnet56", 125_485_696), ("resnet110", 252_887_680),
])
def test_resnet_macs_pins(name, expected):
    assert macs(name) == expected


def cifar_resnet_macs(n: int, inner: float = 1.0) -> int:
    """He et al.'s CIFAR ResNet-(6n+2) by hand: stem 32*32*16*27; per stage 2n 3x3 convs at
    32, 16, 8 (the first of stages 2, 3 with half the input channels); fc 64*10. `inner`: the
    fraction of filters each block's first conv keeps."""
    total, c_in = 32 * 32 * 16 * 27, 16
    for width, side in ((16, 32), (32, 16), (64, 8)):
        k = int(width * inner)
        for _ in range(n):
            total += side * side * (c_in * k + k * width) * 9
            c_in = width
    return total + 64 * 10


def test_resnet_macs_match_a_hand_count():
    # n = 3 for ResNet-20, written out
    n = 3
    stage1 = 2 * n * 32 * 32 * 16 * 16 * 9
    stage2 = (32 * 16 * 9 + (2 * n - 1) * 32 * 32 * 9) * 16 * 16
    stage3 = (64 * 32 * 9 + (2 * n - 1) * 64 * 64 * 9) * 8 * 8
    assert macs("resnet20") == 32 * 32 * 16 * 27 + stage1 + stage2 + stage3 + 64 * 10
    for depth in (20, 32, 44, 56, 110):
        assert macs(f"resnet{depth}") == cifar_resnet_macs((depth - 2) // 6)


def test_named_configs_match_li_et_al():
    # Li et al. (2017) Tab. 1/2: ResNet-56-A 1.12e8, -B 9.09e8/10; ResNet-110-A 2.13e8,
    # -B 1.55e8; VGG-16 3.13e8, VGG-16-A 2.06e8 FLOPs (multiply-adds).
    assert macs("resnet56", "A") == 112_435_840
    assert macs("resnet56", "B") == 90_907_264
    assert macs("resnet110", "A") == 212_779_648
    assert macs("resnet110", "B") == 155_124_352
    assert macs("vgg16") == 313_463_808
    assert macs("vgg16", "A") == 206_279_680


def test_small_cnn_macs_by_hand():
    # stride-2 stem: 28 -> 14; the second conv keeps 14x14; the third strides to 7x7
    conv = 14 * 14 * 8 * 1 * 9 + 14 * 14 * 16 * 8 * 9 + 7 * 7 * 32 * 16 * 9
    assert macs("smallcnn") == conv + 32 * 10


def test_resnet56_config_b_keeps_the_right_filters_per_stage():
    arch = ARCHS.get("resnet56")
    keep = Target(config="B").keep_counts(arch, arch.build(10, 3))
    # ids: block j's first conv is 2+2j; skipped ids 16,18,20,34,38,54 stay whole
    assert "layer1.7.conv1" not in keep and "layer1.8.conv1" not in keep  # ids 16, 18
    assert keep["layer1.0.conv1"] == int(16 * 0.4)
    assert keep["layer2.1.conv1"] == int(32 * 0.7)
    assert keep["layer3.1.conv1"] == int(64 * 0.9)
    assert len(keep) == 27 - 6


def test_vgg16_layout_and_params():
    model = ARCHS.get("vgg16").build(10, 3)
    assert len(conv_layers(model)) == 13
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert param_count(model) == 14_987_722


def test_every_architecture_builds_and_runs():
    for name in ARCHS.names():
        arch = ARCHS.get(name)
        model = arch.build(7, arch.input_shape[0])
        with torch.no_grad():
            assert model(torch.randn(2, *arch.input_shape)).shape == (2, 7)


# --- the architectures of issue 5 --------------------------------------------------------------

# Simonyan & Zisserman's configurations A (VGG-11), B (VGG-13), D (VGG-16), written out here
VGG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
VGG_B = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
VGG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg_conv_macs(cfg: list, side: int, shrink: int = 1) -> tuple[int, int, int]:
    """3x3 same-padding convs, 'M' halves the side; every conv keeps width // shrink.
    Returns (MACs, last width, last side)."""
    total, c_in = 0, 3
    for v in cfg:
        if v == "M":
            side //= 2
        else:
            total += side * side * c_in * (v // shrink) * 9
            c_in = v // shrink
    return total, c_in, side


def cifar_vgg_macs(cfg: list, shrink: int = 1) -> int:
    # the CIFAR variant drops the last max-pool for a 2x2 average pool (1x1 left), then
    # Linear(c, 512) and Linear(512, 10)
    conv, c, _ = vgg_conv_macs(cfg[:-1], 32, shrink)
    return conv + c * 512 + 512 * 10


def imagenet_vgg16_macs(shrink: int = 1) -> int:
    conv, c, side = vgg_conv_macs(VGG_D, 224, shrink)  # 7x7 left
    return conv + c * side * side * 4096 + 4096 * 4096 + 4096 * 1000


def preresnet_macs(n: int, inner: float = 1.0) -> int:
    """Bottleneck pre-activation ResNet-(9n+2): stem 32*32*16*27; per block 1x1 (at the input's
    side; the stride is in the 3x3), 3x3, 1x1 to 4w, and a strided 1x1 projection in each
    stage's first block; fc 256*10. `inner`: the fraction of the two inner convs' filters kept."""
    total, c_in = 32 * 32 * 16 * 27, 16
    for width, side, stride in ((16, 32, 1), (32, 16, 2), (64, 8, 2)):
        k = int(width * inner)
        for i in range(n):
            side_in = side * stride if i == 0 else side
            total += side_in * side_in * c_in * k + side * side * (k * k * 9 + k * 4 * width)
            if i == 0:
                total += side * side * c_in * 4 * width
            c_in = 4 * width
    return total + 256 * 10


def densenet_macs(n: int, growth: int, transitions: tuple[int, int]) -> int:
    """Basic DenseNet: stem 3x3 of 16 at 32x32; dense block b at side 32, 16, 8: layer i is a
    3x3 conv from its input width to `growth`; transition b a 1x1 conv at the block's side to
    `transitions[b]`, then a 2x2 pool; fc c*10."""
    total, c, side = 32 * 32 * 16 * 27, 16, 32
    for b in range(3):
        for _ in range(n):
            total += side * side * c * growth * 9
            c += growth
        if b < 2:
            total += side * side * c * transitions[b]
            c, side = transitions[b], side // 2
    return total + c * 10


def torchvision_resnet_macs(blocks: tuple[int, ...], bottleneck: bool, inner: float = 1.0) -> int:
    """torchvision ResNet at 224: 7x7/2 stem (112x112) and 3x3/2 max-pool; stages of width
    64..512 at 56, 28, 14, 7; basic blocks 3x3-3x3, bottlenecks 1x1-3x3(stride)-1x1 to 4w (v1.5);
    a strided 1x1 projection where the shape changes; fc to 1000. `inner`: the fraction of the
    filters each block's inner convs keep."""
    total, c_in = 112 * 112 * 64 * 3 * 49, 64
    for stage, (count, width, side) in enumerate(zip(blocks, (64, 128, 256, 512), (56, 28, 14, 7))):
        out, k = (4 * width if bottleneck else width), int(width * inner)
        for i in range(count):
            side_in = 2 * side if i == 0 and stage > 0 else side
            if bottleneck:
                total += side_in * side_in * c_in * k + side * side * (k * k * 9 + k * out)
            else:
                total += side * side * (c_in * k + k * out) * 9
            if i == 0 and (stage > 0 or c_in != out):
                total += side * side * c_in * out
            c_in = out
    return total + c_in * 1000


@pytest.mark.parametrize("name, expected", [
    ("resnet50", 4_089_184_256), ("vgg16_imagenet", 15_470_264_320),  # required by the issue
    ("resnet44", 97_174_144), ("vgg11", 153_031_680), ("vgg13", 228_529_152),
    # Liu et al. (2017) Tab. 1: PreResNet-164 4.99e8, DenseNet-40 5.33e8 "FLOPs": 2 x these
    # MACs (4.953e8, 5.296e8) to within 0.8%, the rest presumably BN/ReLU/pooling
    ("preresnet164", 247_646_720), ("densenet40", 264_812_928),
    ("resnet18", 1_814_073_344), ("resnet34", 3_663_761_408),
])
def test_new_architecture_macs_pins(name, expected):
    assert macs(name) == expected


def test_new_architecture_macs_match_hand_counts():
    assert macs("resnet44") == cifar_resnet_macs(7)
    assert macs("vgg11") == cifar_vgg_macs(VGG_A)
    assert macs("vgg13") == cifar_vgg_macs(VGG_B)
    assert macs("vgg16") == cifar_vgg_macs(VGG_D)
    assert macs("preresnet164") == preresnet_macs(18)
    assert macs("densenet40") == densenet_macs(12, 12, (16 + 144, 16 + 288))
    assert macs("resnet18") == torchvision_resnet_macs((2, 2, 2, 2), bottleneck=False)
    assert macs("resnet34") == torchvision_resnet_macs((3, 4, 6, 3), bottleneck=False)
    assert macs("resnet50") == torchvision_resnet_macs((3, 4, 6, 3), bottleneck=True)
    assert macs("vgg16_imagenet") == imagenet_vgg16_macs()


@pytest.mark.parametrize("name, params", [
    # DenseNet-40 1.0M (Huang et al. Tab. 2), PreResNet-164 1.7M (He et al. 2016b): as published
    ("densenet40", 1_019_722), ("preresnet164", 1_703_258), ("resnet44", 658_586),
    ("vgg11", 9_492_042), ("vgg13", 9_676_746),
])
def test_new_cifar_architecture_params(name, params):
    arch = ARCHS.get(name)
    assert param_count(arch.build(10, 3)) == params


def half_of_every_prunable(arch, model, generator=None) -> PruningPlan:
    """Half the filters of every prunable conv: the first half, or a random half."""
    convs = dict(model.named_modules())
    keep = {}
    for name in arch.prunable(model):
        c = convs[name].out_channels
        idx = range(c // 2) if generator is None else torch.randperm(c, generator=generator)[:c // 2].sort()[0]
        keep[name] = tuple(int(i) for i in idx)
    return PruningPlan(keep=keep)


@pytest.mark.parametrize("name, pruned_macs", [
    ("resnet44", lambda: cifar_resnet_macs(7, inner=0.5)),
    ("vgg11", lambda: cifar_vgg_macs(VGG_A, shrink=2)),
    ("vgg13", lambda: cifar_vgg_macs(VGG_B, shrink=2)),
    ("preresnet164", lambda: preresnet_macs(18, inner=0.5)),
    # every dense layer grows by 6; the transitions keep half of their 160 and 304 filters
    ("densenet40", lambda: densenet_macs(12, 6, (80, 152))),
])
def test_pruning_new_cifar_architectures_cuts_the_right_channels(name, pruned_macs):
    """Removing a random half of every prunable conv's filters gives the same function as the
    dense model with those filters zeroed (eval mode, BN shift 0 and running mean 0, so a zero
    channel stays zero through BN-ReLU), and the MACs of the hand count at those widths."""
    arch = ARCHS.get(name)
    torch.manual_seed(0)
    dense = arch.build(10, 3).eval()
    for m in dense.modules():  # keep the signal alive through depth; channels unlike each other
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    plan = half_of_every_prunable(arch, dense, torch.Generator().manual_seed(1))
    pruned = apply_plan(copy.deepcopy(dense), plan, arch.input_shape)
    x = torch.randn(4, *arch.input_shape)
    with torch.no_grad():
        y_dense = dense(x)
        convs = dict(dense.named_modules())
        for conv, keep in plan.keep.items():
            drop = sorted(set(range(convs[conv].out_channels)) - set(keep))
            convs[conv].weight[drop] = 0
        y_zeroed, y_pruned = dense(x), pruned(x)
    tol = 1e-4 * y_zeroed.abs().max().item()
    assert torch.allclose(y_pruned, y_zeroed, rtol=1e-4, atol=tol)
    # the test can fail: the output depends on the input and on the dropped filters
    assert y_dense.std(0).max() > 100 * tol
    assert not torch.allclose(y_pruned, y_dense, rtol=1e-2, atol=100 * tol)
    assert forward_macs(pruned, arch.input_shape) == pruned_macs()


@pytest.mark.parametrize("name, pruned_macs", [
    ("resnet18", lambda: torchvision_resnet_macs((2, 2, 2, 2), bottleneck=False, inner=0.5)),
    ("resnet50", lambda: torchvision_resnet_macs((3, 4, 6, 3), bottleneck=True, inner=0.5)),
    ("vgg16_imagenet", lambda: imagenet_vgg16_macs(shrink=2)),
])
def test_pruning_imagenet_architectures(name, pruned_macs):
    arch = ARCHS.get(name)
    model = arch.build(1000, 3)
    apply_plan(model, half_of_every_prunable(arch, model), arch.input_shape)
    assert forward_macs(model, arch.input_shape) == pruned_macs()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_prunable_convs_leave_residual_widths_alone():
    resnet50 = ARCHS.get("resnet50")
    names = resnet50.prunable(resnet50.build(1000, 3))
    assert len(names) == 2 * 16 and "layer1.0.conv1" in names and "layer1.0.conv2" in names
    assert not any(n.endswith(("conv3", "downsample.0")) or n == "conv1" for n in names)
    resnet18 = ARCHS.get("resnet18")
    expected = [f"layer{stage}.{block}.conv1" for stage in (1, 2, 3, 4) for block in (0, 1)]
    assert resnet18.prunable(resnet18.build(1000, 3)) == expected
    pre = ARCHS.get("preresnet164")
    names = pre.prunable(pre.build(10, 3))
    assert len(names) == 2 * 54 and not any(n.endswith(("conv3", "downsample.0")) for n in names)
    dense = ARCHS.get("densenet40")
    names = dense.prunable(dense.build(10, 3))
    assert len(names) == 36 + 2 and "conv1" not in names and "trans2.conv1" in names
    vgg11 = ARCHS.get("vgg11").build(10, 3)
    assert ARCHS.get("vgg11").prunable(vgg11) == conv_layers(vgg11) and len(conv_layers(vgg11)) == 8


def test_stage_of_follows_wang_et_al():
    stage_of = ARCHS.get("resnet50").stage_of
    assert stage_of("conv1") == 0 and stage_of("layer3.2.conv1") == 3
    assert stage_of("layer4.0.downsample.0") == 4 and stage_of("fc") == 5
    assert ARCHS.get("resnet56").stage_of("layer1.8.conv1") == 1
    assert ARCHS.get("resnet56").stage_of("fc") == 4
    assert ARCHS.get("preresnet164").stage_of("layer2.17.conv2") == 2
    with pytest.raises(ValueError, match="in no stage"):
        stage_of("layer5.0.conv1")
    for name in ARCHS.names():
        arch = ARCHS.get(name)
        assert (arch.stage_of is not None) == ("resnet" in name), name
        if arch.stage_of is not None and arch.input_shape[1] == 32:
            stages = {arch.stage_of(n) for n in arch.prunable(arch.build(10, 3))}
            assert stages == {1, 2, 3}, name


def test_imagenet_architectures_take_other_input_channels():
    for name, stem in (("resnet18", "conv1"), ("vgg16_imagenet", "features.0")):
        model = ARCHS.get(name).build(5, 1)
        assert dict(model.named_modules())[stem].in_channels == 1
        with torch.no_grad():
            assert model(torch.randn(1, 1, 64, 64)).shape == (1, 5)


def test_cli_flops_lists_dense_and_every_named_config(capsys):
    assert main(["flops", "--arch", "resnet56"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("resnet56")]
    assert [(r[1], r[2]) for r in rows] == [("dense", "125,485,696"), ("A", "112,435,840"), ("B", "90,907,264")]
    assert main(["flops", "--arch", "resnet56", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["config"], r["macs"]) for r in data] == [(None, 125_485_696), ("A", 112_435_840), ("B", 90_907_264)]
    assert data[2]["speedup"] == pytest.approx(125_485_696 / 90_907_264)
    assert main(["flops", "--arch", "resnet44", "--json"]) == 0  # no named configs: the dense row
    assert [r["macs"] for r in json.loads(capsys.readouterr().out)] == [97_174_144]
