"""Deterministic top-k over dense score rows, shared by the reference baselines.

Ties are broken by the lower item id, so a ranking is the same on every machine and every run
(np.argpartition / torch.topk leave the order of equal scores unspecified). Items scored -inf are never
returned: that is how a baseline leaves items out (history items, non-matching documents).
"""

from __future__ import annotations

import numpy as np


def top_k_rows(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Per row of `scores` [n, n_items]: the ids of the k best finite scores, best first, ties by id."""
    scores = np.asarray(scores)
    n, n_items = scores.shape
    k = min(k, n_items)
    if k <= 0 or n == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(n)]
    # argpartition finds the k-th best value of each row; everything at least that good is a candidate,
    # which keeps every item tied at the boundary, then an exact (score, id) sort picks among them.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    out = []
    for row, threshold in zip(scores, kth):
        cand = np.flatnonzero((row >= threshold) & np.isfinite(row))
        order = np.lexsort((cand, -row[cand]))
        out.append(cand[order[:k]].astype(np.int64))
    return out


def top_k_sparse_rows(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, k: int) -> list[np.ndarray]:
    """The same rule over a CSR matrix: only stored entries are candidates (for BM25, matching items)."""
    out = []
    for start, end in zip(indptr[:-1], indptr[1:]):
        cols = indices[start:end]
        vals = data[start:end]
        if len(vals) > 4 * k:  # a long row: keep only what can reach the top k (ties at the boundary included)
            threshold = np.partition(vals, len(vals) - k)[len(vals) - k]
            keep = vals >= threshold
            cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, -vals))
        out.append(cols[order[:k]].astype(np.int64))
    return out
