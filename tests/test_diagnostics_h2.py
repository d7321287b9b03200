"""H2 (Table 7): the paper's two worked examples, changed lists, and the Δ between request groups."""

import numpy as np
import pytest
from scipy import stats

from harness.diagnostics.h2 import (
    changed_lists,
    changed_prediction_contrast,
    history_target_query_matches,
    relevant_pair_cooccurrence,
    scan_history_target_pairs,
)
from harness.data.views import RecExamples, SearchExamples
from harness.diagnostics.pairs import CooccurrenceCounter, rec_training_incidence, search_training_incidence
from harness.errors import HarnessError


def _search(relevance_sets):
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in relevance_sets])]).astype(np.int64)
    items = np.array([i for r in relevance_sets for i in r], dtype=np.int32)
    n = len(relevance_sets)
    return SearchExamples(np.arange(n, dtype=np.int32), [f"q{i}" for i in range(n)], offsets, items)


def _requests(histories):
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in histories])]).astype(np.int64)
    items = np.array([i for h in histories for i in h], dtype=np.int32)
    n = len(histories)
    return RecExamples(offsets, items, np.arange(n, dtype=np.int32), np.array([len(h) for h in histories], np.int32))


def _rec_train(sequences, tails):
    """Every prefix instance of each training sequence; `tails` are stored after it but are not training data."""
    stored = [list(s) + list(t) for s, t in zip(sequences, tails)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in stored])]).astype(np.int64)
    items = np.array([i for s in stored for i in s], dtype=np.int32)
    rows = [(u, h, s[h]) for u, s in enumerate(sequences) for h in range(1, len(s))]
    user, hist, target = (np.array(c, dtype=np.int32) for c in zip(*rows))
    return RecExamples(offsets, items, user, hist, target)


# The paper's example (§7): history {i1, i2}, target i3; 2 training queries hold {i1, i3}, 3 hold {i2, i3}.
PAPER_SEARCH_TRAIN = _search([[1, 3], [1, 3, 5], [2, 3], [2, 3, 0], [3, 4, 2], [1, 2], [4, 5]])


@pytest.mark.parametrize("budget", [None, 0])  # X X^T formed outright, or pair by pair
def test_paper_example_history_to_target_query_matches_is_5(budget):
    inc = search_training_incidence(PAPER_SEARCH_TRAIN, n_items=6)
    counter = CooccurrenceCounter(inc) if budget is None else CooccurrenceCounter(inc, materialise_budget=budget)
    matches = history_target_query_matches(_requests([[1, 2]]), np.array([3]), counter)
    assert matches.tolist() == [5.0]


def test_repeated_history_items_count_per_position_and_the_target_itself_is_skipped():
    counter = CooccurrenceCounter(search_training_incidence(PAPER_SEARCH_TRAIN, n_items=6))
    # positions: 1 (2 queries with 3), 2 (3), 1 again (2), 3 = the target (skipped), 4 (1: query {3, 4, 2})
    matches = history_target_query_matches(_requests([[1, 2, 1, 3, 4], [0]]), np.array([3, 3]), counter)
    assert matches.tolist() == [8.0, 1.0]


def test_scan_keeps_linked_pairs_once_per_distinct_history_item():
    counter = CooccurrenceCounter(search_training_incidence(PAPER_SEARCH_TRAIN, n_items=6))
    scan = scan_history_target_pairs(_requests([[1, 2, 1, 5], [4, 4]]), np.array([3, 0]), counter, chunk=2)
    assert scan.n_pairs == 6
    linked = sorted(zip(scan.linked.query.tolist(), scan.linked.a.tolist(), scan.linked.b.tolist(), scan.linked_counts.tolist()))
    assert linked == [(0, 1, 3, 2), (0, 2, 3, 3), (0, 5, 3, 1)]  # request 1: items 4 and 0 share no query


