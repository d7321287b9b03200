"""Recall@K (all / head / torso) against hand computations and against ir_measures and pytrec_eval."""

import warnings

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics import Metric, recall_at_k, segment_counts

ir_measures = pytest.importorskip("ir_measures")

KS = (1, 2, 5, 10)


def _csr(lists):
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    items = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
    return offsets, items


def _padded(lists, depth):
    out = np.full((len(lists), depth), -1, dtype=np.int64)
    for i, row in enumerate(lists):
        out[i, : len(row)] = row
    return out


def test_hand_made_queries():
    # items 0 and 1 are head, 2..9 torso
    is_head = np.zeros(10, bool)
    is_head[[0, 1]] = True
    rankings = _padded([[0, 2, 5], [9, 8, 7], [], [3, 1]], depth=3)
    rel_offsets, rel_items = _csr([[0, 5, 6], [7], [1, 2], [1, 3, 4, 5]])
    v = recall_at_k(rankings, rel_offsets, rel_items, is_head, ks=[1, 3, 30])
    nan = np.nan
    expected = {
        "R@1": [1 / 3, 0, 0, 1 / 4],
        "R@3": [2 / 3, 1, 0, 2 / 4],
        "R@30": [2 / 3, 1, 0, 2 / 4],  # K beyond depth: the list is all there is
        "R@1/head": [1, nan, 0, 0],
        "R@3/head": [1, nan, 0, 1],
        "R@1/torso": [0, 0, 0, 1 / 3],
        "R@3/torso": [1 / 2, 1, 0, 1 / 3],
    }
    for name, want in expected.items():
        np.testing.assert_allclose(v[Metric.parse(name)], want, err_msg=name)
    counts = {str(m): c for m, c in segment_counts(v).items()}
    assert counts["R@1"] == 4 and counts["R@1/head"] == 3 and counts["R@1/torso"] == 4
    assert set(map(str, v)) == {f"R@{k}{s}" for k in (1, 3, 30) for s in ("", "/head", "/torso")}


def test_empty_rankings_score_zero_and_are_counted():
    is_head = np.array([True, False])
    rankings = np.zeros((3, 0), dtype=np.int64)  # no query got any item
    rel_offsets, rel_items = _csr([[0], [1], [0, 1]])
    v = recall_at_k(rankings, rel_offsets, rel_items, is_head, ks=[5])
    np.testing.assert_array_equal(v[Metric("R", 5)], [0, 0, 0])
    np.testing.assert_array_equal(v[Metric("R", 5, "head")], [0, np.nan, 0])
    np.testing.assert_array_equal(v[Metric("R", 5, "torso")], [np.nan, 0, 0])


def test_a_relevant_item_repeated_in_a_ranking_counts_once():
    is_head = np.zeros(5, bool)
    rankings = np.array([[1, 1, 2]])
    v = recall_at_k(rankings, *_csr([[1, 3]]), is_head, ks=[3])
    assert v[Metric("R", 3)][0] == 0.5


def test_int32_rankings_and_padding_in_the_middle():
    is_head = np.zeros(5, bool)
    rankings = np.array([[-1, 4, -1, 3]], dtype=np.int32)
    v = recall_at_k(rankings, *_csr([[3, 4]]), is_head, ks=[2, 4])
    assert v[Metric("R", 2)][0] == 0.5 and v[Metric("R", 4)][0] == 1.0


@pytest.mark.parametrize(
    "rel_lists, error",
    [
        ([[1], []], "no relevant item"),
        ([[1, 1]], "more than once"),
        ([[7]], "outside the catalogue"),
        ([[-1]], "outside the catalogue"),
    ],
)
def test_bad_relevance_is_refused(rel_lists, error):
    rankings = np.zeros((len(rel_lists), 2), dtype=np.int64)
    with pytest.raises(HarnessError, match=error):
        recall_at_k(rankings, *_csr(rel_lists), np.zeros(5, bool), ks=[1])


def test_bad_shapes_are_refused():
    is_head = np.zeros(5, bool)
    offsets, items = _csr([[1], [2]])
    with pytest.raises(HarnessError, match="rel_offsets"):
        recall_at_k(np.zeros((3, 2), np.int64), offsets, items, is_head, ks=[1])
    with pytest.raises(HarnessError, match="rankings"):
        recall_at_k(np.zeros(2, np.int64), offsets, items, is_head, ks=[1])
    with pytest.raises(HarnessError, match="rankings"):
        recall_at_k(np.zeros((2, 2)), offsets, items, is_head, ks=[1])
    with pytest.raises(HarnessError, match="is_head"):
        recall_at_k(np.zeros((2, 2), np.int64), offsets, items, np.zeros(5), ks=[1])
    with pytest.raises(HarnessError, match="len\\(rel_items\\)"):
        recall_at_k(np.zeros((2, 2), np.int64), np.array([0, 1, 3]), items, is_head, ks=[1])
    with pytest.raises(HarnessError, match="cutoff"):
        recall_at_k(np.zeros((2, 2), np.int64), offsets, items, is_head, ks=[0])


