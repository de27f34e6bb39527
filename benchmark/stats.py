"""Statistics of a leaderboard: pure functions over per-seed accuracies.

Shapes: a cell's scores are a mapping seed -> final test accuracy (%), one run per seed. Seed k
fixes the base model, data order and init, and the seed-k base feeds every method, so two cells
with the same seeds are compared pairwise (paired t-test on per-seed differences); with
different seed sets the runs are independent samples (Welch's t-test). Rank tests are not used:
at n <= 5 they cannot reach p < 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_N = 3  # below this no test is run: the table says so instead of printing a p-value


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof 1), n and the 95% t-interval of the mean."""

    n: int
    mean: float
    std: float | None
    ci: tuple[float, float] | None


def summarise(values: Sequence[float], confidence: float = 0.95) -> Summary:
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values to summarise")
    mean = float(x.mean())
    if x.size < 2:
        return Summary(int(x.size), mean, None, None)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1)) * std / math.sqrt(x.size)
    return Summary(int(x.size), mean, std, (mean - half, mean + half))


@dataclass(frozen=True)
class Comparison:
    """A against B: delta = mean(A) - mean(B) (paired: mean of per-seed differences), its 95%
    CI, the two-sided p-value, P(A > B) and which test ran. `test` is None when n < 3, with
    `reason` saying so; `p` is then None."""

    test: str | None
    n: int
    delta: float
    ci: tuple[float, float] | None
    p: float | None
    prob_a_better: float
    reason: str | None = None


def prob_better(a: Sequence[float], b: Sequence[float], paired: bool) -> float:
    """P(A > B), ties counted half. Paired: the share of seeds where A beats B. Unpaired: the
    share of all (a, b) pairs, the Mann-Whitney U statistic over n_a * n_b (rliable's
    "probability of improvement")."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        return float(np.mean((x > y) + 0.5 * (x == y)))
    diff = x[:, None] - y[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def _degenerate(delta: float) -> tuple[float, tuple[float, float]]:
    """Zero variance: every seed gives the same difference. A zero difference is no evidence
    (p = 1); a constant non-zero one is as strong as evidence gets (p = 0) — scipy returns nan
    for both."""
    return (1.0 if delta == 0 else 0.0), (delta, delta)


def compare(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> Comparison:
    """A against B, each a mapping seed -> accuracy. Same seeds: paired t-test on the per-seed
    differences. Different seed sets: Welch's t-test."""
    paired = set(a) == set(b)
    if paired:
        seeds = sorted(a)
        x = np.array([a[s] for s in seeds], dtype=float)
        y = np.array([b[s] for s in seeds], dtype=float)
        d = x - y
        n, delta = len(seeds), float(d.mean())
        prob = prob_better(x, y, paired=True)
        if n < MIN_N:
            return Comparison(None, n, delta, None, None, prob, f"n = {n} < {MIN_N} paired seeds: no test")
        if np.all(d == d[0]):
            p, ci = _degenerate(delta)
            return Comparison("paired t", n, delta, ci, p, prob)
        res = stats.ttest_rel(x, y)
        low, high = res.confidence_interval(confidence)
        return Comparison("paired t", n, delta, (float(low), float(high)), float(res.pvalue), prob)
    x = np.array(list(a.values()), dtype=float)
    y = np.array(list(b.values()), dtype=float)
    n, delta = min(x.size, y.size), float(x.mean() - y.mean())
    prob = prob_better(x, y, paired=False)
    if n < MIN_N:
        return Comparison(None, n, delta, None, None, prob,
                          f"n = {x.size} and {y.size} seeds, fewer than {MIN_N} in one: no test")
    if x.var() == 0 and y.var() == 0:
        p, ci = _degenerate(delta)
        return Comparison("Welch t", n, delta, ci, p, prob)
    res = stats.ttest_ind(x, y, equal_var=False)
    low, high = res.confidence_interval(confidence)
    return Comparison("Welch t", n, delta, (float(low), float(high)), float(res.pvalue), prob)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error) of the p-values of one table; None
    entries (no test) are left out of the family and stay None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    p = np.array([pvalues[i] for i in idx], dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    out: list[float | None] = [None] * len(pvalues)
    for j, i in enumerate(idx):
        out[i] = float(adjusted[j])
    return out


def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjustment (false discovery rate), for all-pairs matrices; None
    entries stay None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if idx:
        adjusted = stats.false_discovery_control([pvalues[i] for i in idx], method="bh")
        for j, i in enumerate(idx):
            out[i] = float(adjusted[j])
    return out


def verdict(comparison: Comparison, p_adjusted: float | None) -> str:
    """How a table reads a comparison: 'higher' / 'lower' when the adjusted p < 0.05, else
    'n.s.'; 'no test (n < 3)' when none was possible."""
    if comparison.test is None or p_adjusted is None:
        return f"no test (n < {MIN_N})"
    if p_adjusted >= ALPHA:
        return "n.s."
    return "higher" if comparison.delta > 0 else "lower"


def first_stage_epochs(stages: Sequence[tuple[int, float]] | None, epochs: int) -> int | None:
    """N of Wang et al.'s Eq. 1: the length of the first LR stage of a piecewise schedule over
    `epochs` epochs. None for a schedule without stages (cosine): it has no first stage."""
    if not stages:
        return None
    later = [e for e, _ in stages[1:] if e > 0]
    return min(later[0], epochs) if later else epochs


def trainability(accuracies: Sequence[float], first_stage: int | None) -> float | None:
    """Trainability accuracy (Wang et al. Eq. 1): the mean accuracy over the first N epochs of
    retraining, N = the first LR stage's length. None when there is no first stage or the run
    trained fewer epochs than it."""
    if first_stage is None or first_stage < 1 or len(accuracies) < first_stage:
        return None
    return float(np.mean(accuracies[:first_stage]))
