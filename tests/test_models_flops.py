import pytest
import torch

from benchmark.flops import forward_macs, param_count
from benchmark.method import Target
from benchmark.models import ARCHS, conv_layers
from benchmark.pruning import PruningPlan, apply_plan


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


def test_resnet_macs_match_a_hand_count():
    # stem 32*32*16*27; per stage 2n convs of 3x3 (the first of stages 2, 3 with half the input
    # channels); fc 64*10. n = 3 for ResNet-20.
    n = 3
    stage1 = 2 * n * 32 * 32 * 16 * 16 * 9
    stage2 = (32 * 16 * 9 + (2 * n - 1) * 32 * 32 * 9) * 16 * 16
    stage3 = (64 * 32 * 9 + (2 * n - 1) * 64 * 64 * 9) * 8 * 8
    assert macs("resnet20") == 32 * 32 * 16 * 27 + stage1 + stage2 + stage3 + 64 * 10


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
        assert model(torch.randn(2, *arch.input_shape)).shape == (2, 7)
