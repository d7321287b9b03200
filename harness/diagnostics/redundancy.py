"""Table 8 (paper §7): redundant versus non-redundant item pairs across the tasks, and where the joint model gains.

The pairs of a test request (unordered, distinct, two different items):
- recommendation: {history item, held-out target} for each distinct history item;
- search: {a, b} for each two distinct relevant items of the test query.

A pair is *in* a task's training data when some training context holds both items (co > 0; a user's
training sequence for recommendation, a training query's relevance set for search). With "other" the added
task and "target" the task being evaluated:
- redundant:      in the other task's training data and in the target task's;
- non-redundant:  in the other task's training data, not in the target task's.
Pairs in neither task, or only in the target task, are neither (the added task says nothing about them).

Requests are grouped by the pairs they hold: `redundant` = at least one redundant pair, `non_redundant` =
at least one non-redundant pair (a request can be in both: `both`), `none` = neither kind. For each group:
the joint model's and the reference's mean per-query recall, the improvement
100 * (joint - reference) / reference, and a paired t-test. "# pairs" is reported two ways: distinct item
pairs over the whole test set, and (request, pair) occurrences.
"""

from __future__ import annotations

import numpy as np

from harness.diagnostics.h1 import percent_change
from harness.diagnostics.pairs import CooccurrenceCounter, Pairs
from harness.errors import HarnessError
from harness.metrics.significance import paired_ttest


def pair_types(pairs: Pairs, target_cooc: CooccurrenceCounter) -> tuple[np.ndarray, int, int]:
    """For pairs already known to be in the other task's training data: (redundant? per pair,
    distinct redundant pairs, distinct non-redundant pairs). Each distinct item pair is looked up once."""
    n_items = target_cooc.incidence.n_items
    low, high = np.minimum(pairs.a, pairs.b), np.maximum(pairs.a, pairs.b)
    unique_keys, inverse = _unique_inverse(low * n_items + high)
    in_target = target_cooc.any(unique_keys // n_items, unique_keys % n_items)
    return in_target[inverse], int(in_target.sum()), int((~in_target).sum())


def _unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True), by one argsort (see pairs.sorted_unique for why not numpy's)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    new = np.concatenate([[True], ordered[1:] != ordered[:-1]]) if keys.size else np.zeros(0, dtype=bool)
    inverse = np.empty(keys.size, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def redundancy_table(
    pairs_in_other: Pairs,
    target_cooc: CooccurrenceCounter,
    per_query_joint: np.ndarray,
    per_query_ref: np.ndarray,
    *,
    alpha: float = 0.05,
    metric: str = "recall",
) -> dict:
    """Table 8 for one target task (module docstring), JSON-ready. `pairs_in_other` holds each request's
    distinct pairs that occur in the other task's training data; per-query recalls give the group means."""
    joint = np.asarray(per_query_joint, dtype=np.float64)
    ref = np.asarray(per_query_ref, dtype=np.float64)
    n = joint.size
    if ref.shape != (n,):
        raise HarnessError(f"Table 8: per-query recalls have shapes {joint.shape} (joint) and {ref.shape} (reference)")
    if len(pairs_in_other) and pairs_in_other.query.max() >= n:
        raise HarnessError(f"Table 8: a pair names request {pairs_in_other.query.max()}, but there are {n} requests")
    redundant, n_red, n_nonred = pair_types(pairs_in_other, target_cooc)
    has_red = np.bincount(pairs_in_other.query[redundant], minlength=n) > 0
    has_nonred = np.bincount(pairs_in_other.query[~redundant], minlength=n) > 0
    groups = {
        "redundant": has_red,
        "non_redundant": has_nonred,
        "both": has_red & has_nonred,
        "none": ~has_red & ~has_nonred,
    }
    return {
        "redundant_pairs": n_red,
        "non_redundant_pairs": n_nonred,
        "redundant_pair_occurrences": int(redundant.sum()),
        "non_redundant_pair_occurrences": int((~redundant).sum()),
        "groups": {name: group_improvement(joint, ref, mask, alpha=alpha, metric=metric) for name, mask in groups.items()},
    }


def group_improvement(joint: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, alpha: float, metric: str) -> dict:
    """Mean recall of both models over the requests in `mask`, the joint model's improvement (%), and the
    paired t-test (requests with an undefined recall in either model are left out)."""
    test = paired_ttest(joint[mask], ref[mask], metric=metric, alpha=alpha)
    summary = test.to_dict()  # JSON-safe: an empty group's means are None
    return {
        "n_requests": int(mask.sum()),
        "n": test.n,
        "joint_mean": summary["mean"],
        "reference_mean": summary["reference_mean"],
        "improvement_pct": percent_change(test.mean, test.reference_mean),
        "test": summary,
    }
