"""H1 (paper §7, Table 6): does joint training shift predictions towards the added task's popular items?

For a target task T with task-specific reference Gen_T and joint model Gen_R+S, popularity is read from the
OTHER task's training data (recommendation target: Pop_S, training queries leading to an item; search
target: Pop_R, training interactions with an item). Per test request q with predicted items P(q) (the
valid entries of its top-K list; -1 padding ignored):

    pop(q)      = mean_{i ∈ P(q)} Pop_other[i]                 (NaN when P(q) is empty)
    Pop(model)  = mean_q pop(q)                                  over requests where both models predicted
    ΔPop        = Pop(Gen_R+S) - Pop(Gen_T)
    ΔPop %      = 100 * ΔPop / Pop(Gen_T)                        (Table 6's number)

Choices where the paper is silent: every test request counts (Table 6 is not restricted to changed lists;
the same numbers over changed lists only are reported beside it); requests are weighted equally (with full
top-K lists this equals the mean over all predicted items); raw counts, not shares, since the % change is
the same either way. Significance: paired t-test over requests of pop(q) (harness.metrics.significance).
"""

from __future__ import annotations

import math

import numpy as np

from harness.errors import HarnessError
from harness.metrics.significance import paired_ttest


def mean_predicted_popularity(rankings: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """float64 [n]: mean popularity of each request's predicted items (-1 padding skipped; NaN if none)."""
    rankings = np.asarray(rankings)
    if rankings.ndim != 2:
        raise HarnessError(f"H1: rankings must be a 2-D array [requests, depth], got shape {rankings.shape}")
    valid = rankings >= 0
    values = np.where(valid, np.asarray(popularity, dtype=np.float64)[np.where(valid, rankings, 0)], 0.0)
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, values.sum(axis=1) / n_valid, np.nan)


def popularity_shift(
    rankings_joint: np.ndarray,
    rankings_ref: np.ndarray,
    popularity_other: np.ndarray,
    *,
    alpha: float = 0.05,
    metric: str = "pop",
) -> dict:
    """Table 6's ΔPop of the joint model over the reference (see the module docstring), JSON-ready."""
    if rankings_joint.shape[0] != rankings_ref.shape[0]:
        raise HarnessError(
            f"H1: the joint rankings have {rankings_joint.shape[0]} requests, the reference's {rankings_ref.shape[0]}"
        )
    joint = mean_predicted_popularity(rankings_joint, popularity_other)
    ref = mean_predicted_popularity(rankings_ref, popularity_other)
    test = paired_ttest(joint, ref, metric=metric, alpha=alpha)
    return {
        "n": test.n,
        "reference_mean": _number(test.reference_mean),
        "joint_mean": _number(test.mean),
        "delta": _number(test.diff),
        "delta_pct": percent_change(test.mean, test.reference_mean),
        "test": test.to_dict(),
    }


def percent_change(new: float, old: float) -> float | None:
    """100 * (new - old) / old; 0 when both are 0; None when old is 0 alone or either is undefined."""
    if not (math.isfinite(new) and math.isfinite(old)):
        return None
    if old == 0:
        return 0.0 if new == 0 else None
    return 100.0 * (new - old) / old


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
