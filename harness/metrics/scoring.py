"""Per-query measures at cutoffs K for all / head / torso relevant items (the paper's Table 5), vectorised.

    R@K(q)         = |top-K(q) ∩ rel(q)| / |rel(q)|
    R@K/head(q)    = |top-K(q) ∩ rel(q) ∩ head| / |rel(q) ∩ head|      (only queries with a head relevant item)
    R@K/torso(q)   = |top-K(q) ∩ rel(q) \\ head| / |rel(q) \\ head|     (only queries with a torso relevant item)

and likewise every registered measure (harness.metrics.measures.registry: nDCG, RR): a segment is scored as if
the query's relevant items were only those in the segment, exactly what ir_measures or trec_eval give with qrels
restricted to the segment.

A query outside a segment gets NaN for that segment's metrics (it is not in that average); a query with an
empty or short ranking scores 0 on what it missed and is always counted. A query with no relevant item
at all is an error: the dataset layer guarantees none, so one here means the inputs are misaligned.

This is the harness's one reference implementation; ir_measures, pytrec_eval and ranx only cross-check it in the
tests. We write our own because none of them is vectorised over 10^5 queries with a head/torso split (each would
need a qrels dict per segment and a Python loop over queries).

How: one row per (query, relevant item) pair. For each pair, compare the item against its query's
ranking row and keep the first position where it appears (a sentinel beyond every K if absent): a measure is then
a bincount over the segment's pairs (recall: of "position < K"). No sort, no Python loop over queries, and
duplicates in a ranking cannot count twice (each relevant item is one pair).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.metrics.measures import ABSENT, HEADLINE_MEASURE, SEGMENTS, Metric, SegmentHits, check_cutoff, registry

# Pairs compared per chunk: bounds the temporary [pairs, depth] arrays to a few tens of MB.
_CHUNK_PAIRS = 1 << 18


def score(
    rankings: np.ndarray,
    rel_offsets: np.ndarray,
    rel_items: np.ndarray,
    is_head: np.ndarray,
    ks: Sequence[int],
    measures: Iterable[str] | None = None,
) -> dict[Metric, np.ndarray]:
    """Per-query values of every measure (default: every registered one) at every K in `ks` and every segment.

    rankings:    int [n_queries, depth], catalogue item ids best first, padded with -1. K may exceed depth
                 (a list shorter than K is simply all there is).
    rel_offsets: int [n_queries + 1], CSR offsets into rel_items, aligned with the rows of rankings.
    rel_items:   int, the relevant item ids of each query (distinct within a query).
    is_head:     bool [n_items], the head flags of the task being evaluated.
    Returns {Metric: float64 [n_queries]}, NaN where the query is not in the metric's segment.
    """
    rankings, rel_offsets, rel_items, is_head = _checked(rankings, rel_offsets, rel_items, is_head)
    cutoffs = sorted({check_cutoff(k) for k in ks})
    if not cutoffs:
        raise HarnessError("scoring: no cutoffs given")
    known = registry()
    chosen = list(known) if measures is None else list(measures)
    unknown = [code for code in chosen if code not in known]
    if unknown:
        raise HarnessError(f"scoring: unknown measure(s) {unknown} (known: {', '.join(known)})")
    n_queries = rankings.shape[0]
    n_relevant = np.diff(rel_offsets)
    pair_query = np.repeat(np.arange(n_queries, dtype=np.int64), n_relevant)
    first_hit = _first_hit_positions(rankings, pair_query, rel_items)
    pair_is_head = is_head[rel_items]

    out: dict[Metric, np.ndarray] = {}
    for segment in SEGMENTS:
        hits = _segment_hits(segment, n_queries, pair_query, first_hit, pair_is_head, n_relevant)
        for code in chosen:
            for k in cutoffs:
                values = np.asarray(known[code].per_query(hits, k), dtype=np.float64)
                if values.shape != (n_queries,):
                    raise HarnessError(f"measure {code!r} returned shape {values.shape}, expected ({n_queries},)")
                out[Metric(code, k, segment)] = values
    return out


def recall_at_k(
    rankings: np.ndarray,
    rel_offsets: np.ndarray,
    rel_items: np.ndarray,
    is_head: np.ndarray,
    ks: Sequence[int],
) -> dict[Metric, np.ndarray]:
    """Per-query R@K (the headline measure) for every K in `ks` and every segment: `score` with Recall alone."""
    return score(rankings, rel_offsets, rel_items, is_head, ks, measures=[HEADLINE_MEASURE])


def _segment_hits(segment, n_queries, pair_query, first_hit, pair_is_head, n_relevant) -> SegmentHits:
    if segment == "all":
        return SegmentHits(n_queries, pair_query, first_hit, n_relevant.astype(np.float64))
    keep = pair_is_head if segment == "head" else ~pair_is_head
    # Every pair stays (no gather of the pair arrays): one outside the segment is simply never found.
    return SegmentHits(n_queries, pair_query, np.where(keep, first_hit, ABSENT),
                       np.bincount(pair_query, weights=keep, minlength=n_queries))


def segment_counts(values: Mapping[Metric, np.ndarray]) -> dict[Metric, int]:
    """How many queries each metric averages over (its non-NaN values)."""
    return {metric: int(np.count_nonzero(~np.isnan(v))) for metric, v in values.items()}


def _first_hit_positions(rankings: np.ndarray, pair_query: np.ndarray, rel_items: np.ndarray) -> np.ndarray:
    """For each (query, relevant item) pair, the first rank position holding the item; ABSENT if none."""
    depth = rankings.shape[1]
    first = np.full(len(rel_items), ABSENT, dtype=np.int64)
    if depth == 0:
        return first
    for start in range(0, len(rel_items), _CHUNK_PAIRS):
        stop = start + _CHUNK_PAIRS
        equal = rankings[pair_query[start:stop]] == rel_items[start:stop, None]
        position = equal.argmax(axis=1)
        found = equal[np.arange(len(position)), position]
        first[start:stop] = np.where(found, position, ABSENT)
    return first


def _checked(rankings, rel_offsets, rel_items, is_head):
    """Shapes, dtypes and ranges of the inputs; every failure names the argument and the first bad row."""
    rankings = np.asarray(rankings)
    rel_offsets = np.asarray(rel_offsets)
    rel_items = np.asarray(rel_items)
    is_head = np.asarray(is_head)
    if rankings.ndim != 2 or not _is_int(rankings):
        raise HarnessError(f"scoring: rankings must be a 2-D integer array, got {rankings.dtype} {rankings.shape}")
    if is_head.ndim != 1 or is_head.dtype != np.bool_:
        raise HarnessError(f"scoring: is_head must be a 1-D bool array, got {is_head.dtype} {is_head.shape}")
    n_queries = rankings.shape[0]
    if rel_offsets.shape != (n_queries + 1,) or not _is_int(rel_offsets):
        raise HarnessError(
            f"scoring: rel_offsets must be an integer array of n_queries + 1 = {n_queries + 1} offsets, "
            f"got {rel_offsets.dtype} {rel_offsets.shape}"
        )
    if rel_items.ndim != 1 or not (_is_int(rel_items) or rel_items.size == 0):
        raise HarnessError(f"scoring: rel_items must be a 1-D integer array, got {rel_items.dtype}")
    rel_offsets = rel_offsets.astype(np.int64, copy=False)
    if rel_offsets[0] != 0 or rel_offsets[-1] != len(rel_items):
        raise HarnessError(
            f"scoring: rel_offsets must run from 0 to len(rel_items) = {len(rel_items)}, "
            f"got {rel_offsets[0]} .. {rel_offsets[-1]}"
        )
    n_relevant = np.diff(rel_offsets)
    if (n_relevant < 0).any():
        raise HarnessError(f"scoring: rel_offsets decrease at query index {int(np.argmax(n_relevant < 0))}")
    if (n_relevant == 0).any():
        empty = np.flatnonzero(n_relevant == 0)
        raise HarnessError(
            f"scoring: {len(empty)} queries have no relevant item (query indices {empty[:5].tolist()}...); "
            "every evaluated query needs at least one"
        )
    rel_items = rel_items.astype(rankings.dtype if rankings.dtype.itemsize >= 4 else np.int64, copy=False)
    if len(rel_items) and (rel_items.min() < 0 or rel_items.max() >= len(is_head)):
        bad = int(np.flatnonzero((rel_items < 0) | (rel_items >= len(is_head)))[0])
        raise HarnessError(
            f"scoring: relevant item id {int(rel_items[bad])} is outside the catalogue of {len(is_head)} items"
        )
    _check_distinct(rel_items, rel_offsets, len(is_head))
    return rankings, rel_offsets, rel_items, is_head


def _check_distinct(rel_items: np.ndarray, rel_offsets: np.ndarray, n_items: int) -> None:
    """A relevant item listed twice for one query would count twice in both numerator and denominator."""
    pair_query = np.repeat(np.arange(len(rel_offsets) - 1, dtype=np.int64), np.diff(rel_offsets))
    keys = np.sort(pair_query * n_items + rel_items)
    repeated = np.flatnonzero(keys[1:] == keys[:-1])
    if len(repeated):
        key = int(keys[repeated[0]])
        raise HarnessError(
            f"scoring: query index {key // n_items} lists relevant item {key % n_items} more than once"
        )


def _is_int(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.integer)
