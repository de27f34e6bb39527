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
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()  # BatchNorm1d cannot run in train mode on one sample
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_flops(samples: int, macs: int) -> int:
    """FLOPs of training on `samples` samples of a model with `macs` forward MACs."""
    return samples * 3 * 2 * macs
