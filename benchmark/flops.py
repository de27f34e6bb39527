"""Forward MACs and parameter counts, from PyTorch's own FLOP counter.

`torch.utils.flop_counter.FlopCounterMode` counts convolutions and matrix products exactly
(2 FLOPs per multiply-add). The pruning literature's "FLOPs" are multiply-adds, so we report
MACs = counted FLOPs / 2. Training FLOPs of a phase = sum over its steps of
samples x 3 x forward FLOPs (forward + backward ~ 3 forwards).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# torch is imported where a model is counted, so that the store, `compare` and the trace, which
# need only `training_flops`, load without it

MACS_NOTE = "MACs (multiply-adds, the literature's 'FLOPs'; counted FLOPs / 2)"


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of one sample of shape (C, H, W)."""
    return _count(model, input_shape)[0] // 2


def effective_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Density-weighted MACs: each conv and linear layer's MACs times the fraction of its weights
    that are non-zero. Equal to `forward_macs` for a dense model; for an unstructured-pruned
    (masked) model, the MACs a sparse kernel would need, which dense hardware does not save."""
    import torch
    from torch import nn

    total, per_module = _count(model, input_shape)
    saved = 0.0
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and name:
            density = float(torch.count_nonzero(module.weight)) / module.weight.numel()
            saved += per_module.get(name, 0) * (1 - density)
    return int(round((total - saved) / 2))


# architecture key -> (total FLOPs, FLOPs per module name): a forward pass is traced once per
# distinct architecture, however many runs, phases and reports ask
_COUNTS: OrderedDict[str, tuple[int, dict[str, int]]] = OrderedDict()
_COUNTS_MAX = 256


def architecture_key(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """What decides a model's FLOPs: its modules (types and settings) and every tensor's shape."""
    h = hashlib.sha256(repr(model).encode())
    h.update(repr(input_shape).encode())
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        h.update(f"{name}:{tuple(tensor.shape)};".encode())
    return h.hexdigest()


def _count(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    key = architecture_key(model, input_shape)
    if key in _COUNTS:
        _COUNTS.move_to_end(key)
        return _COUNTS[key]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()  # BatchNorm1d cannot run in train mode on one sample
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    prefix = type(model).__name__ + "."
    per_module = {name[len(prefix):]: sum(counts.values()) for name, counts in counter.get_flop_counts().items()
                  if name.startswith(prefix)}
    _COUNTS[key] = (counter.get_total_flops(), per_module)
    if len(_COUNTS) > _COUNTS_MAX:
        _COUNTS.popitem(last=False)
    return _COUNTS[key]


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_flops(samples: int, macs: int) -> int:
    """FLOPs of training on `samples` samples of a model with `macs` forward MACs."""
    return samples * 3 * 2 * macs
