"""Every statistic against a hand or scipy computation on small fixed arrays."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from prunebench import stats


def test_summary_is_the_t_interval_by_hand():
    s = stats.summarise([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4 and s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt(5 / 3))
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, df=3) from tables
    assert s.ci == pytest.approx((2.5 - half, 2.5 + half))


def test_one_value_has_no_spread():
    s = stats.summarise([81.5])
    assert (s.n, s.mean, s.std, s.ci) == (1, 81.5, None, None)
    with pytest.raises(ValueError):
        stats.summarise([])


def test_paired_t_test_by_hand():
    # per-seed differences 1, 1, 3: mean 5/3, sd sqrt(4/3), t = 2.5 on 2 degrees of freedom
    c = stats.compare({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.0, 1: 1.0, 2: 1.0})
    assert c.test == "paired t" and c.n == 3
    assert c.delta == pytest.approx(5 / 3)
    # t with 2 df has cdf 1/2 + t / (2 sqrt(2 + t^2))
    assert c.p == pytest.approx(2 * (0.5 - 2.5 / (2 * math.sqrt(8.25))))
    half = 4.302652729911275 * math.sqrt(4 / 3) / math.sqrt(3)  # t(0.975, df=2)
    assert c.ci == pytest.approx((5 / 3 - half, 5 / 3 + half))
    assert c.prob_a_better == 1.0


def test_paired_uses_the_seeds_not_the_order():
    a = {2: 4.0, 0: 1.0, 1: 2.0}
    b = {0: 0.0, 1: 1.0, 2: 1.0}
    assert stats.compare(a, b).p == pytest.approx(stats.compare({0: 1.0, 1: 2.0, 2: 4.0}, b).p)


def test_welch_when_seed_sets_differ_matches_scipy():
    a = {0: 80.1, 1: 81.3, 2: 79.8, 3: 80.9}
    b = {0: 78.2, 1: 79.9, 4: 78.8}
    c = stats.compare(a, b)
    ref = sps.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    assert c.test == "Welch t"
    assert c.p == pytest.approx(ref.pvalue)
    assert c.ci == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert c.delta == pytest.approx(np.mean(list(a.values())) - np.mean(list(b.values())))
    u = sps.mannwhitneyu(list(a.values()), list(b.values())).statistic
    assert c.prob_a_better == pytest.approx(u / (4 * 3))


def test_fewer_than_three_seeds_gives_no_p_value():
    c = stats.compare({0: 80.0, 1: 81.0}, {0: 79.0, 1: 79.5})
    assert c.test is None and c.p is None and c.ci is None
    assert "n = 2" in (c.reason or "")
    assert c.delta == pytest.approx(1.25)
    assert stats.verdict(c, None) == "no test (n < 3)"
    w = stats.compare({0: 80.0, 1: 81.0, 2: 82.0}, {5: 79.0, 6: 79.5})
    assert w.test is None and "fewer than 3" in (w.reason or "")


def test_ties():
    # tie, loss, win: half a win for the tie
    assert stats.compare({0: 1.0, 1: 1.0, 2: 2.0}, {0: 1.0, 1: 2.0, 2: 1.0}).prob_a_better == 0.5
    assert stats.prob_better([1.0, 2.0], [1.0, 1.0], paired=False) == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    same = stats.compare({0: 80.0, 1: 81.0, 2: 82.0}, {0: 80.0, 1: 81.0, 2: 82.0})
    assert (same.p, same.delta, same.ci) == (1.0, 0.0, (0.0, 0.0))  # scipy gives nan here
    shifted = stats.compare({0: 81.0, 1: 82.0, 2: 83.0}, {0: 80.0, 1: 81.0, 2: 82.0})
    assert shifted.p == 0.0 and shifted.ci == (1.0, 1.0)
    assert stats.verdict(shifted, 0.0) == "higher"


def test_holm_on_a_known_p_vector():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.01, None, 0.04]) == [pytest.approx(0.02), None, pytest.approx(0.04)]
    assert stats.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


def test_benjamini_hochberg_on_a_known_p_vector():
    # p * m / rank = 0.02, 0.02, 0.04, 0.04 (ranks 1..4), then the running minimum from the top
    assert stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert stats.benjamini_hochberg([None, 0.2]) == [None, pytest.approx(0.2)]


def test_verdict_reads_the_adjusted_p():
    c = stats.compare({0: 70.0, 1: 71.0, 2: 72.5}, {0: 80.0, 1: 80.5, 2: 81.0})
    assert c.delta < 0
    assert stats.verdict(c, 0.01) == "lower"
    assert stats.verdict(c, 0.05) == "n.s."  # significant only below 0.05


def test_trainability_accuracy_is_eq_1():
    assert stats.first_stage_epochs([(0, 0.01), (2, 0.001)], 4) == 2
    assert stats.first_stage_epochs([(0, 0.01)], 4) == 4
    assert stats.first_stage_epochs([(0, 0.1), (30, 0.01)], 10) == 10  # stage longer than the run
    assert stats.first_stage_epochs([], 4) is None  # cosine: no first stage
    assert stats.trainability([50.0, 60.0, 70.0, 80.0], 2) == 55.0
    assert stats.trainability([50.0], 2) is None
    assert stats.trainability([50.0, 60.0], None) is None
