"""The one comparison of two per-query tables: a submission's values against a reference's (or a gate baseline's),
each already averaged over its own seeds, paired on the query id, one paired t-test per metric.

The record's significance block (harness.evaluation.significance), the verifier and the gate's verdicts
(harness.gate.compare) all call `paired_tests`; Holm's correction is applied by each over its own family (a record's
tests; a gate run's rows) with harness.metrics.significance.compare. The averaging and the pairing are
harness.records.per_query's (query_means, aligned).
"""

from __future__ import annotations

from typing import Iterable

import polars as pl

from harness.metrics.measures import Metric
from harness.metrics.significance import PairedTTest, paired_ttest
from harness.records.per_query import aligned, metric_names


def paired_tests(
    values: pl.DataFrame,
    reference: pl.DataFrame,
    metrics: Iterable[Metric],
    *,
    alpha: float,
    source: str,
    reference_source: str,
) -> tuple[list[PairedTTest], list[Metric]]:
    """(a paired test per metric present on both sides, not yet Holm-corrected; the metrics missing on a side).
    `values`, `reference`: one task's query means of each side (harness.records.per_query.query_means); HarnessError
    naming both sides unless they score the same queries."""
    beside = aligned(values, reference, source=source, reference_source=reference_source)
    on_both = set(metric_names(values)) & set(metric_names(reference))
    tests, missing = [], []
    for metric in metrics:
        if str(metric) not in on_both:
            missing.append(metric)
            continue
        # in the order of `values`: the order its means are summed in, as when the record was written
        tests.append(paired_ttest(values.get_column(str(metric)).to_numpy(), beside.get_column(str(metric)).to_numpy(),
                                  metric=str(metric), alpha=alpha))
    return tests, missing
