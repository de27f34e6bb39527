"""ImageNet architectures, built by torchvision with random weights (nothing is downloaded):
ResNet-18/34/50 (He et al. 2016) and VGG-16 (Simonyan & Zisserman 2015, no BatchNorm), for
224x224 inputs. Another number of input channels replaces the stem conv by one of the same
shape and torchvision's init for it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from prunebench.models._arch import ARCHS, Arch, ResNetStages, block_inner_convs, conv_layers


def _stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """`conv` with `in_channels` inputs: a fresh conv of the same shape, initialised as
    torchvision initialises its ResNet and VGG convs."""
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _resnet(depth: int) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        import torchvision  # here, not at the top: importing it costs a second

        model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
        if in_channels != 3:
            model.conv1 = _stem(model.conv1, in_channels)
        return model

    return build


def _vgg16(num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    model = torchvision.models.vgg16(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.features[0] = _stem(model.features[0], in_channels)
    return model


for _depth, _block in ((18, "basic"), (34, "basic"), (50, "bottleneck")):
    ARCHS.register(
        f"resnet{_depth}",
        Arch(
            name=f"resnet{_depth}",
            build=_resnet(_depth),
            input_shape=(3, 224, 224),
            num_classes=1000,
            description=f"ImageNet ResNet-{_depth} ({_block} blocks; torchvision, random init)",
            prunable=block_inner_convs,
            stage_of=ResNetStages(4),
        ),
    )

ARCHS.register(
    "vgg16_imagenet",
    Arch(
        name="vgg16_imagenet",
        build=_vgg16,
        input_shape=(3, 224, 224),
        num_classes=1000,
        description="ImageNet VGG-16 (no BatchNorm, 3 FC layers; torchvision, random init)",
        prunable=conv_layers,
    ),
)
