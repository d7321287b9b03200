"""Paired Student's t-test over the same queries, with Holm correction across one table (after ranx's
`compare`, plus the correction and a record of the test and level used).

For per-query values x (submission) and y (reference) over the n queries where both are defined:
    d = x - y,  diff = mean(d),  se = sd(d, ddof=1) / sqrt(n),  t = diff / se  (n - 1 degrees of freedom)
    p = 2 * P(T_{n-1} > |t|)                         (two-sided, as scipy.stats.ttest_rel)
    CI = diff ± t_{1 - alpha/2, n-1} * se           (the (1 - alpha) confidence interval of the mean difference)

Edge cases, decided here so every record reads the same:
- NaN in either array (the query is outside the metric's segment) drops that pair; n counts the rest.
- A per-query difference of at most 1e-12 in absolute value is float rounding and is taken as 0.
- n < 2: no variance to test with; t, p and the CI are NaN and `significant` is False.
- every difference equal (zero variance):
    - all zero (identical per-query values): t = NaN, p = 1.0, CI = [0, 0]. scipy returns p = NaN here; we
      report "no evidence of a difference" instead, so Holm and the leaderboard need no special case.
    - all the same non-zero value c: t = ±inf, p = 0.0, CI = [c, c] (the limit of the test as sd -> 0).
In `to_dict()` non-finite numbers become null (JSON has no NaN or infinity); `p` keeps 0.0 / 1.0 above.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from harness.errors import HarnessError
from harness.metrics.measures import Metric

# Metric values lie in [0, 1]; a per-query difference this small is rounding in seed averaging, not a
# difference in rankings (the smallest real one is 1 / (relevant items x seeds)). Snapped to 0.
_FLOAT_NOISE = 1e-12


@dataclass(frozen=True)
class PairedTTest:
    """One paired comparison: a submission's per-query metric against its reference's, on the same queries.

    `significant` is `p < alpha` until `compare()` sets `p_holm`; after that it is `p_holm < alpha`.
    """

    metric: str
    n: int
    mean: float
    reference_mean: float
    diff: float
    ci_low: float
    ci_high: float
    t: float
    p: float
    alpha: float
    p_holm: float | None = None
    significant: bool | None = None

    def to_dict(self) -> dict:
        """JSON-safe: non-finite floats become None."""
        return {f.name: _json_number(getattr(self, f.name)) for f in dataclasses.fields(self)}


def paired_ttest(values: np.ndarray, reference: np.ndarray, *, metric: str, alpha: float = 0.05) -> PairedTTest:
    """Paired two-sided t-test of `values` against `reference` (same queries, same order)."""
    values = np.asarray(values, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if values.ndim != 1 or values.shape != reference.shape:
        raise HarnessError(
            f"paired t-test on {metric}: values {values.shape} and reference {reference.shape} must be "
            "1-D arrays over the same queries"
        )
    if not 0.0 < alpha < 1.0:
        raise HarnessError(f"paired t-test on {metric}: alpha={alpha!r} must lie strictly between 0 and 1")
    both = ~(np.isnan(values) | np.isnan(reference))
    x, y = values[both], reference[both]
    n = int(both.sum())
    mean = float(x.mean()) if n else math.nan
    reference_mean = float(y.mean()) if n else math.nan
    d = x - y
    d[np.abs(d) <= _FLOAT_NOISE] = 0.0
    diff = float(d.mean()) if n else math.nan
    t, p, ci_low, ci_high = _t_statistics(d, alpha)
    significant = bool(p < alpha) if math.isfinite(p) else False
    return PairedTTest(metric, n, mean, reference_mean, diff, ci_low, ci_high, t, p, alpha, None, significant)


def _t_statistics(d: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """(t, p, ci_low, ci_high) for the differences d, with the edge cases of the module docstring."""
    n = len(d)
    if n < 2:
        return math.nan, math.nan, math.nan, math.nan
    diff = float(d.mean())
    if np.all(d == d[0]):  # zero variance (d is already snapped: rounding noise cannot fake a difference)
        if d[0] == 0:
            return math.nan, 1.0, 0.0, 0.0
        return math.copysign(math.inf, diff), 0.0, diff, diff
    se = float(d.std(ddof=1)) / math.sqrt(n)
    t = diff / se
    p = float(2.0 * stats.t.sf(abs(t), df=n - 1))
    half_width = float(stats.t.ppf(1.0 - alpha / 2.0, df=n - 1)) * se
    return t, p, diff - half_width, diff + half_width


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m finite p-values sorted ascending p_(1) <= ... <= p_(m):
        p_holm_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))
    so adjusted values are monotone in the raw ones and capped at 1. NaN (a test that could not be run)
    passes through as NaN and does not count in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise HarnessError(f"holm: p-values must be a flat sequence, got shape {p.shape}")
    finite = ~np.isnan(p)
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise HarnessError(f"holm: p-values must lie in [0, 1], got {p[finite][(p[finite] < 0) | (p[finite] > 1)][:3]}")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(finite)
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def compare(rows: list[PairedTTest], alpha: float = 0.05) -> list[PairedTTest]:
    """Holm across the rows of one table: sets p_holm, alpha and significant (p_holm < alpha) on copies."""
    if not 0.0 < alpha < 1.0:
        raise HarnessError(f"compare: alpha={alpha!r} must lie strictly between 0 and 1")
    adjusted = holm([row.p for row in rows])
    return [
        dataclasses.replace(
            row,
            alpha=alpha,
            p_holm=float(p_holm),
            significant=bool(p_holm < alpha) if math.isfinite(p_holm) else False,
        )
        for row, p_holm in zip(rows, adjusted, strict=True)
    ]


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare_values(
    values: Mapping[Metric, np.ndarray],
    reference: Mapping[Metric, np.ndarray],
    *,
    alpha: float = 0.05,
    metrics: Sequence[Metric] | None = None,
) -> list[PairedTTest]:
    """One table: a paired t-test per metric (seed-averaged per-query values, same query order on both
    sides), Holm-corrected across the table. `metrics` defaults to every metric both sides have, sorted."""
    if metrics is None:
        metrics = sorted(set(values) & set(reference))
    missing = [str(m) for m in metrics if m not in values or m not in reference]
    if missing:
        raise HarnessError(f"compare_values: metrics {missing} are missing on one side")
    rows = [paired_ttest(values[m], reference[m], metric=str(m), alpha=alpha) for m in metrics]
    return compare(rows, alpha=alpha)
