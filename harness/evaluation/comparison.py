"""The one comparison of two per-query tables: a submission's values against a reference's (or a gate baseline's),
each already averaged over its own seeds, paired on the query id, one paired t-test per metric.

The record's significance block (harness.evaluation.significance) and the gate's verdicts (harness.gate.compare)
both call `paired_tests`; Holm's correction is applied by each over its own family (a record's tests; a gate run's
rows) with harness.metrics.significance.compare.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.metrics.measures import Metric
from harness.metrics.significance import PairedTTest, paired_ttest


def aligned(qids: Sequence[str], ref_qids: Sequence[str], *, source: str, reference_source: str) -> np.ndarray:
    """Positions in the reference of each of `qids`; HarnessError naming both sides unless they score the same
    queries (same set, each once)."""
    position = {q: i for i, q in enumerate(ref_qids)}
    if len(position) != len(ref_qids) or len(qids) != len(ref_qids) or any(q not in position for q in qids):
        only_here = sorted(set(qids) - set(ref_qids))[:3]
        only_there = sorted(set(ref_qids) - set(qids))[:3]
        raise HarnessError(
            f"{source} and {reference_source}: they score different queries ({len(qids)} vs {len(ref_qids)}; only in "
            f"the first: {only_here}, only in the second: {only_there})"
        )
    return np.array([position[q] for q in qids], dtype=np.int64)


def paired_tests(
    qids: Sequence[str],
    values: Mapping[Metric, np.ndarray],
    ref_qids: Sequence[str],
    reference: Mapping[Metric, np.ndarray],
    metrics: Iterable[Metric],
    *,
    alpha: float,
    source: str,
    reference_source: str,
) -> tuple[list[PairedTTest], list[Metric]]:
    """(a paired test per metric present on both sides, not yet Holm-corrected; the metrics missing on a side)."""
    order = aligned(qids, ref_qids, source=source, reference_source=reference_source)
    tests, missing = [], []
    for metric in metrics:
        if metric not in values or metric not in reference:
            missing.append(metric)
            continue
        tests.append(paired_ttest(values[metric], np.asarray(reference[metric])[order], metric=str(metric), alpha=alpha))
    return tests, missing
