"""Recall@K: the share of a query's relevant items found in its top K. The paper's headline measure."""

import numpy as np

from harness.metrics.measures import Measure, SegmentHits, register


def recall(hits: SegmentHits, k: int) -> np.ndarray:
    return hits.ratio(hits.per_query_sum(hits.position < k), hits.n_relevant)


register(Measure("R", "Recall", "|top-K ∩ relevant| / |relevant|", recall, trec_eval="recall_{k}"))
