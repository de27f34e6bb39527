"""Audit: after every phase, and once more at the end of a run, check what the loop did against
what the protocol's setup fixes (`prunebench.setups`).

The audit reads the trace the loop recorded (LRs and hyper-parameters read back from the
optimizer, samples and steps counted by the loop), never what a method says it did.
"""

from __future__ import annotations

from prunebench.config import Protocol, Recipe
from prunebench.errors import ProtocolViolation
from prunebench.setups import fixes
from prunebench.trace import Trace, TraceRow

HPARAMS = ("momentum", "weight_decay", "nesterov", "augment", "precision")


def audit_phase(setup: str, phase: str, expected: Recipe | None, rows: list[TraceRow], n_train: int) -> None:
    """Raise `ProtocolViolation` on the first rule of `setup` that the phase broke.

    `expected` is the protocol's recipe for the phase (None: the protocol has no such phase).
    """
    if fixes(setup, f"{phase}.epochs"):
        want = expected.epochs if expected else 0
        if len(rows) != want:
            raise ProtocolViolation(setup, f"{phase} epochs", want, len(rows))
    if expected is None:
        return
    for row in rows:
        where = f"{phase} epoch {row.epoch}"
        if fixes(setup, f"{phase}.lr"):
            want_lr = expected.lr.lr_at(row.epoch, expected.epochs)
            if abs(row.lr - want_lr) > 1e-12 * max(1.0, want_lr):
                raise ProtocolViolation(setup, f"{where} LR", want_lr, row.lr)
        if fixes(setup, f"{phase}.hparams"):
            want_samples = expected.samples_per_epoch or n_train
            if row.samples != want_samples:
                raise ProtocolViolation(setup, f"{where} samples", want_samples, row.samples)
            if row.batch_size != min(expected.batch_size, want_samples):
                raise ProtocolViolation(setup, f"{where} batch size", expected.batch_size, row.batch_size)
            for field in HPARAMS:
                if getattr(row, field) != getattr(expected, field):
                    raise ProtocolViolation(setup, f"{where} {field}", getattr(expected, field), getattr(row, field))


def expected_recipe(protocol: Protocol, phase: str) -> Recipe | None:
    """The recipe a phase is audited against. A pruning phase the method chose itself (the
    protocol has none and the setup leaves its epochs free, as under S2, S3.x and SX) must still
    keep the hyper-parameters the setup fixes: those of the protocol's retraining."""
    if phase == "retrain":
        return protocol.retrain
    if protocol.prune is None and not fixes(protocol.setup, "prune.epochs"):
        return protocol.retrain
    return protocol.prune


def audit_run(protocol: Protocol, trace: Trace, n_train: int) -> None:
    """Every phase of a pruned run against the protocol, including phases the run lacks."""
    for phase in ("prune", "retrain"):
        audit_phase(protocol.setup, phase, expected_recipe(protocol, phase), trace.phase(phase), n_train)


def audit_budget(setup: str, kind: str, budget: float, used: float, tolerance: float) -> None:
    """Total epochs (SX-A) or training FLOPs (SX-B) of a pipeline must not overrun its budget."""
    if used > budget * (1 + tolerance):
        raise ProtocolViolation(setup, f"total {kind} budget (+{tolerance:.0%} tolerance)", budget, used)
