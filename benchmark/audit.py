"""Audit: after every phase, check what the loop did against what the protocol fixes.

The audit reads the trace the loop recorded (LRs and hyper-parameters read back from the
optimizer, samples and steps counted by the loop), never what a method says it did.
"""

from __future__ import annotations

from benchmark.config import Recipe
from benchmark.errors import ProtocolViolation
from benchmark.trace import Trace, TraceRow


def audit_phase(setup: str, phase: str, recipe: Recipe, rows: list[TraceRow], n_train: int) -> None:
    """Raise `ProtocolViolation` on the first rule the phase broke."""
    if len(rows) != recipe.epochs:
        raise ProtocolViolation(setup, f"{phase} epochs", recipe.epochs, len(rows))
    for row in rows:
        where = f"{phase} epoch {row.epoch}"
        expected_lr = recipe.lr.lr_at(row.epoch, recipe.epochs)
        if abs(row.lr - expected_lr) > 1e-12 * max(1.0, expected_lr):
            raise ProtocolViolation(setup, f"{where} LR", expected_lr, row.lr)
        if row.samples != n_train:
            raise ProtocolViolation(setup, f"{where} samples", n_train, row.samples)
        if row.batch_size != min(recipe.batch_size, n_train):
            raise ProtocolViolation(setup, f"{where} batch size", recipe.batch_size, row.batch_size)
        for field in ("momentum", "weight_decay", "nesterov"):
            if getattr(row, field) != getattr(recipe, field):
                raise ProtocolViolation(setup, f"{where} {field}", getattr(recipe, field), getattr(row, field))


def audit_budget(setup: str, kind: str, budget: float, trace: Trace, tolerance: float) -> None:
    """Total epochs (SX-A) or training FLOPs (SX-B) of a run must not overrun the budget."""
    actual = trace.epochs if kind == "epochs" else trace.train_flops
    if actual > budget * (1 + tolerance):
        raise ProtocolViolation(setup, f"total {kind} budget (+{tolerance:.0%} tolerance)", budget, actual)
