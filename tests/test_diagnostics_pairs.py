"""Co-occurrence counts against a dense X X^T, on every strategy; the pair expansions on hand-made cases."""

import numpy as np
import pytest

import harness.diagnostics.pairs as pairs_mod
from harness.diagnostics.pairs import (
    CooccurrenceCounter,
    Incidence,
    chunks_by_length,
    history_target_pairs,
    ragged_positions,
    rec_training_incidence,
    relevant_pairs,
    search_training_incidence,
)
from harness.data.views import RecExamples, SearchExamples
from harness.errors import HarnessError


def _random_incidence(seed=0, n_items=200, n_contexts=1500, n=15000):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)  # Zipf: a few long rows, many short ones
    items = rng.choice(n_items, size=n, p=p / p.sum())
    contexts = rng.integers(0, n_contexts, size=n)
    return Incidence.from_pairs(items, contexts, n_items, n_contexts), rng


STRATEGIES = {
    "product": dict(),
    "pairwise with bit rows": dict(materialise_budget=0),
    "pairwise without bit rows": dict(materialise_budget=0, bitset_budget_bytes=0),
    "pairwise, a few bit rows": dict(materialise_budget=0, bitset_budget_bytes=5 * 8 * 24),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_counts_equal_dense_product_on_every_strategy(name, monkeypatch):
    monkeypatch.setattr(pairs_mod, "CHUNK", 257)  # many small chunks: the chunk seams are exercised too
    inc, rng = _random_incidence()
    x = inc.matrix().toarray()
    dense = x @ x.T
    a = rng.integers(0, inc.n_items, size=3000)
    b = rng.integers(0, inc.n_items, size=3000)
    a[:50] = b[:50]  # the diagonal: contexts holding the item
    counter = CooccurrenceCounter(inc, **STRATEGIES[name])
    assert counter.strategy == ("product" if name == "product" else "pairwise")
    np.testing.assert_array_equal(counter.counts(a, b), dense[a, b])
    np.testing.assert_array_equal(counter.counts(b, a), dense[a, b])  # symmetric
    np.testing.assert_array_equal(counter.any(a, b), dense[a, b] > 0)


def test_counts_of_no_pairs_and_bad_shapes():
    inc, _ = _random_incidence()
    assert CooccurrenceCounter(inc).counts(np.zeros(0), np.zeros(0)).shape == (0,)
    with pytest.raises(HarnessError, match="1-D and of one length"):
        CooccurrenceCounter(inc).counts(np.zeros(3), np.zeros(2))


@pytest.mark.parametrize("budget", [None, 0])
def test_empty_training_data_counts_nothing(budget):
    inc = Incidence.from_pairs(np.zeros(0), np.zeros(0), n_items=4, n_contexts=0)
    counter = CooccurrenceCounter(inc, materialise_budget=budget)
    assert counter.counts(np.array([0, 1]), np.array([1, 1])).tolist() == [0, 0]
    assert counter.any(np.array([0]), np.array([1])).tolist() == [False]


def test_incidence_drops_repeats_and_rejects_unknown_items():
    inc = Incidence.from_pairs(np.array([1, 1, 0, 1]), np.array([2, 2, 2, 0]), n_items=3, n_contexts=4)
    assert inc.row_lengths.tolist() == [1, 2, 0]
    assert inc.indices.tolist() == [2, 0, 2]
    with pytest.raises(HarnessError, match="item ids must lie in 0..2"):
        Incidence.from_pairs(np.array([3]), np.array([0]), n_items=3, n_contexts=1)


def _rec_examples(sequences, extra_tail=()):
    """Training instances of every prefix (history >= 1) of each sequence, as the store builds them.
    `extra_tail[u]` items are appended to user u's stored sequence but are NOT training data."""
    stored = [list(s) + list(extra_tail[u] if u < len(extra_tail) else ()) for u, s in enumerate(sequences)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in stored])]).astype(np.int64)
    items = np.array([i for s in stored for i in s], dtype=np.int32)
    user, hist, target = [], [], []
    for u, s in enumerate(sequences):
        for h in range(1, len(s)):
            user.append(u)
            hist.append(h)
            target.append(s[h])
    return RecExamples(offsets, items, np.array(user, np.int32), np.array(hist, np.int32), np.array(target, np.int32))


def test_rec_training_incidence_counts_users_and_ignores_non_training_positions():
    # user 0 saw item 1 twice; user 1's stored sequence carries held-out items 4 and 5 after its training part
    rec = _rec_examples([[0, 1, 1, 2], [1, 2], [3]], extra_tail=[(), (4, 5), (4,)])
    inc = rec_training_incidence(rec, n_items=6)
    assert inc.row_lengths.tolist() == [1, 2, 2, 0, 0, 0]  # item 3: user 2 has no training instance
    assert CooccurrenceCounter(inc).counts(np.array([1, 1, 2]), np.array([2, 0, 4])).tolist() == [2, 1, 0]


def test_search_training_incidence_is_items_by_queries():
    search = SearchExamples(np.arange(2, dtype=np.int32), ["a", "b"], np.array([0, 2, 5]), np.array([0, 1, 1, 2, 0], np.int32))
    inc = search_training_incidence(search, n_items=4)
    assert (inc.n_items, inc.n_contexts) == (4, 2)
    assert inc.row_lengths.tolist() == [2, 2, 1, 0]


def test_relevant_pairs_are_unordered_distinct_and_per_query():
    offsets = np.array([0, 3, 3, 7, 8])  # query 1 has no items, query 3 has one
    items = np.array([5, 1, 3, 2, 2, 9, 4, 6])  # query 2 lists item 2 twice
    got = relevant_pairs(offsets, items)
    assert list(zip(got.query.tolist(), got.a.tolist(), got.b.tolist())) == [
        (0, 1, 3), (0, 1, 5), (0, 3, 5), (2, 2, 4), (2, 2, 9), (2, 4, 9),
    ]


def test_history_target_pairs_follow_each_request_history():
    offsets = np.array([0, 4, 7])
    items = np.array([10, 11, 12, 13, 20, 21, 22], dtype=np.int32)
    requests = RecExamples(offsets, items, np.array([1, 0], np.int32), np.array([2, 3], np.int32))
    got = history_target_pairs(requests, np.array([99, 98]), np.array([0, 1]))
    assert got.query.tolist() == [0, 0, 1, 1, 1]
    assert got.a.tolist() == [20, 21, 10, 11, 12]
    assert got.b.tolist() == [99, 99, 98, 98, 98]


def test_ragged_positions_and_chunks():
    owner, pos = ragged_positions(np.array([5, 0, 9]), np.array([2, 0, 3]))
    assert owner.tolist() == [0, 0, 2, 2, 2] and pos.tolist() == [5, 6, 9, 10, 11]
    lengths = np.array([3, 1, 7, 2, 2, 0, 4])
    spans = list(chunks_by_length(lengths, size=4))
    assert spans[0][0] == 0 and spans[-1][1] == lengths.size
    assert all(prev[1] == nxt[0] for prev, nxt in zip(spans, spans[1:]))
    for start, end in spans:  # within the size, or a single over-long entry
        assert lengths[start:end].sum() <= 4 or end - start == 1
