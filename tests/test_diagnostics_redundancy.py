"""Table 8: pair types and the joint model's improvement per group of requests, by hand."""

import numpy as np
import pytest

from harness.diagnostics.pairs import CooccurrenceCounter, Incidence, Pairs
from harness.diagnostics.redundancy import pair_types, redundancy_table
from harness.errors import HarnessError

# Target-task training data: context 0 holds {0, 1}, context 1 holds {3, 4, 5}.
TARGET = CooccurrenceCounter(Incidence.from_pairs(np.array([0, 1, 3, 4, 5]), np.array([0, 0, 1, 1, 1]), 6, 2))

# Pairs each request holds that the OTHER task's training data has (already filtered on that):
#   request 0: {0, 1} (in target: redundant), {0, 2} (not: non-redundant)
#   request 1: {4, 3} (redundant, written in the other order)
#   request 2: none
#   request 3: {2, 0} (the same non-redundant pair as request 0's)
PAIRS = Pairs(np.array([0, 0, 1, 3]), np.array([0, 0, 4, 2]), np.array([1, 2, 3, 0]))
JOINT = np.array([1.0, 0.0, 0.5, 1.0])
REF = np.array([0.5, 0.0, 0.5, 0.0])


def test_pair_types_look_each_distinct_pair_up_once():
    redundant, n_red, n_nonred = pair_types(PAIRS, TARGET)
    assert redundant.tolist() == [True, False, True, False]
    assert (n_red, n_nonred) == (2, 1)  # {0, 2} and {2, 0} are one distinct pair


def test_redundancy_table_by_hand():
    out = redundancy_table(PAIRS, TARGET, JOINT, REF, metric="R@10")
    assert out["redundant_pairs"] == 2 and out["non_redundant_pairs"] == 1
    assert out["redundant_pair_occurrences"] == 2 and out["non_redundant_pair_occurrences"] == 2
    groups = out["groups"]
    # redundant: requests 0 and 1 -> joint 0.5, reference 0.25
    assert groups["redundant"]["n_requests"] == 2
    assert groups["redundant"]["joint_mean"] == pytest.approx(0.5)
    assert groups["redundant"]["reference_mean"] == pytest.approx(0.25)
    assert groups["redundant"]["improvement_pct"] == pytest.approx(100.0)
    # non-redundant: requests 0 and 3 -> joint 1.0, reference 0.25
    assert groups["non_redundant"]["improvement_pct"] == pytest.approx(300.0)
    assert groups["both"]["n_requests"] == 1 and groups["both"]["improvement_pct"] == pytest.approx(100.0)
    # request 2 holds no pair the other task knows: equal recall, 0% improvement
    assert groups["none"]["n_requests"] == 1 and groups["none"]["improvement_pct"] == 0.0
    assert groups["redundant"]["test"]["metric"] == "R@10"


def test_groups_with_no_requests_or_zero_reference_are_defined():
    empty = Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    out = redundancy_table(empty, TARGET, JOINT, REF)
    assert out["redundant_pairs"] == 0 and out["groups"]["redundant"]["n_requests"] == 0
    assert out["groups"]["redundant"]["improvement_pct"] is None
    assert out["groups"]["none"]["n_requests"] == 4
    # reference recall 0 and joint > 0 on a group: the ratio is undefined, not infinite
    only_3 = Pairs(np.array([3]), np.array([2]), np.array([0]))
    assert redundancy_table(only_3, TARGET, JOINT, REF)["groups"]["non_redundant"]["improvement_pct"] is None


def test_refuses_pairs_of_unknown_requests():
    with pytest.raises(HarnessError, match="names request 7, but there are 4"):
        redundancy_table(Pairs(np.array([7]), np.array([0]), np.array([1])), TARGET, JOINT, REF)
