"""Architectures, found by name in `ARCHS`; importing this package registers the built-in ones."""

from benchmark.models._arch import ARCHS, Arch, conv_layers, reinitialise
from benchmark.models import cifar_resnet, densenet, imagenet, preresnet, small, vgg  # noqa: F401  (registration)

__all__ = ["ARCHS", "Arch", "conv_layers", "reinitialise"]
