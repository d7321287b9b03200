"""Metrics (Recall@K, the headline, and every registered measure over all / head / torso relevant items) and
paired significance tests.

`measures` and `scoring` need only numpy; `significance` loads scipy, so it is imported on first use.
"""

from harness.metrics.measures import (
    HEADLINE_MEASURE,
    SEGMENTS,
    Measure,
    Metric,
    register,
    registry,
    standard_metrics,
)
from harness.metrics.measures import SegmentHits
from harness.metrics.scoring import recall_at_k, score, segment_counts

_SIGNIFICANCE = ("PairedTTest", "paired_ttest", "holm", "compare", "compare_values")

__all__ = [
    "HEADLINE_MEASURE",
    "SEGMENTS",
    "Measure",
    "Metric",
    "SegmentHits",
    "register",
    "registry",
    "score",
    "recall_at_k",
    "segment_counts",
    "standard_metrics",
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
