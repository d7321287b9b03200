"""H2 (paper §7, Table 7): do the joint model's changed predictions sit where the added task links items?

Per-request metrics (co_S and co_R count training contexts holding both items, see `pairs`):

- recommendation, "# matches of history -> target queries": for request q with history item_1..item_{t-1}
  and held-out target item_t,
      m(q) = sum_{i < t, item_i != item_t} co_S(item_i, item_t)
  i.e. for every history position, the training queries whose relevance set holds both that item and the
  target. Paper's example: history {i1, i2}, target i3, 2 queries hold {i1, i3} and 3 hold {i2, i3} -> 5.
  A repeated history item counts once per position (the paper sums over i < t); a position holding the
  target itself is skipped ({i_t, i_t} is not a pair).

- search, "item pairs from R in rel pairs for queries": for test query q with distinct relevant items R_q,
      m(q) = mean_{{a, b} ⊂ R_q, a != b} co_R(a, b)
  co_R(a, b) = number of users whose training sequence holds both (users, not positions). Paper's example:
  R_q = {i1, i3, i5} with co-occurrences 3, 4, 2 -> (3 + 4 + 2) / 3. Undefined (NaN) when |R_q| < 2.

The Δ (Table 7's percentage). The paper computes m "for each predicted list from Gen_R+S that is different
than Gen_R" and reports that "when the joint model predicts different items ... both metrics increase".
We fix it as follows (docs/diagnostics.md gives the reasoning):

- changed(q): the SETS of items in the two top-K lists differ (a re-ordering alone changes no recall);
- among changed requests, split by the per-query headline recall of the two models:
  joint_better (R_joint > R_ref), reference_better (R_ref > R_joint), tie;
- Δ % = 100 * (mean m over joint_better - mean m over reference_better) / mean m over reference_better,
  with Welch's two-sample t-test (the groups are different requests, so no pairing).

The other reading, changed versus unchanged requests, is reported beside it (`changed_vs_unchanged`); at
K = 30 on real data almost every list changes, which leaves that contrast with a near-empty baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.diagnostics.h1 import percent_change
from harness.diagnostics.pairs import (
    CooccurrenceCounter,
    Pairs,
    chunks_by_length,
    history_target_pairs,
    relevant_pairs,
)
from harness.data.views import RecExamples
from harness.errors import HarnessError

# Per-query recall differences this small are float rounding (as in harness.metrics.significance).
_FLOAT_NOISE = 1e-12


def changed_lists(rankings_joint: np.ndarray, rankings_ref: np.ndarray) -> np.ndarray:
    """bool [n]: the two top-K lists hold different sets of items (-1 padding ignored)."""
    if rankings_joint.shape[0] != rankings_ref.shape[0]:
        raise HarnessError(
            f"H2: the joint rankings have {rankings_joint.shape[0]} requests, the reference's {rankings_ref.shape[0]}"
        )
    depth = max(rankings_joint.shape[1], rankings_ref.shape[1])
    a = np.sort(_pad(rankings_joint, depth), axis=1)  # rankings hold no repeats (checked by the runner)
    b = np.sort(_pad(rankings_ref, depth), axis=1)
    return (a != b).any(axis=1)


def _pad(rankings: np.ndarray, depth: int) -> np.ndarray:
    out = np.full((rankings.shape[0], depth), -1, dtype=np.int64)
    out[:, : rankings.shape[1]] = np.where(rankings >= 0, rankings, -1)
    return out


# ---- recommendation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryTargetScan:
    """One pass over every (history item, target) pair of the test requests against the search training data.

    `matches` is m(q) of the module docstring for every request. `linked` keeps the pairs that share at
    least one training query (co_S > 0), once per distinct history item of a request: the only pairs that
    can be redundant or non-redundant in Table 8."""

    matches: np.ndarray  # float64 [n_requests]
    linked: Pairs
    linked_counts: np.ndarray  # int64: co_S of each linked pair
    n_pairs: int  # (request, history position) pairs examined, target positions excluded


def scan_history_target_pairs(
    requests: RecExamples, targets: np.ndarray, search_cooc: CooccurrenceCounter, *, chunk: int = 1 << 22
) -> HistoryTargetScan:
    targets = np.asarray(targets, dtype=np.int64)
    n = len(requests)
    if targets.shape != (n,):
        raise HarnessError(f"H2: {targets.shape[0] if targets.ndim else 0} targets for {n} recommendation requests")
    matches = np.zeros(n, dtype=np.float64)
    linked_parts: list[Pairs] = []
    count_parts: list[np.ndarray] = []
    n_pairs = 0
    lengths = requests.history_len.astype(np.int64)
    for start, end in chunks_by_length(lengths, chunk):
        pairs = history_target_pairs(requests, targets, np.arange(start, end))
        pairs = pairs.take(pairs.a != pairs.b)
        n_pairs += len(pairs)
        co = search_cooc.counts(pairs.a, pairs.b)
        matches += np.bincount(pairs.query, weights=co, minlength=n)
        hit = co > 0
        linked, linked_co = _distinct_per_query(pairs.take(hit), co[hit], n_items=search_cooc.incidence.n_items)
        linked_parts.append(linked)
        count_parts.append(linked_co)
    if linked_parts:
        linked = Pairs(*(np.concatenate([getattr(p, f) for p in linked_parts]) for f in ("query", "a", "b")))
        linked_counts = np.concatenate(count_parts)
    else:
        empty = np.zeros(0, dtype=np.int64)
        linked, linked_counts = Pairs(empty, empty, empty), empty
    return HistoryTargetScan(matches, linked, linked_counts, n_pairs)


def _distinct_per_query(pairs: Pairs, co: np.ndarray, *, n_items: int) -> tuple[Pairs, np.ndarray]:
    """Drop repeats of the same history item within a request (b, the target, is fixed per request)."""
    keys = pairs.query * n_items + pairs.a
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    first = order[np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])] if keys.size else order
    return pairs.take(first), co[first]


def history_target_query_matches(
    requests: RecExamples, targets: np.ndarray, search_cooc: CooccurrenceCounter
) -> np.ndarray:
    """float64 [n]: m(q) of the module docstring for every recommendation request."""
    return scan_history_target_pairs(requests, targets, search_cooc).matches


# ---- search -------------------------------------------------------------------------------------------
def relevant_pair_cooccurrence(
    rel_offsets: np.ndarray, rel_items: np.ndarray, rec_cooc: CooccurrenceCounter
) -> np.ndarray:
    """float64 [n]: mean co_R over the pairs of each query's distinct relevant items (NaN if < 2 items)."""
    pairs = relevant_pairs(rel_offsets, rel_items)
    return mean_per_query(pairs, rec_cooc.counts(pairs.a, pairs.b), len(rel_offsets) - 1)


