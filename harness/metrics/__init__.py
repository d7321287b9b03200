"""Metrics (Recall@K over all / head / torso relevant items) and paired significance tests.

`measures` and `recall` need only numpy; `significance` loads scipy, so it is imported on first use.
"""

from harness.metrics.measures import (
    MEASURES,
    SEGMENTS,
    Metric,
    metrics_block,
    seed_average,
    standard_metrics,
    summarise,
)
from harness.metrics.recall import recall_at_k, segment_counts

_SIGNIFICANCE = ("PairedTTest", "paired_ttest", "holm", "compare", "compare_values")

__all__ = [
    "MEASURES",
    "SEGMENTS",
    "Metric",
    "metrics_block",
    "recall_at_k",
    "seed_average",
    "segment_counts",
    "standard_metrics",
    "summarise",
    "PairedTTest",
    "paired_ttest",
    "holm",
    "compare",
    "compare_values",
]


def __getattr__(name: str):
    if name in _SIGNIFICANCE:
        from harness.metrics import significance

        return getattr(significance, name)
    raise AttributeError(f"module 'harness.metrics' has no attribute {name!r}")
