"""Cross-validating retraining recipes (Wang et al., Sec. 5).

Method A retrains with its recipe F_A, method B with F_B; a claim "A beats B" may only say that
A + F_A beats B + F_B. Running A + F_B and B + F_A as well gives a 2x2 table: if one method wins
under both recipes, the win is the pruning's; if the winner changes with the recipe, pruning and
retraining interact, and the pairing that performs best is named.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunebench import stats
from prunebench.config import Recipe
from prunebench.errors import UserError
from prunebench.runner import Harness
from prunebench.setups import fixes


@dataclass(frozen=True)
class Pairing:
    method: str  # the row label of the method
    recipe_of: str  # whose recipe it retrains with
    scores: dict[int, float]  # seed -> final test accuracy
    runs: dict[int, str]  # seed -> run id

    @property
    def summary(self) -> stats.Summary:
        return stats.summarise(list(self.scores.values()))


@dataclass(frozen=True)
class Duel:
    """The two methods under one recipe: A against B, paired by seed; p adjusted by Holm over
    the two recipes. `leader` is the method with the higher mean ('tie' when equal); it is the
    winner only when the difference is significant."""

    recipe_of: str
    comparison: stats.Comparison
    p_adjusted: float | None
    leader: str

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < stats.ALPHA and self.leader != "tie"

    @property
    def winner(self) -> str | None:
        return self.leader if self.significant else None

    def reading(self) -> str:
        c = self.comparison
        if c.test is None:
            return f"{self.leader} ahead, not tested ({c.reason})"
        return f"{self.leader} {'wins' if self.significant else 'ahead, n.s.'} (p Holm = {self.p_adjusted:.3g})"


@dataclass(frozen=True)
class CrossVal:
    a: str
    b: str
    recipes: dict[str, Recipe]  # method label -> its own retraining recipe
    pairings: dict[tuple[str, str], Pairing]  # (method, recipe owner) -> pairing
    duels: tuple[Duel, Duel]

    @property
    def consistent(self) -> bool:
        """One method significantly better under both recipes."""
        first, second = self.duels
        return first.winner is not None and first.winner == second.winner

    @property
    def interact(self) -> bool:
        """Each method significantly better under one recipe."""
        first, second = self.duels
        return None not in (first.winner, second.winner) and first.winner != second.winner

    @property
    def best(self) -> Pairing:
        return max(self.pairings.values(), key=lambda p: p.summary.mean)

    def verdict(self) -> str:
        """Wang et al.'s reading of the 2x2 table; a winner counts only where its difference is
        significant (Holm-adjusted p < 0.05 over the two recipes)."""
        if self.consistent:
            return f"consistent winner: {self.duels[0].winner} wins under both recipes"
        best = self.best
        if self.interact:
            return (f"pruning and retraining interact: the winner changes with the recipe; the best pairing is "
                    f"{best.method} with the recipe of {best.recipe_of} ({best.summary.mean:.2f}%)")
        readings = "; ".join(f"under the recipe of {d.recipe_of}: {d.reading()}" for d in self.duels)
        return f"inconclusive: no method wins significantly under both recipes ({readings})"


def crossval(harness: Harness, a: str, b: str, seeds: list[int], ratio: float | None = None,
             config: str | None = None, speedup: float | None = None) -> CrossVal:
    """Run all four (method, recipe) pairings of methods `a` and `b` over `seeds` at one target,
    and compare the methods under each recipe."""
    setup = harness.setup
    if fixes(setup, "retrain.lr"):
        raise UserError(f"{setup} fixes the retraining LR schedule, so every method retrains with the same "
                        "recipe and there is nothing to cross-validate; use S1, S2, S3.1, SX-A or SX-B.")
    (_, mspec_a), (_, mspec_b) = harness.resolve(a), harness.resolve(b)
    label_a, label_b = mspec_a.label, mspec_b.label
    if label_a == label_b:
        raise UserError(f"both methods are {label_a!r}: cross-validate two different methods.")
    targets = harness.targets(ratio, config, speedup)
    if len(targets) != 1:
        raise UserError(f"the protocol has {len(targets)} pruning targets; choose one with --ratio, --speedup or --config.")
    own = {label_a: harness.own_recipe(a), label_b: harness.own_recipe(b)}
    if own[label_a] == own[label_b]:
        raise UserError(f"{label_a} and {label_b} retrain with the same recipe (LR {own[label_a].lr}, "
                        f"{own[label_a].epochs} epochs), so the pairings would repeat each other; give one its "
                        "own schedule, e.g. --method 'l1norm:retrain_lr=\"0:0.05,2:0.005\"'.")
    target = targets[0]
    rows = harness.run([a, b], seeds, target.ratio, target.config, speedup=target.speedup)
    rows += harness.run([a, b], seeds, target.ratio, target.config, speedup=target.speedup,
                        borrow={a: (label_b, own[label_b]), b: (label_a, own[label_a])})
    by_row = {r["row"]: r for r in rows}

    plain = {label_a: mspec_a.without_recipe.label, label_b: mspec_b.without_recipe.label}

    def pairing(method: str, owner: str) -> Pairing:
        key = method if method == owner else f"{plain[method]} with the recipe of {owner}"
        row = by_row[key]
        scores = {int(m["seed"]): float(m["test_acc"]) for m in row["per_seed"]}
        return Pairing(method, owner, scores, {int(m["seed"]): m["run_id"] for m in row["per_seed"]})

    pairings = {(m, o): pairing(m, o) for m in (label_a, label_b) for o in (label_a, label_b)}
    comparisons = [stats.compare(pairings[(label_a, o)].scores, pairings[(label_b, o)].scores)
                   for o in (label_a, label_b)]
    adjusted = stats.holm([c.p for c in comparisons])
    duels = tuple(Duel(o, c, p, label_a if c.delta > 0 else label_b if c.delta < 0 else "tie")
                  for o, c, p in zip((label_a, label_b), comparisons, adjusted))
    return CrossVal(label_a, label_b, own, pairings, duels)  # type: ignore[arg-type]