def mean_per_query(pairs: Pairs, values: np.ndarray, n_queries: int) -> np.ndarray:
    """float64 [n_queries]: the mean of `values` over each query's pairs (NaN for a query without pairs)."""
    total = np.bincount(pairs.query, weights=values, minlength=n_queries)
    n_pairs = np.bincount(pairs.query, minlength=n_queries)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pairs > 0, total / n_pairs, np.nan)


# ---- the Δ ----------------------------------------------------------------------------------------------
def changed_prediction_contrast(
    values: np.ndarray,
    changed: np.ndarray,
    per_query_joint: np.ndarray,
    per_query_ref: np.ndarray,
    *,
    alpha: float = 0.05,
) -> dict:
    """Table 7's Δ % for one metric (module docstring), with the group sizes and means behind it, JSON-ready.

    Requests whose metric is undefined (NaN) are left out; so are requests with an undefined recall in the
    joint-vs-reference split (they still count in changed_vs_unchanged)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    for name, arr in (("changed", changed), ("per_query_joint", per_query_joint), ("per_query_ref", per_query_ref)):
        if np.shape(arr) != (n,):
            raise HarnessError(f"H2: {name} has shape {np.shape(arr)}; expected ({n},) like the metric values")
    defined = np.isfinite(values)
    changed = np.asarray(changed, dtype=bool)
    diff = np.asarray(per_query_joint, dtype=np.float64) - np.asarray(per_query_ref, dtype=np.float64)
    scored = np.isfinite(diff)
    in_changed = defined & changed & scored
    groups = {
        "joint_better": in_changed & (diff > _FLOAT_NOISE),
        "reference_better": in_changed & (diff < -_FLOAT_NOISE),
        "tie": in_changed & (np.abs(diff) <= _FLOAT_NOISE),
    }
    better, worse = values[groups["joint_better"]], values[groups["reference_better"]]
    changed_v, unchanged_v = values[defined & changed], values[defined & ~changed]
    return {
        "n_requests": n,
        "n_defined": int(defined.sum()),
        "n_changed": int((defined & changed).sum()),
        "n_unchanged": int((defined & ~changed).sum()),
        "mean_all": _mean(values[defined]),
        "mean_changed": _mean(changed_v),
        "mean_unchanged": _mean(unchanged_v),
        "groups": {name: {"n": int(mask.sum()), "mean": _mean(values[mask])} for name, mask in groups.items()},
        "delta_pct": percent_change(_mean_f(better), _mean_f(worse)),
        "test": welch_ttest(better, worse, alpha=alpha, labels=("joint_better", "reference_better")),
        "changed_vs_unchanged": {
            "delta_pct": percent_change(_mean_f(changed_v), _mean_f(unchanged_v)),
            "test": welch_ttest(changed_v, unchanged_v, alpha=alpha, labels=("changed", "unchanged")),
        },
    }


def welch_ttest(a: np.ndarray, b: np.ndarray, *, alpha: float, labels: tuple[str, str]) -> dict:
    """Two-sided Welch t-test of mean(a) against mean(b); t and p are None when it cannot be run (a group
    with fewer than 2 values, or no variance in either)."""
    t = p = math.nan
    if a.size >= 2 and b.size >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0):
        result = stats.ttest_ind(a, b, equal_var=False)
        t, p = float(result.statistic), float(result.pvalue)
    return {
        "test": "welch-t",
        "groups": list(labels),
        "n": [int(a.size), int(b.size)],
        "mean": [_mean(a), _mean(b)],
        "t": t if math.isfinite(t) else None,
        "p": p if math.isfinite(p) else None,
        "alpha": alpha,
        "significant": bool(math.isfinite(p) and p < alpha),
    }


def _mean_f(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None
