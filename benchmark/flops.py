"""Forward MACs and parameter counts, from PyTorch's own FLOP counter.

`torch.utils.flop_counter.FlopCounterMode` counts convolutions and matrix products exactly
(2 FLOPs per multiply-add). The pruning literature's "FLOPs" are multiply-adds, so we report
MACs = counted FLOPs / 2. Training FLOPs of a phase = sum over its steps of
samples x 3 x forward FLOPs (forward + backward ~ 3 forwards).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MACS_NOTE = "MACs (multiply-adds, the literature's 'FLOPs'; counted FLOPs / 2)"


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of one sample of shape (C, H, W)."""
    return _count(model, input_shape).get_total_flops() // 2


def effective_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Density-weighted MACs: each conv and linear layer's MACs times the fraction of its weights
    that are non-zero. Equal to `forward_macs` for a dense model; for an unstructured-pruned
    (masked) model, the MACs a sparse kernel would need, which dense hardware does not save."""
    counter = _count(model, input_shape)
    per_module = counter.get_flop_counts()
    prefix = type(model).__name__
    saved = 0.0
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and name:
            flops = sum(per_module.get(f"{prefix}.{name}", {}).values())
            density = float(torch.count_nonzero(module.weight)) / module.weight.numel()
            saved += flops * (1 - density)
    return int(round((counter.get_total_flops() - saved) / 2))


def _count(model: nn.Module, input_shape: tuple[int, ...]) -> FlopCounterMode:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()  # BatchNorm1d cannot run in train mode on one sample
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return counter


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_flops(samples: int, macs: int) -> int:
    """FLOPs of training on `samples` samples of a model with `macs` forward MACs."""
    return samples * 3 * 2 * macs
