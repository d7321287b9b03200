"""Paired t-test against scipy and a hand computation; Holm against a worked example (and statsmodels)."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.errors import HarnessError
from harness.metrics import Metric
from harness.metrics.significance import PairedTTest, compare, compare_values, holm, paired_ttest

HAND_X = np.array([0.5, 1.0, 0.0, 1.0, 0.25, 0.75])
HAND_Y = np.array([0.25, 0.5, 0.0, 1.0, 0.0, 0.5])


def test_matches_scipy_ttest_rel_on_hand_made_pairs():
    result = paired_ttest(HAND_X, HAND_Y, metric="R@10")
    expected = stats.ttest_rel(HAND_X, HAND_Y)
    assert result.t == pytest.approx(float(expected.statistic), rel=1e-12)
    assert result.p == pytest.approx(float(expected.pvalue), rel=1e-12)
    assert result.n == 6
    assert result.mean == pytest.approx(HAND_X.mean()) and result.reference_mean == pytest.approx(HAND_Y.mean())
    ci = expected.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))


def test_confidence_interval_by_hand():
    # d = [0.25, 0.5, 0, 0, 0.25, 0.25]: mean 0.208333, sd 0.188193; t_{0.975, 5} = 2.570582 (t table)
    d = HAND_X - HAND_Y
    mean = d.sum() / 6
    sd = math.sqrt(((d - mean) ** 2).sum() / 5)
    half = 2.570582 * sd / math.sqrt(6)  # table value, 7 significant digits
    result = paired_ttest(HAND_X, HAND_Y, metric="R@10")
    assert result.diff == pytest.approx(0.2083333333333333)
    assert result.ci_low == pytest.approx(mean - half, abs=1e-6)
    assert result.ci_high == pytest.approx(mean + half, abs=1e-6)
    assert result.t == pytest.approx(mean / (sd / math.sqrt(6)))
    # at alpha 0.10 the interval narrows (t_{0.95, 5} = 2.015048)
    narrow = paired_ttest(HAND_X, HAND_Y, metric="R@10", alpha=0.10)
    assert narrow.ci_high - narrow.ci_low == pytest.approx(2 * 2.015048 * sd / math.sqrt(6), rel=1e-6)


def test_random_pairs_match_scipy_and_significance_follows_p():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(3, 200))
        y = rng.random(n)
        x = np.clip(y + rng.normal(rng.normal(0, 0.05), 0.2, n), 0, 1)
        ours = paired_ttest(x, y, metric="R@1")
        theirs = stats.ttest_rel(x, y)
        assert ours.p == pytest.approx(float(theirs.pvalue), rel=1e-9, abs=1e-300)
        assert ours.significant == (ours.p < 0.05)
        ci = theirs.confidence_interval()
        assert ours.ci_low == pytest.approx(ci.low, rel=1e-9) and ours.ci_high == pytest.approx(ci.high, rel=1e-9)


def test_nan_pairs_are_dropped_pairwise():
    x = np.array([0.5, np.nan, 1.0, 0.0, 0.25, 0.75, 1.0])
    y = np.array([0.25, 0.5, 0.5, 0.0, np.nan, 0.5, 0.0])
    keep = ~(np.isnan(x) | np.isnan(y))
    result = paired_ttest(x, y, metric="R@1/head")
    assert result.n == keep.sum() == 5
    assert result.p == pytest.approx(float(stats.ttest_rel(x[keep], y[keep]).pvalue), rel=1e-12)
    assert result.mean == pytest.approx(x[keep].mean())


def test_identical_values_give_p_one_and_zero_difference():
    x = np.array([0.0, 1.0, 0.5, 0.5])
    result = paired_ttest(x, x.copy(), metric="R@1")
    assert (result.diff, result.p, result.ci_low, result.ci_high, result.significant) == (0.0, 1.0, 0.0, 0.0, False)
    assert math.isnan(result.t)
    assert result.to_dict()["t"] is None


def test_rounding_noise_is_not_a_difference():
    x = np.array([0.1, 0.2, 0.3])
    y = x + np.array([1e-17, 2e-16, 0.0])  # what summing seeds in another order can produce
    assert paired_ttest(x, y, metric="R@1").p == 1.0


def test_constant_nonzero_difference_is_the_zero_variance_limit():
    result = paired_ttest(np.array([0.5, 0.75, 1.0]), np.array([0.25, 0.5, 0.75]), metric="R@1")
    assert result.t == math.inf and result.p == 0.0 and result.significant
    assert result.ci_low == result.ci_high == pytest.approx(0.25)
    assert result.to_dict()["t"] is None  # JSON has no infinity


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_pairs_cannot_be_tested(n):
    result = paired_ttest(np.ones(n), np.zeros(n), metric="R@1/torso")
    assert result.n == n and math.isnan(result.p) and result.significant is False
    d = result.to_dict()
    assert d["p"] is None and d["ci_low"] is None and d["significant"] is False
    assert (d["mean"] is None) == (n == 0)


def test_bad_inputs():
    with pytest.raises(HarnessError, match="R@1"):
        paired_ttest(np.ones(3), np.ones(4), metric="R@1")
    with pytest.raises(HarnessError, match="alpha"):
        paired_ttest(np.ones(3), np.ones(3), metric="R@1", alpha=1.5)
    with pytest.raises(HarnessError, match="p-values"):
        holm([0.5, 1.2])


def test_holm_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.3]), [0.6, 0.6])  # capped at 1 only when needed
    np.testing.assert_allclose(holm([0.9, 0.8]), [1.0, 1.0])
    np.testing.assert_allclose(holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])  # NaN passes, m = 2
    assert holm([]).shape == (0,)


def test_holm_matches_statsmodels_when_installed():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(0).random(25) ** 3
    np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1], rtol=1e-12)


def test_compare_sets_holm_and_significance_on_copies():
    rows = [
        PairedTTest("R@1", 10, 0.5, 0.4, 0.1, 0.0, 0.2, 2.0, p, 0.05, None, p < 0.05)
        for p in (0.01, 0.04, 0.03, 0.005, math.nan)
    ]
    out = compare(rows, alpha=0.05)
    # the NaN row (a test that could not run) is not in the family: m = 4, as in the worked example
    assert [r.p_holm for r in out[:4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [r.significant for r in out] == [True, False, False, True, False]
    assert math.isnan(out[4].p_holm)
    assert rows[0].p_holm is None  # inputs untouched
    assert compare(rows, alpha=0.1)[1].significant and compare(rows, alpha=0.1)[1].alpha == 0.1


def test_compare_values_builds_one_table():
    rng = np.random.default_rng(1)
    ref = {Metric("R", 1): rng.random(50), Metric("R", 1, "head"): np.where(rng.random(50) < 0.5, np.nan, 0.5)}
    ours = {m: v + 0.2 * rng.random(50) for m, v in ref.items()}
    ours[Metric("R", 5)] = rng.random(50)  # not on the reference's side: not compared
    rows = compare_values(ours, ref)
    assert [r.metric for r in rows] == ["R@1", "R@1/head"]
    assert rows[1].n == int((~np.isnan(ref[Metric("R", 1, "head")])).sum())
    assert all(r.p_holm is not None for r in rows)
    with pytest.raises(HarnessError, match="R@5"):
        compare_values(ours, ref, metrics=[Metric("R", 5)])
