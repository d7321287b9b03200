"""The one entry point the runner calls: every §7 diagnostic of a joint submission against its reference.

    cooc = TrainingCooccurrence(train)        # optional: build once, reuse across tasks and seeds
    diagnostics = compute_diagnostics(train, "rec", rankings_joint, rankings_ref, requests,
                                      rel_offsets, rel_items, per_query_joint, per_query_ref, cooccurrence=cooc)

The result is plain JSON (floats, ints, lists, None for undefined numbers), keyed by table:
    {"version", "task", "depth", "n_requests", "h1": Table 6, "h2": Table 7, "redundancy": Table 8}
Definitions: harness/diagnostics/{h1,h2,redundancy}.py and docs/diagnostics.md.
"""

from __future__ import annotations

import math

import numpy as np

from harness.diagnostics.h1 import popularity_shift
from harness.diagnostics.h2 import (
    changed_lists,
    changed_prediction_contrast,
    mean_per_query,
    scan_history_target_pairs,
)
from harness.diagnostics.pairs import (
    CooccurrenceCounter,
    rec_training_incidence,
    relevant_pairs,
    search_training_incidence,
)
from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.diagnostics.redundancy import redundancy_table
from harness.errors import HarnessError

DIAGNOSTICS_VERSION = 1
OTHER_TASK: dict[str, Task] = {"rec": "search", "search": "rec"}


class TrainingCooccurrence:
    """Co-occurrence counters over one training view, each built on first use (the recommendation one
    sorts every training interaction: seconds on ML-25M, worth reusing across tasks and seeds)."""

    def __init__(self, train: TrainView) -> None:
        self.train = train
        self._counters: dict[str, CooccurrenceCounter] = {}

    def counter(self, task: Task) -> CooccurrenceCounter:
        if task not in self._counters:
            n_items = len(self.train.catalogue)
            if task == "rec":
                incidence = rec_training_incidence(self.train.rec_train, n_items)
            else:
                incidence = search_training_incidence(self.train.search_train, n_items)
            self._counters[task] = CooccurrenceCounter(incidence)
        return self._counters[task]


def compute_diagnostics(
    train: TrainView,
    task: Task,
    rankings_joint: np.ndarray,
    rankings_ref: np.ndarray,
    requests: RecExamples | SearchExamples,
    rel_offsets: np.ndarray,
    rel_items: np.ndarray,
    per_query_joint: np.ndarray,
    per_query_ref: np.ndarray,
    *,
    alpha: float = 0.05,
    cooccurrence: TrainingCooccurrence | None = None,
) -> dict:
    """H1, H2 and Table 8 for one task of a joint submission (Gen_R+S) against its task-specific reference.

    rankings_*: int64 [n_requests, depth], -1 padded, the test requests in the same order on both sides.
    requests: the test requests (recommendation: histories; search: queries). rel_offsets / rel_items:
    the held-out relevance in CSR form, as harness.evaluation.scoring.targets() gives it (recommendation:
    exactly one target per request). per_query_*: each model's headline per-query recall (R@K, all
    segment; NaN where undefined), averaged over seeds or for one seed, as the caller decides.
    """
    if task not in OTHER_TASK:
        raise HarnessError(f"diagnostics: task {task!r} is unknown; give 'rec' or 'search'")
    rankings_joint = np.asarray(rankings_joint)
    rankings_ref = np.asarray(rankings_ref)
    n = len(requests)
    _check_aligned(n, rankings_joint, rankings_ref, rel_offsets, per_query_joint, per_query_ref)
    cooc = cooccurrence or TrainingCooccurrence(train)
    other = OTHER_TASK[task]
    changed = changed_lists(rankings_joint, rankings_ref)

    popularity = train.catalogue.popularity(other)
    pop_name, recall_name = f"Pop_{other}", f"R@{rankings_joint.shape[1]}"
    h1 = {
        "popularity_from": other,
        "all": popularity_shift(rankings_joint, rankings_ref, popularity, alpha=alpha, metric=pop_name),
        "changed_only": popularity_shift(
            rankings_joint[changed], rankings_ref[changed], popularity, alpha=alpha, metric=pop_name
        ),
    }

    if task == "rec":
        targets = _single_targets(rel_offsets, rel_items)
        scan = scan_history_target_pairs(requests, targets, cooc.counter("search"))
        values, pairs_in_other = scan.matches, scan.linked
        h2_metric = "history_target_query_matches"
    else:
        pairs = relevant_pairs(rel_offsets, rel_items)
        co_rec = cooc.counter("rec").counts(pairs.a, pairs.b)
        values = mean_per_query(pairs, co_rec, n)
        pairs_in_other = pairs.take(co_rec > 0)
        h2_metric = "relevant_pair_rec_cooccurrence"

    h2 = {"metric": h2_metric, **changed_prediction_contrast(values, changed, per_query_joint, per_query_ref, alpha=alpha)}
    redundancy = redundancy_table(
        pairs_in_other, cooc.counter(task), per_query_joint, per_query_ref, alpha=alpha, metric=recall_name
    )
    return _json_clean(
        {
            "version": DIAGNOSTICS_VERSION,
            "task": task,
            "depth": int(rankings_joint.shape[1]),
            "n_requests": n,
            "n_changed": int(changed.sum()),
            "h1": h1,
            "h2": h2,
            "redundancy": redundancy,
        }
    )


def _check_aligned(n: int, rankings_joint, rankings_ref, rel_offsets, per_query_joint, per_query_ref) -> None:
    shapes = {
        "rankings_joint": (np.shape(rankings_joint)[0] if np.ndim(rankings_joint) == 2 else None),
        "rankings_ref": (np.shape(rankings_ref)[0] if np.ndim(rankings_ref) == 2 else None),
        "rel_offsets": len(rel_offsets) - 1,
        "per_query_joint": np.shape(per_query_joint)[0] if np.ndim(per_query_joint) == 1 else None,
        "per_query_ref": np.shape(per_query_ref)[0] if np.ndim(per_query_ref) == 1 else None,
    }
    bad = {name: rows for name, rows in shapes.items() if rows != n}
    if bad:
        described = ", ".join(f"{name} has {rows if rows is not None else 'a wrong shape'}" for name, rows in bad.items())
        raise HarnessError(f"diagnostics: {n} test requests, but {described} (rankings 2-D, per-query values 1-D)")


def _single_targets(rel_offsets: np.ndarray, rel_items: np.ndarray) -> np.ndarray:
    counts = np.diff(rel_offsets)
    if (counts != 1).any():
        i = int(np.flatnonzero(counts != 1)[0])
        raise HarnessError(f"diagnostics (rec): request {i} has {int(counts[i])} targets; exactly one is expected")
    return np.asarray(rel_items, dtype=np.int64)[np.asarray(rel_offsets[:-1], dtype=np.int64)]


def _json_clean(obj):
    """Plain JSON values: numpy scalars become Python ones, non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
