"""The comparison setups of Wang et al. (Tab. 2) as rules: what each holds equal across methods.

This is the definition of the setup vocabulary; the values (which recipe, how many epochs) are
in each protocol file. S1 ... S4.2 form a ladder, each adding to the one before. SX-A and SX-B
hold the base model and the training hyper-parameters equal and then only the *total* of
pretraining + pruning + retraining (epochs or training FLOPs): Wang et al. move the finetuning
LR and the split of epochs freely under them (Sec. 4, Tab. 4), so per-phase epochs and LR
schedules are left to the method there.
"""

from __future__ import annotations

# One rule per line: "<what>" ; phase rules read "<phase>.<part>", part in epochs, lr, hparams
# (batch size, samples per epoch, momentum, weight decay, nesterov, augmentation).
LADDER = ("S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2")
RULES: dict[str, tuple[str, ...]] = {
    "S1": (),
    "S2": ("base",),
    "S3.1": ("base", "retrain.epochs", "retrain.hparams"),
    "S3.2": ("base", "retrain.epochs", "retrain.hparams", "retrain.lr"),
    "S4.1": ("base", "retrain.epochs", "retrain.hparams", "retrain.lr", "prune.epochs", "prune.hparams"),
    "S4.2": ("base", "retrain.epochs", "retrain.hparams", "retrain.lr", "prune.epochs", "prune.hparams",
             "prune.lr"),
    "SX-A": ("base", "retrain.hparams", "prune.hparams", "total.epochs"),
    "SX-B": ("base", "retrain.hparams", "prune.hparams", "total.flops"),
}
ALWAYS = "dataset, network and pruning target (ratio or named config)"
WORDS = {
    "base": "the base checkpoint (the suite's base model of each seed, sha256 checked)",
    "retrain.epochs": "retraining epochs",
    "retrain.lr": "retraining LR schedule",
    "retrain.hparams": "retraining batch size, samples per epoch, momentum, weight decay, nesterov, augmentation",
    "prune.epochs": "pruning-phase epochs",
    "prune.lr": "pruning-phase LR schedule",
    "prune.hparams": "pruning-phase batch size, samples per epoch, momentum, weight decay, nesterov, augmentation",
    "total.epochs": "total epochs of pretrain + prune + retrain (Scratch-E trains them all)",
    "total.flops": "total training FLOPs of pretrain + prune + retrain (Scratch-B: K1*F1/F2 + K2 epochs)",
}
ALL_RULES = tuple(WORDS)


def fixes(setup: str, rule: str) -> bool:
    return rule in RULES[setup]


def free(setup: str) -> list[str]:
    """What a setup leaves to the method (the method's declared choice, else the protocol's default)."""
    return [r for r in ALL_RULES if r not in RULES[setup] and not r.startswith("total.")]
