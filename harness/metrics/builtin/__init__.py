"""The measures the harness ships, one file each; every module here is loaded by harness.metrics.measures.registry().

A module registers one measure: `register(Measure(code, title, description, per_query, trec_eval))`, where
`per_query(hits, k)` turns one segment's (query, relevant item) pairs into per-query values (see recall.py, the
shortest). Its tests check it against ir_measures and pytrec_eval (tests/test_metrics_scoring.py).
"""
