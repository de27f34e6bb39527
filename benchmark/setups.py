"""The comparison setups of Wang et al. (Tab. 2) as rules: what each holds equal across methods.

This is the definition of the setup vocabulary; the values (which recipe, how many epochs) are
in each protocol file. S1 ... S4.2 form a ladder, each adding to the one before. SX-A and SX-B
hold the base model and the training hyper-parameters equal and then only the *total* of
pretraining + pruning + retraining (epochs or training FLOPs): Wang et al. move the finetuning
LR and the split of epochs freely under them (Sec. 4, Tab. 4), so per-phase epochs and LR
schedules are left to the method there.
"""

from __future__ import annotations

# One rule per line: "<what>" ; phase rules read "<phase>.<part>", part in epochs, lr, hparams.
# PARTS says which fields of a phase's recipe each part covers: the one table of what a setup
# fixes, field by field, read by the audit, `bench compare`, `bench validate` and the dry run
# (every field of `Recipe` is in exactly one part; a test checks it).
PARTS: dict[str, tuple[str, ...]] = {
    "epochs": ("epochs",),
    "lr": ("lr",),
    "hparams": ("batch_size", "samples_per_epoch", "momentum", "weight_decay", "nesterov", "augment", "pad",
                "precision"),
}
FIELD_WORDS = {"batch_size": "batch size", "samples_per_epoch": "samples per epoch", "momentum": "momentum",
               "weight_decay": "weight decay", "nesterov": "nesterov", "augment": "augmentation",
               "pad": "crop padding", "precision": "precision"}
LADDER = ("S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2")
RULES: dict[str, tuple[str, ...]] = {
    "S1": (),
    "S2": ("base",),
    "S3.1": ("base", "retrain.epochs", "retrain.hparams"),
    "S3.2": ("base", "retrain.epochs", "retrain.hparams", "retrain.lr"),
    "S4.1": ("base", "retrain.epochs", "retrain.hparams", "retrain.lr", "prune.epochs", "prune.hparams",
             "round.count", "round.epochs", "round.hparams"),
    "S4.2": ("base", "retrain.epochs", "retrain.hparams", "retrain.lr", "prune.epochs", "prune.hparams",
             "prune.lr", "round.count", "round.epochs", "round.hparams", "round.lr"),
    "SX-A": ("base", "retrain.hparams", "prune.hparams", "round.hparams", "total.epochs"),
    "SX-B": ("base", "retrain.hparams", "prune.hparams", "round.hparams", "total.flops"),
}
WORDS = {
    "base": "the base checkpoint (the suite's base model of each seed, sha256 checked)",
    "retrain.epochs": "retraining epochs",
    "retrain.lr": "retraining LR schedule",
    "retrain.hparams": "retraining " + ", ".join(FIELD_WORDS[f] for f in PARTS["hparams"]),
    "prune.epochs": "pruning-phase epochs",
    "prune.lr": "pruning-phase LR schedule",
    "prune.hparams": "pruning-phase " + ", ".join(FIELD_WORDS[f] for f in PARTS["hparams"]),
    "round.count": "pruning rounds (iterative pruning): the protocol's `rounds`, one shot if it has none",
    "round.epochs": "epochs trained after each pruning round (iterative methods)",
    "round.lr": "LR schedule after each pruning round",
    "round.hparams": "after each pruning round: " + ", ".join(FIELD_WORDS[f] for f in PARTS["hparams"]),
    "total.epochs": "total epochs of pretrain + prune + retrain (Scratch-E trains them all)",
    "total.flops": "total training FLOPs of pretrain + prune + retrain (Scratch-B: K1*F1/F2 + K2 epochs)",
}
ALL_RULES = tuple(WORDS)


def fixes(setup: str, rule: str) -> bool:
    return rule in RULES[setup]


def fixed_fields(setup: str, phase: str) -> tuple[str, ...]:
    """The fields of `phase`'s recipe that `setup` holds equal across methods."""
    return tuple(f for part, fields in PARTS.items() if fixes(setup, f"{phase}.{part}") for f in fields)


def free(setup: str) -> list[str]:
    """What a setup leaves to the method (the method's declared choice, else the protocol's default)."""
    return [r for r in ALL_RULES if r not in RULES[setup] and not r.startswith("total.")]


def _hparams(recipe) -> str:
    values = {**{f: getattr(recipe, f) for f in PARTS["hparams"]},
              "samples_per_epoch": recipe.samples_per_epoch or "one pass"}
    return ", ".join(f"{FIELD_WORDS[f]} {values[f]}" for f in PARTS["hparams"])


def rule_value(rule: str, protocol, base_epochs: int) -> str:
    """The protocol's value for one rule, in words (for `bench validate` and the dry run)."""
    phase, _, part = rule.partition(".")
    if rule == "base":
        return f"{base_epochs} epochs of the suite's base recipe, one model per seed"
    if phase == "total":
        k1 = base_epochs + (protocol.prune.epochs if protocol.prune else 0)
        k2 = protocol.retrain.epochs
        if part == "epochs":
            return f"K1 + K2 = {k1} + {k2} = {k1 + k2} epochs"
        return f"K1*F1 + K2*F2 epochs x samples x 6 FLOPs, K1 = {k1}, K2 = {k2} (F2: the method's pruned MACs)"
    if rule == "round.count":
        return f"{protocol.rounds} rounds" if protocol.rounds else "1 (one shot)"
    recipe = getattr(protocol, phase)
    if recipe is None and phase == "round":  # the rounds train the retraining's recipe
        recipe = protocol.retrain
    if recipe is None:
        return "0 epochs (no pruning phase)" if part == "epochs" else "-"
    return {"epochs": str(recipe.epochs), "lr": str(recipe.lr), "hparams": _hparams(recipe)}[part]


def describe(protocol, base_epochs: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(what the protocol fixes, what it leaves to the method), each as (words, value) pairs."""
    fixed = [("dataset and network", "the suite's"), ("pruning target", "the run's ratio, speedup or named config, and the protocol's protected layers")]
    fixed += [(WORDS[r], rule_value(r, protocol, base_epochs)) for r in RULES[protocol.setup]]
    left = [(WORDS[r], "default: " + rule_value(r, protocol, base_epochs)) for r in free(protocol.setup)]
    return fixed, left
