"""The harness's one training loop. Methods never fork it; they extend it through hooks.

Per epoch: the LR is set from the recipe's schedule, data order and augmentation come from a
generator seeded by (seed, phase, epoch), a trace row records what the optimizer actually did,
and a checkpoint (model, optimizer, position, trace, RNG states) is written atomically, so a
killed run resumes exactly where it stopped. Hooks: a regulariser added to the loss in the
pruning phase (called with the phase's step count), and weight masks re-applied after every
optimizer step, so unstructured pruning stays pruned while it retrains.

The recipe's `precision` is part of what a run computes (bf16 runs forward and backward under
autocast; weights, optimizer state and the loss's reduction stay fp32). `compiled` (torch.compile
of the forward) is an execution setting: the same recipe, the same run id.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from prunebench import signals
from prunebench._atomic import sha256_file, write_atomic
from prunebench.config import Recipe
from prunebench.data import Split
from prunebench.errors import TrainingFailed
from prunebench.flops import effective_macs, forward_macs
from prunebench.pruning import Masks, apply_masks
from prunebench.trace import Trace, TraceRow

# (model, step within the pruning phase) -> a term added to the loss, or None
Regularizer = Callable[[nn.Module, int], "torch.Tensor | None"]
PhaseEnd = Callable[[str, Recipe, list[TraceRow]], None]
EpochEnd = Callable[[TraceRow, int], None]  # (the epoch's row, the phase's epochs), once it is saved


PHASE_CODES = {"pretrain": 0, "prune": 1, "retrain": 2, "scratch": 3}


def epoch_seed(seed: int, phase: str, epoch: int) -> int:
    """Seed of one epoch's data order and augmentation: a pure function of (seed, phase, epoch),
    so resume is exact and every method of one seed sees the same retraining data order."""
    if phase.startswith("round"):  # round1 .. round99: hashed, so that no round shares a seed with another phase
        return int.from_bytes(hashlib.sha256(f"{seed}/{phase}/{epoch}".encode()).digest()[:7], "big")
    return seed * 1_000_003 + PHASE_CODES[phase] * 10_007 + epoch


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a recipe's precision (a no-op context for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def evaluate(model: nn.Module, data: Split, batch_size: int = 1000, precision: str = "fp32",
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (in %) on a split, in the training recipe's precision."""
    model.eval()
    forward = model if forward is None else forward
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in data.batches(batch_size):
            with autocast(precision, x.device):
                out = forward(x)
            loss += F.cross_entropy(out.float(), y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return loss / n, 100.0 * correct / n


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_atomic(obj: object, path: Path) -> None:
    """torch.save through `write_atomic`: a killed or full-disk write leaves the old file."""
    write_atomic(path, _torch_bytes(obj))


def _record_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".sha256")


def save_checkpoint(state: dict, checkpoint: Path) -> None:
    """Write a checkpoint and the loop's record of it: the sha256 of the last two checkpoints it
    wrote (a kill between the record and the file leaves the previous one trusted)."""
    data = _torch_bytes(state)
    record = _record_path(checkpoint)
    previous = sha256_file(checkpoint) if checkpoint.exists() and trusted(checkpoint) else None
    write_atomic(record, json.dumps([h for h in (previous, hashlib.sha256(data).hexdigest()) if h]))
    write_atomic(checkpoint, data)


