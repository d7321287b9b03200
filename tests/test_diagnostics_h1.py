"""H1 (Table 6): popularity of predicted items under the other task's training data, by hand and against scipy."""

import numpy as np
import pytest
from scipy import stats

from harness.diagnostics.h1 import mean_predicted_popularity, percent_change, popularity_shift
from harness.errors import HarnessError

POP_OTHER = np.array([10, 0, 5, 1])
JOINT = np.array([[0, 2, -1], [1, 3, 0], [2, 1, 3]])
REF = np.array([[1, 3, -1], [2, -1, -1], [0, 1, 3]])


def test_mean_predicted_popularity_skips_padding():
    np.testing.assert_allclose(mean_predicted_popularity(JOINT, POP_OTHER), [7.5, 11 / 3, 2.0])
    np.testing.assert_allclose(mean_predicted_popularity(REF, POP_OTHER), [0.5, 5.0, 11 / 3])
    empty = mean_predicted_popularity(np.full((2, 3), -1), POP_OTHER)
    assert np.isnan(empty).all()


def test_popularity_shift_by_hand():
    out = popularity_shift(JOINT, REF, POP_OTHER, metric="Pop_search")
    joint_mean = (7.5 + 11 / 3 + 2.0) / 3  # 4.388889
    ref_mean = (0.5 + 5.0 + 11 / 3) / 3  # 3.055556
    assert out["n"] == 3
    assert out["joint_mean"] == pytest.approx(joint_mean)
    assert out["reference_mean"] == pytest.approx(ref_mean)
    assert out["delta"] == pytest.approx(joint_mean - ref_mean)
    assert out["delta_pct"] == pytest.approx(100 * (joint_mean - ref_mean) / ref_mean)  # +43.64%
    expected = stats.ttest_rel([7.5, 11 / 3, 2.0], [0.5, 5.0, 11 / 3])
    assert out["test"]["p"] == pytest.approx(float(expected.pvalue))
    assert out["test"]["metric"] == "Pop_search"


def test_a_request_without_predictions_is_left_out_of_both_sides():
    joint = np.vstack([JOINT, [[-1, -1, -1]]])
    ref = np.vstack([REF, [[0, 0, 0]]])  # its reference side alone would pull the mean up
    assert popularity_shift(joint, ref, POP_OTHER)["reference_mean"] == pytest.approx((0.5 + 5.0 + 11 / 3) / 3)


def test_no_requests_gives_undefined_numbers_not_a_crash():
    out = popularity_shift(np.zeros((0, 3), int), np.zeros((0, 3), int), POP_OTHER)
    assert out["n"] == 0 and out["delta_pct"] is None and out["test"]["p"] is None


def test_misaligned_rankings_are_refused():
    with pytest.raises(HarnessError, match="3 requests, the reference's 2"):
        popularity_shift(JOINT, REF[:2], POP_OTHER)


@pytest.mark.parametrize(
    "new, old, expected",
    [(3.0, 2.0, 50.0), (1.0, 2.0, -50.0), (0.0, 0.0, 0.0), (1.0, 0.0, None), (float("nan"), 1.0, None)],
)
def test_percent_change(new, old, expected):
    assert percent_change(new, old) == (pytest.approx(expected) if expected is not None else None)
