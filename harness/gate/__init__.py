"""The CI gate against quality regressions (`python -m harness gate`, harness.cli.gate) and speed regressions
(`python -m harness.gate.speed`). See docs/gate.md.

Modules, imported on use (the CLI lists this command without loading scipy):
    profiles   which datasets, seeds and metrics a gate run covers
    baseline   finding, checking and writing baseline record folders
    execute    running a submission afresh, or reading its records
    compare    paired tests, Holm across the table, verdicts (run_gate)
    report     the printed table
    speed      the speed gate on same-run ratios
"""
