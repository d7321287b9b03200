"""The baselines' deterministic top-k: best score first, ties by lower item id, -inf never returned."""

from __future__ import annotations

import numpy as np

from harness.baselines.topk import top_k_rows, top_k_sparse_rows


def _reference(scores: np.ndarray, k: int) -> list[int]:
    ids = np.arange(len(scores))
    finite = np.isfinite(scores)
    order = np.lexsort((ids[finite], -scores[finite]))
    return ids[finite][order][:k].tolist()


def test_dense_matches_a_full_sort_with_many_ties_and_excluded_items():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 200)).astype(np.float32)  # heavy ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    for k in (1, 5, 30, 200, 500):
        got = top_k_rows(scores, k)
        assert [g.tolist() for g in got] == [_reference(row, k) for row in scores]


def test_dense_all_excluded_row_is_empty():
    assert top_k_rows(np.full((1, 4), -np.inf), 3)[0].size == 0


def test_sparse_matches_a_full_sort_on_long_and_short_rows():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(0, 400))
        cols = np.sort(rng.choice(1000, n, replace=False))
        vals = rng.integers(-2, 4, n).astype(np.float64)  # zero and negative scores are still matches
        k = int(rng.integers(1, 40))
        expected = cols[np.lexsort((cols, -vals))][:k].tolist()
        assert top_k_sparse_rows(np.array([0, n]), cols, vals, k)[0].tolist() == expected