def test_scan_refuses_misaligned_targets():
    counter = CooccurrenceCounter(search_training_incidence(PAPER_SEARCH_TRAIN, n_items=6))
    with pytest.raises(HarnessError, match="1 targets for 2 recommendation requests"):
        scan_history_target_pairs(_requests([[1], [2]]), np.array([3]), counter)


# The paper's example (§7): relevant {i1, i3, i5} co-occur 3, 4 and 2 times in recommendation data -> 9 / 3.
PAPER_REC_TRAIN = _rec_train(
    [[1, 3, 5], [1, 3, 1], [3, 1], [1, 5], [5, 1], [1, 5, 5], [3, 5], [0, 2]],
    tails=[[], [5], [], [3], [], [], [], [3, 5]],  # held-out positions: would change the counts if used
)


@pytest.mark.parametrize("budget", [None, 0])
def test_paper_example_relevant_pair_cooccurrence_is_9_over_3(budget):
    inc = rec_training_incidence(PAPER_REC_TRAIN, n_items=6)
    counter = CooccurrenceCounter(inc) if budget is None else CooccurrenceCounter(inc, materialise_budget=budget)
    offsets, items = np.array([0, 3, 4, 7]), np.array([1, 3, 5, 2, 0, 2, 0])
    got = relevant_pair_cooccurrence(offsets, items, counter)
    assert got[0] == pytest.approx((3 + 4 + 2) / 3)
    assert np.isnan(got[1])  # one relevant item: no pair
    assert got[2] == pytest.approx(1.0)  # {0, 2} with a repeat: one pair, user 7


def test_changed_lists_compare_item_sets():
    joint = np.array([[1, 2, 3], [1, 2, 3], [1, 2, -1], [1, 2, -1], [4, 5, 6]])
    ref = np.array([[3, 2, 1], [1, 2, 4], [1, 2, 3], [2, 1, -1], [4, 5, 6]])
    assert changed_lists(joint, ref).tolist() == [False, True, True, False, False]


def test_contrast_by_hand():
    values = np.array([5.0, 3.0, 1.0, 0.0, 2.0, 4.0, np.nan, 6.0])
    changed = np.array([True, True, True, True, True, False, True, True])
    joint = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5])
    ref = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.5])
    out = changed_prediction_contrast(values, changed, joint, ref)
    assert out["n_defined"] == 7 and out["n_changed"] == 6 and out["n_unchanged"] == 1
    assert out["groups"]["joint_better"] == {"n": 2, "mean": 4.0}  # requests 0, 1 (request 5 did not change)
    assert out["groups"]["reference_better"] == {"n": 2, "mean": 0.5}
    assert out["groups"]["tie"] == {"n": 2, "mean": 4.0}
    assert out["delta_pct"] == pytest.approx(700.0)  # (4 - 0.5) / 0.5
    expected = stats.ttest_ind([5.0, 3.0], [1.0, 0.0], equal_var=False)
    assert out["test"]["p"] == pytest.approx(float(expected.pvalue))
    assert out["test"]["t"] == pytest.approx(float(expected.statistic))
    assert out["mean_changed"] == pytest.approx(17 / 6)
    assert out["changed_vs_unchanged"]["delta_pct"] == pytest.approx(100 * (17 / 6 - 4) / 4)
    assert out["changed_vs_unchanged"]["test"]["p"] is None  # one unchanged request: no variance to test with


def test_no_changed_predictions_gives_a_defined_empty_answer():
    values = np.array([1.0, 2.0, 3.0])
    out = changed_prediction_contrast(values, np.zeros(3, bool), np.ones(3), np.zeros(3))
    assert out["n_changed"] == 0
    assert out["delta_pct"] is None and out["test"]["p"] is None and out["test"]["significant"] is False
    assert out["groups"]["joint_better"] == {"n": 0, "mean": None}
    assert out["mean_unchanged"] == pytest.approx(2.0)


def test_contrast_refuses_misaligned_inputs():
    with pytest.raises(HarnessError, match="per_query_ref has shape"):
        changed_prediction_contrast(np.ones(3), np.ones(3, bool), np.ones(3), np.ones(2))
