"""Reciprocal rank @K: 1 / the rank of the first relevant item in the top K, 0 when none is there."""

import numpy as np

from harness.metrics.measures import Measure, SegmentHits, register


def reciprocal_rank(hits: SegmentHits, k: int) -> np.ndarray:
    return hits.per_query_max(np.where(hits.position < k, 1.0 / (hits.position + 1.0), 0.0))


# pytrec_eval's recip_rank has no cutoff: its tests give it the run cut at K.
register(Measure("RR", "Reciprocal rank", "1 / rank of the first relevant item in the top K (0 if none)",
                 reciprocal_rank, trec_eval="recip_rank"))