# --- agreement with independent implementations -------------------------------------------------------


def random_case(seed, n_queries=300, n_items=200, depth=12, max_rel=6, empty_fraction=0.1):
    """Rankings with hits planted near the top, some empty or short lists, a random head set."""
    rng = np.random.default_rng(seed)
    is_head = rng.random(n_items) < 0.1
    rel_lists = [rng.choice(n_items, size=rng.integers(1, max_rel + 1), replace=False) for _ in range(n_queries)]
    rankings = np.full((n_queries, depth), -1, dtype=np.int64)
    for q, rel in enumerate(rel_lists):
        if rng.random() < empty_fraction:
            continue
        length = rng.integers(1, depth + 1)
        pool = np.unique(np.concatenate([rel, rng.choice(n_items, size=depth, replace=False)]))
        rankings[q, :length] = rng.permutation(pool)[:length]
    offsets, items = _csr(rel_lists)
    return rankings, offsets, items, is_head


def _as_trec_dicts(rankings, offsets, items, keep_item):
    """ir_measures / pytrec_eval inputs; qrels only keep relevant items passing keep_item (a segment)."""
    depth = rankings.shape[1]
    run = {
        f"q{q}": {f"d{i}": float(depth - pos) for pos, i in enumerate(row) if i >= 0} for q, row in enumerate(rankings)
    }
    qrels = {}
    for q in range(len(offsets) - 1):
        rel = [i for i in items[offsets[q] : offsets[q + 1]] if keep_item(i)]
        if rel:
            qrels[f"q{q}"] = {f"d{i}": 1 for i in rel}
    return run, qrels


SEGMENT_FILTERS = {
    "all": lambda is_head: lambda i: True,
    "head": lambda is_head: lambda i: bool(is_head[i]),
    "torso": lambda is_head: lambda i: not is_head[i],
}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("segment", ["all", "head", "torso"])
def test_agrees_with_ir_measures(seed, segment):
    rankings, offsets, items, is_head = random_case(seed)
    ours = recall_at_k(rankings, offsets, items, is_head, KS + (30,))
    run, qrels = _as_trec_dicts(rankings, offsets, items, SEGMENT_FILTERS[segment](is_head))
    measures = [ir_measures.R @ k for k in KS + (30,)]
    theirs = {k: np.full(len(rankings), np.nan) for k in KS + (30,)}
    for row in ir_measures.iter_calc(measures, qrels, run):
        theirs[row.measure.params["cutoff"]][int(row.query_id[1:])] = row.value
    for k in KS + (30,):
        np.testing.assert_allclose(ours[Metric("R", k, segment)], theirs[k], rtol=1e-12, err_msg=f"R@{k}/{segment}")
    # ir_measures scores exactly the queries of the segment's qrels: the segment's count
    assert segment_counts(ours)[Metric("R", 1, segment)] == len(qrels)


@pytest.mark.parametrize("segment", ["all", "head", "torso"])
def test_agrees_with_pytrec_eval_on_queries_it_scores(segment):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rankings, offsets, items, is_head = random_case(seed=11, n_queries=400)
    ours = recall_at_k(rankings, offsets, items, is_head, KS)
    run, qrels = _as_trec_dicts(rankings, offsets, items, SEGMENT_FILTERS[segment](is_head))
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recall." + ",".join(map(str, KS))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = evaluator.evaluate({q: docs for q, docs in run.items() if docs})
    assert theirs, "pytrec_eval scored nothing"
    for q, scores in theirs.items():
        for k in KS:
            assert ours[Metric("R", k, segment)][int(q[1:])] == pytest.approx(scores[f"recall_{k}"], abs=1e-12)
    # pytrec_eval silently drops queries with an empty ranking: we keep them at 0
    empty = [q for q in range(len(rankings)) if (rankings[q] < 0).all() and f"q{q}" in qrels]
    assert empty, "the random case should contain empty rankings"
    assert all(ours[Metric("R", 10, segment)][q] == 0 for q in empty)


def test_large_case_crosses_chunk_boundaries(monkeypatch):
    import harness.metrics.scoring as recall

    rankings, offsets, items, is_head = random_case(seed=5, n_queries=200)
    whole = recall_at_k(rankings, offsets, items, is_head, KS)
    monkeypatch.setattr(recall, "_CHUNK_PAIRS", 7)  # many chunks, the last one partial
    chunked = recall_at_k(rankings, offsets, items, is_head, KS)
    for metric in whole:
        np.testing.assert_array_equal(whole[metric], chunked[metric])
