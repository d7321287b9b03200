"""nDCG@K with binary relevance (trec_eval's ndcg_cut): DCG of the top K over the DCG of a perfect top K."""

import numpy as np

from harness.metrics.measures import Measure, SegmentHits, register


def ndcg(hits: SegmentHits, k: int) -> np.ndarray:
    found = hits.position < k
    gains = np.zeros(len(hits.position))
    gains[found] = 1.0 / np.log2(hits.position[found] + 2.0)  # position 0 is rank 1: discount 1 / log2(2)
    ideal_dcg = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])  # all relevant items first
    ideal = ideal_dcg[np.minimum(hits.n_relevant, k).astype(np.int64)]
    return hits.ratio(hits.per_query_sum(gains), ideal)


register(Measure("nDCG", "nDCG", "Σ over hits in the top K of 1 / log2(rank + 1), over the same sum for a perfect "
                                 "list (binary relevance)", ndcg, trec_eval="ndcg_cut_{k}"))
