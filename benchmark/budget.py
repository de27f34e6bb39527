"""The setups' epoch and FLOPs arithmetic, pure: the shared base's recipe, K1/K2, the scratch
baselines' epochs (Scratch-E/B), SX budgets, squeezing under a P/F schedule, and fitting a
method's own pruning phase into the retraining budget. Nothing here trains or reads data; every
function is checkable by hand (tests/test_budget.py)."""

from __future__ import annotations

from dataclasses import dataclass

from prunebench.config import Protocol, Recipe, Suite
from prunebench.errors import UserError
from prunebench.flops import training_flops
from prunebench.method import Choices


def scratch_epochs(variant: str, k1: int, k2: int, dense_macs: int, pruned_macs: int) -> int:
    """Epochs of the scratch baseline (Liu et al.; Wang et al. Sec. 2).

    Scratch-E: the pipeline's K1 + K2 epochs. Scratch-B: the same training FLOPs, K1*F1/F2 + K2
    epochs, rounded down so the baseline never exceeds the pipeline's budget (Rethinking's
    int(E*F1/F2) is the case K2 = 0).
    """
    if variant == "Scratch-E":
        return k1 + k2
    return int(k1 * dense_macs / pruned_macs) + k2


@dataclass(frozen=True)
class Budgets:
    """The arithmetic of one protocol on one suite. `registered_size` is the dataset's usual
    training size: what fitting uses, so a run id never depends on whether data were loaded."""

    protocol: Protocol
    suite: Suite
    dense_macs: int
    registered_size: int

    @property
    def base_recipe(self) -> Recipe:
        """The shared base: the suite's recipe, or its first P epochs under a P/F schedule."""
        pf = self.protocol.pf_epochs
        return self.suite.base.truncated(pf[0]) if pf else self.suite.base

    @property
    def squeezes(self) -> bool:
        """SX-B with a P/F schedule: the dense part is squeezed by the speedup (Wang et al. Tab. 4)."""
        return self.protocol.setup == "SX-B" and self.protocol.pf_epochs is not None

    def pipeline_base(self, pruned_macs: int) -> Recipe:
        """The base recipe of a pruning pipeline. Under SX-B with P/F, pruning happens at epoch
        int(P / speedup), so that P'*F1 + F*F2 <= (P + F)*F2, the scratch baseline's FLOPs."""
        if not self.squeezes:
            return self.base_recipe
        p, _ = self.protocol.pf_epochs  # type: ignore[misc]
        return self.suite.base.truncated(max(1, int(p * pruned_macs / self.dense_macs)))

    def k1_k2(self, pruned_macs: int) -> tuple[int, int]:
        """Epochs the protocol's pipeline trains the dense (K1) and the pruned model (K2)."""
        prune = self.protocol.prune.epochs if self.protocol.prune else 0
        return self.pipeline_base(pruned_macs).epochs + prune, self.protocol.retrain.epochs

    @property
    def variant(self) -> str:
        return self.protocol.scratch_variant or "Scratch"

    def scratch_epochs(self, pruned_macs: int) -> int:
        """Epochs of this protocol's scratch baseline of an architecture of `pruned_macs`."""
        if self.variant == "Scratch":  # outside SX: the base recipe, as Wang et al. describe S2-S4
            return self.suite.base.epochs
        if self.squeezes:  # the scratch run is the anchor: P + F epochs (Wang et al. Tab. 4)
            return sum(self.protocol.pf_epochs)  # type: ignore[arg-type]
        return scratch_epochs(self.variant, *self.k1_k2(pruned_macs), self.dense_macs, pruned_macs)

    def budget(self, pruned_macs: int, train_size: int) -> float | None:
        """The SX budget of one pruning pipeline, in epochs (SX-A) or training FLOPs (SX-B),
        counting `train_size` images per epoch unless a recipe sets its samples per epoch."""
        b = self.protocol.budget
        if b is None:
            return None
        k1, k2 = self.k1_k2(pruned_macs)
        if b.kind == "epochs":
            return float(k1 + k2)

        def samples(recipe: Recipe | None, epochs: int) -> int:
            return epochs * ((recipe.samples_per_epoch if recipe else None) or train_size)

        if self.squeezes:  # the scratch run's P + F epochs at the pruned MACs
            pf = sum(self.protocol.pf_epochs)  # type: ignore[arg-type]
            return float(training_flops(samples(self.suite.base, pf), pruned_macs))
        base, prune = self.pipeline_base(pruned_macs), self.protocol.prune
        dense = samples(base, base.epochs) + samples(prune, prune.epochs if prune else 0)
        return float(training_flops(dense, self.dense_macs)
                     + training_flops(samples(self.protocol.retrain, k2), pruned_macs))

    def fit(self, chosen: Choices, pruned_macs: int, rounds: list[tuple[Recipe, int]] | None = None) -> Choices:
        """Under SX-A/SX-B a pruning phase the method adds (the protocol has none), and the
        trainings after an iterative method's pruning rounds (`rounds`: each one's recipe and
        MACs), come out of its retraining, which is shortened (LR stages stretched) so the
        pipeline keeps the total budget; a method that chose its own retraining length is left
        to the audit."""
        b = self.protocol.budget
        retrain = chosen.retrain or self.protocol.retrain  # its own LR schedule, if it chose one
        own = chosen.prune if chosen.prune is not None and self.protocol.prune is None else None
        if (b is None or (own is None and not rounds)
                or retrain.epochs != self.protocol.retrain.epochs):  # its own retraining length: the audit's
            return chosen
        n_r = retrain.samples_per_epoch or self.registered_size
        spent = [(own, self.dense_macs)] if own is not None else []
        spent += list(rounds or [])
        if b.kind == "epochs":
            left = retrain.epochs - sum(recipe.epochs for recipe, _ in spent)
        else:  # FLOPs: an epoch at MACs M costs M / F2 pruned epochs
            used = sum(recipe.epochs * (recipe.samples_per_epoch or self.registered_size) * macs
                       for recipe, macs in spent)
            left = (retrain.epochs * n_r * pruned_macs - used) // (n_r * pruned_macs)
        if left < 1:
            what = (f"{own.epochs} pruning epoch(s) at the dense model's MACs" if own is not None else "")
            if rounds:
                what += (" and " if what else "") + (f"the trainings between {len(rounds) + 1} pruning rounds "
                                                     f"({len(rounds)} x {rounds[0][0].epochs} epoch(s))")
            fixes = []
            if own is not None:
                fixes += ["a protocol with a pruning phase ('prune:' in the protocol file, counted in everyone's "
                          "budget)", "a smaller 'prune_epochs'"]
            if rounds:
                fixes += ["fewer 'rounds' (e.g. rounds=2; rounds=1 prunes in one shot)"]
                if rounds[0][0].epochs > 1:
                    fixes += ["a smaller 'round_epochs'"]
            raise UserError(
                f"under {self.protocol.setup} what a method trains before its retraining comes out of the retraining "
                f"budget, but {what} leave no retraining epoch of the {retrain.epochs} the protocol budgets. Use "
                + ", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1]
                + ", or a protocol with a larger retraining budget.")
        return chosen.model_copy(update={"retrain": retrain.with_epochs(int(left))})