def trusted(checkpoint: Path) -> bool:
    """Whether the loop wrote this checkpoint: its sha256 is in the loop's record."""
    try:
        known = json.loads(_record_path(checkpoint).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(known, list) and sha256_file(checkpoint) in known


def train_phases(
    model: nn.Module,
    phases: list[tuple[str, Recipe]],
    train: Split,
    test: Split,
    *,
    seed: int,
    input_shape: tuple[int, int, int],
    checkpoint: Path,
    regularizer: Regularizer | None = None,
    on_phase_end: PhaseEnd | None = None,
    label: str = "",
    progress: bool = True,
    masks: Masks | None = None,
    stop_after: int | None = None,
    compiled: bool = False,
    on_epoch: EpochEnd | None = None,
    log: Callable[[str], None] | None = None,
) -> Trace:
    """Train `model` through `phases` in order, resuming from `checkpoint` if it exists.

    `masks` (parameter name -> kept) hold pruned weights at zero throughout; `stop_after` ends
    the first phase after that many epochs (replaying the start of a stored run); `compiled`
    runs the forward through `torch.compile` (the model's own weights, so checkpoints are the
    same); `on_epoch` hears of every epoch once its checkpoint is written. A checkpoint the loop
    did not write (no record of its sha256) is never resumed from: it is set aside as
    `<name>.untrusted` and the phases train from the model given."""
    trace, start_phase, start_epoch, opt_state = Trace(), 0, 0, None
    if checkpoint.exists() and not trusted(checkpoint):
        aside = checkpoint.with_name(checkpoint.name + ".untrusted")
        checkpoint.replace(aside)
        (log or print)(f"{checkpoint} was not written by the training loop (its sha256 is not in the loop's "
                       f"record): set aside as {aside.name}; training from the start instead")
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        trace = Trace.model_validate(saved["trace"])
        start_phase, start_epoch, opt_state = saved["phase_index"], saved["epoch"], saved["optimizer"]
        _set_rng_state(saved["rng"])
    show = progress and sys.stderr.isatty()
    forward = torch.compile(model) if compiled else model

    for pi, (phase, recipe) in enumerate(phases):
        if pi < start_phase:  # finished before a restart; audit again in case the kill came first
            if on_phase_end is not None:
                on_phase_end(phase, recipe, trace.phase(phase))
            continue
        optimizer = torch.optim.SGD(
            model.parameters(), lr=recipe.lr.lr_at(0, recipe.epochs), momentum=recipe.momentum,
            weight_decay=recipe.weight_decay, nesterov=recipe.nesterov,
        )
        first = 0
        if pi == start_phase and opt_state is not None:
            optimizer.load_state_dict(opt_state)
            first = start_epoch
        if masks:  # on the training device once, not per step
            param = next(model.parameters())
            masks = {name: m.to(param.device, param.dtype) for name, m in masks.items()}
            apply_masks(model, masks)
        # the architecture (and mask) is fixed within a phase: counted once, density-weighted
        macs = effective_macs(model, input_shape) if masks else forward_macs(model, input_shape)
        last = recipe.epochs if stop_after is None else min(recipe.epochs, stop_after)
        for epoch in range(first, last):
            signals.check()
            row = _train_epoch(model, forward, optimizer, phase, recipe, epoch, train, test, macs,
                               torch.Generator().manual_seed(epoch_seed(seed, phase, epoch)),
                               regularizer if phase == "prune" else None,
                               f"{label} {phase} {epoch + 1}/{recipe.epochs}", show, masks)
            trace = trace.append(row)
            done_phase = epoch + 1 == recipe.epochs
            save_checkpoint({
                "model": model.state_dict(), "optimizer": None if done_phase else optimizer.state_dict(),
                "phase_index": pi + 1 if done_phase else pi, "epoch": 0 if done_phase else epoch + 1,
                "trace": trace.model_dump(), "rng": _rng_state(),
            }, checkpoint)
            if on_epoch is not None:
                on_epoch(row, recipe.epochs)
        if stop_after is not None:
            return trace
        if on_phase_end is not None:
            on_phase_end(phase, recipe, trace.phase(phase))
    return trace


def _train_epoch(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, phase: str, recipe: Recipe,
                 epoch: int, train: Split, test: Split, macs: int, generator: torch.Generator,
                 regularizer: Regularizer | None, desc: str, show: bool, masks: Masks | None) -> TraceRow:
    lr = recipe.lr.lr_at(epoch, recipe.epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    started = time.perf_counter()
    seen_lrs: set[float] = set()
    loss_sum, correct, samples, steps, largest = 0.0, 0, 0, 0, 0
    batches = train.batches(recipe.batch_size, generator=generator, augment=recipe.augment, pad=recipe.pad,
                            samples=recipe.samples_per_epoch)
    total = -(-(recipe.samples_per_epoch or len(train)) // recipe.batch_size)
    for i, (x, y) in enumerate(tqdm(batches, total=total, desc=desc.strip(), leave=False, disable=not show)):
        with autocast(recipe.precision, x.device):
            out = forward(x)
        loss = F.cross_entropy(out.float(), y)
        objective = loss
        if regularizer is not None:
            extra = regularizer(model, epoch * total + i)
            if extra is not None:
                objective = loss + extra
        value = loss.item()
        if not math.isfinite(value) or (objective is not loss and not math.isfinite(objective.item())):
            what = "training loss" if not math.isfinite(value) else "training loss with the regulariser"
            raise TrainingFailed(f"the {what} became {value if not math.isfinite(value) else objective.item()} "
                                 f"at {phase} epoch {epoch + 1}, step {i + 1}")
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        seen_lrs.update(g["lr"] for g in optimizer.param_groups)
        optimizer.step()
        if masks:
            apply_masks(model, masks)
        loss_sum += value * len(y)
        correct += (out.argmax(1) == y).sum().item()
        samples += len(y)
        steps += 1
        largest = max(largest, len(y))
    group = optimizer.param_groups[0]
    test_loss, test_acc = evaluate(model, test, precision=recipe.precision, forward=forward)
    if not math.isfinite(test_loss):
        raise TrainingFailed(f"the test loss became {test_loss} after {phase} epoch {epoch + 1}")
    return TraceRow(
        phase=phase, epoch=epoch,
        # more than one LR within an epoch is recorded as the one furthest from the schedule
        lr=max(seen_lrs, key=lambda v: abs(v - lr)) if seen_lrs else lr,
        samples=samples, steps=steps, batch_size=largest, momentum=group["momentum"],
        weight_decay=group["weight_decay"], nesterov=group["nesterov"], augment=recipe.augment,
        pad=recipe.pad, precision=recipe.precision, macs=macs,
        train_loss=loss_sum / max(samples, 1), train_acc=100.0 * correct / max(samples, 1),
        test_loss=test_loss, test_acc=test_acc, seconds=time.perf_counter() - started,
    )
