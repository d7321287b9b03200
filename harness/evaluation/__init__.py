"""The evaluation stage: from a submission's stored rankings to its result record.

    scoring.py      held-out targets of a dataset, per-query values of every registered measure per seed
    comparison.py   the paired test of two per-query tables over the same queries (the record's significance
                    block and the gate's verdicts both go through it)
    significance.py the record's tests against each task's declared reference (finding the reference's record)
    diagnostics.py  the paper's §7 diagnostics (H1, H2, Table 8) against the reference's rankings
    record.py       assembling the record and writing its folder (harness.records)

Measures themselves live in harness.metrics (a registry of plugins); result files in harness.records.
"""
