"""Table 3 formulas (harness.data.stats) on cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.data.stats import gini, kl_divergence, ks_distance, normalise, table3_row


@pytest.mark.parametrize("counts, expected", [
    ([1, 1, 1, 1], 0.0),
    ([0, 0, 0, 10], 0.75),  # (n - 1) / n: one item has everything
    ([1, 2, 3], 4 / 18),  # 2 * (1*1 + 2*2 + 3*3) / (3 * 6) - 4/3 = 28/18 - 24/18
    ([3, 1, 2], 4 / 18),  # order of the input does not matter
    ([], 0.0),
    ([0, 0], 0.0),
])
def test_gini(counts, expected):
    assert gini(np.array(counts)) == pytest.approx(expected)


def test_gini_matches_mean_absolute_difference_definition():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=200).astype(float)
    mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(mad)


def test_kl_divergence_with_add_one_smoothing():
    # counts (1, 0) and (0, 1) -> p = (2, 1)/3, q = (1, 2)/3
    # KLD = 2/3 ln 2 + 1/3 ln(1/2) = ln(2) / 3
    assert kl_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(math.log(2) / 3)
    assert kl_divergence(np.array([5, 5]), np.array([1, 1])) == pytest.approx(0.0)
    # asymmetric in general: p = (4, 1, 1)/6, q = (1, 1, 1)/3
    p = np.array([4, 1, 1]) / 6
    q = np.array([1, 1, 1]) / 3
    assert kl_divergence(np.array([3, 0, 0]), np.array([0, 0, 0])) == pytest.approx(float(np.sum(p * np.log(p / q))))
    with pytest.raises(ValueError):
        kl_divergence(np.array([1]), np.array([1, 2]))


def test_ks_distance_on_normalised_popularity():
    # p_S = (1/2, 1/2, 0), p_R = (1/3, 1/3, 1/3): ECDFs differ most at 1/3 where F_S = 1/3, F_R = 1 -> 2/3
    assert ks_distance(np.array([1, 1, 0]), np.array([5, 5, 5])) == pytest.approx(2 / 3)
    assert ks_distance(np.array([2, 4]), np.array([1, 2])) == pytest.approx(0.0)  # same after normalising
    assert list(normalise(np.array([1, 3]))) == [0.25, 0.75]


@pytest.mark.parametrize("seed", range(5))
def test_ks_distance_equals_scipy_ks_2samp(seed):
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(seed)
    s = rng.zipf(1.5, size=300) * (rng.random(300) < 0.7)
    r = rng.integers(0, 40, size=300)
    expected = ks_2samp(normalise(s), normalise(r)).statistic
    assert ks_distance(s, r) == pytest.approx(expected, abs=1e-12)


def test_table3_row_by_hand():
    row = table3_row(pop_rec=np.array([3, 1, 0, 0]), pop_search=np.array([1, 1, 1, 1]), n_users=2,
                     n_interactions=6, n_rec_items=3, n_search_items=4, n_queries=2, n_qrels=5)
    assert row["rec_density"] == pytest.approx(6 / (2 * 3))
    assert row["search_avg_rel"] == pytest.approx(2.5)
    assert row["rec_gini"] == pytest.approx(gini(np.array([0, 0, 1, 3])))  # 2*(3+12)/(4*4) - 5/4 = 0.625
    assert row["rec_gini"] == pytest.approx(0.625)
    assert row["search_gini"] == 0.0
    # smoothed: p_S = (2, 2, 2, 2)/8, p_R = (4, 2, 1, 1)/8
    # KLD(S||R) = 1/4 (ln 1/2 + 0 + ln 2 + ln 2) = ln(2)/4; KLD(R||S) = 1/2 ln 2 + 2 * 1/8 ln 1/2 = ln(2)/4
    assert row["kld_sr"] == pytest.approx(math.log(2) / 4)
    assert row["kld_rs"] == pytest.approx(math.log(2) / 4)
    assert row["ks_sr"] == pytest.approx(0.5)  # p_S = 1/4 x4, p_R = (3/4, 1/4, 0, 0): at 0 F_R = 1/2, F_S = 0
    assert (row["rec_items"], row["rec_users"], row["search_items"], row["search_queries"]) == (3, 2, 4, 2)
