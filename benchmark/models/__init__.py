"""Architectures, found by name in `ARCHS`; importing this package registers the built-in ones."""

from prunebench.models import cifar_resnet, densenet, imagenet, preresnet, small, vgg  # noqa: F401  (registration)
from prunebench.models._arch import ARCHS, Arch, conv_layers, reinitialise

__all__ = ["ARCHS", "Arch", "conv_layers", "reinitialise"]
