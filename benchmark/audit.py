"""Audit: after every phase, and once more at the end of a run, check what the loop did against
what the protocol's setup fixes (`prunebench.setups`).

The audit reads the trace the loop recorded (LRs and hyper-parameters read back from the
optimizer, samples and steps counted by the loop), never what a method says it did.
"""

from __future__ import annotations

from prunebench.config import Protocol, Recipe
from prunebench.errors import ProtocolViolation
from prunebench.setups import FIELD_WORDS, PARTS, fixed_fields, fixes
from prunebench.trace import Trace, TraceRow


def observed(field: str, row: TraceRow) -> object:
    """What the loop did for one recipe field in one epoch, read from the trace."""
    return row.samples if field == "samples_per_epoch" else getattr(row, field)


def wanted(field: str, recipe: Recipe, n_train: int) -> object:
    """What the protocol's recipe makes of one field in one epoch of `n_train` images: one pass
    unless it sets its samples per epoch; a batch no larger than the epoch."""
    samples = recipe.samples_per_epoch or n_train
    if field == "samples_per_epoch":
        return samples
    if field == "batch_size":
        return min(recipe.batch_size, samples)
    return getattr(recipe, field)


def audit_phase(setup: str, phase: str, expected: Recipe | None, rows: list[TraceRow], n_train: int) -> None:
    """Raise `ProtocolViolation` on the first rule of `setup` that the phase broke: every field of
    the phase's recipe that the setup fixes (`setups.fixed_fields`), epoch by epoch.

    `expected` is the protocol's recipe for the phase (None: the protocol has no such phase).
    """
    _audit_fields(setup, phase, expected, rows, n_train, fixed_fields(setup, phase))


def audit_faithful(phase: str, recipe: Recipe, rows: list[TraceRow], n_train: int) -> None:
    """A phase's trace against the recipe its run's spec says it trained, every field: what
    `bench verify` checks of every run (base and scratch runs included)."""
    _audit_fields("the run's spec", phase, recipe, rows, n_train, tuple(f for part in PARTS.values() for f in part))


def _audit_fields(setup: str, phase: str, expected: Recipe | None, rows: list[TraceRow], n_train: int,
                  fields: tuple[str, ...]) -> None:
    if "epochs" in fields:
        want = expected.epochs if expected else 0
        if len(rows) != want:
            raise ProtocolViolation(setup, f"{phase} epochs", want, len(rows))
    if expected is None:
        return
    for row in rows:
        where = f"{phase} epoch {row.epoch}"
        for field in fields:
            if field == "epochs":
                continue
            if field == "lr":
                want_lr = expected.lr.lr_at(row.epoch, expected.epochs)
                if abs(row.lr - want_lr) > 1e-12 * max(1.0, want_lr):
                    raise ProtocolViolation(setup, f"{where} LR", want_lr, row.lr)
                continue
            want, got = wanted(field, expected, n_train), observed(field, row)
            if got != want:
                raise ProtocolViolation(setup, f"{where} {FIELD_WORDS[field]}", want, got)


def expected_recipe(protocol: Protocol, phase: str) -> Recipe | None:
    """The recipe a phase is audited against. A pruning phase the method chose itself (the
    protocol has none and the setup leaves its epochs free, as under S2, S3.x and SX) must still
    keep the hyper-parameters the setup fixes: those of the protocol's retraining."""
    if phase == "retrain":
        return protocol.retrain
    if phase == "round":  # the training after a pruning round: the protocol's, else the retraining's
        return protocol.round or protocol.retrain
    if protocol.prune is None and not fixes(protocol.setup, "prune.epochs"):
        return protocol.retrain
    return protocol.prune


def audit_run(protocol: Protocol, trace: Trace, n_train: int) -> None:
    """Every phase of a pruned run against the protocol, including phases the run lacks; every
    pruning round's training (`round1`, `round2`, ... in the trace) against the round recipe."""
    for phase in ("prune", "retrain"):
        audit_phase(protocol.setup, phase, expected_recipe(protocol, phase), trace.phase(phase), n_train)
    names = round_phases(trace)
    if fixes(protocol.setup, "round.count") and len(names) + 1 != (protocol.rounds or 1):
        raise ProtocolViolation(protocol.setup, "pruning rounds", protocol.rounds or 1, len(names) + 1)
    for name in names:
        audit_phase(protocol.setup, "round", expected_recipe(protocol, "round"), trace.phase(name), n_train)


def round_phases(trace: Trace) -> list[str]:
    """The trace's pruning rounds' phases, in order: 'round1', 'round2', ..."""
    return list(dict.fromkeys(r.phase for r in trace.rows if r.phase.startswith("round")))


def audit_budget(setup: str, kind: str, budget: float, used: float, tolerance: float) -> None:
    """Total epochs (SX-A) or training FLOPs (SX-B) of a pipeline must not overrun its budget."""
    if used > budget * (1 + tolerance):
        raise ProtocolViolation(setup, f"total {kind} budget (+{tolerance:.0%} tolerance)", budget, used)
