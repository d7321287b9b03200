"""The gate's printed report: a table of what got worse (and what got better), then a one-line verdict."""

from __future__ import annotations

import math

from harness.gate.compare import GateReport, GateRow

_COLUMNS = ("submission", "dataset", "task", "metric", "n", "baseline", "now", "diff", "CI", "p", "p_holm", "why")


def format_report(report: GateReport, *, show_all: bool = False) -> str:
    worse, better = report.by_verdict("worse"), report.by_verdict("better")
    level = f"{100 * (1 - report.alpha):g}%"
    lines = [
        f"gate: {len(report.rows)} comparisons (paired t-test over queries, Holm across all of them, "
        f"alpha {report.alpha:g}, tolerance {report.tolerance:g}, query slack {report.query_slack}; "
        f"CI = {level} interval of now - baseline)"
    ]
    for title, rows in (("WORSE", worse), ("better", better)):
        if rows:
            lines += ["", f"{title} ({len(rows)}):", *_table(rows)]
    if show_all:
        lines += ["", "all comparisons:", *_table(report.rows)]
    if report.problems:
        lines += ["", f"PROBLEMS ({len(report.problems)}):", *(f"  {p}" for p in report.problems)]
    if report.notes:
        lines += ["", "notes:", *(f"  {n}" for n in report.notes)]
    lines += ["", _summary(report)]
    return "\n".join(lines)


def _summary(report: GateReport) -> str:
    counts = {v: len(report.by_verdict(v)) for v in ("worse", "better", "same", "untested")}
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    drops = [row for row in report.rows if row.verdict == "same" and row.test.diff < 0]
    largest = min(drops, key=lambda row: row.test.diff, default=None)
    tail = (
        f"; largest drop within bounds: {_label(largest)} {largest.test.diff:+.4f} (p_holm {_p(largest.test.p_holm)})"
        if largest
        else ""
    )
    if report.passed:
        hint = "; improvements: refresh the baseline with --update to keep them" if counts["better"] else ""
        return f"PASS: {tally or 'nothing to compare'}{tail}{hint}"
    return f"FAIL: {tally}" + (f", {len(report.problems)} problem(s)" if report.problems else "")


def _label(row: GateRow) -> str:
    return f"{row.submission}/{row.dataset}/{row.task}/{row.metric}"


def _table(rows: list[GateRow]) -> list[str]:
    cells = [_COLUMNS] + [_cells(row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    numeric = {"n", "baseline", "now", "diff", "p", "p_holm"}
    out = []
    for r in cells:
        parts = [c.rjust(w) if name in numeric else c.ljust(w) for c, w, name in zip(r, widths, _COLUMNS)]
        out.append("  " + "  ".join(parts).rstrip())
    return out


def _cells(row: GateRow) -> tuple[str, ...]:
    t = row.test
    ci = f"[{_f(t.ci_low, '+.4f')}, {_f(t.ci_high, '+.4f')}]"
    return (
        row.submission, row.dataset, row.task, row.metric, str(t.n), _f(t.reference_mean, ".4f"),
        _f(t.mean, ".4f"), _f(t.diff, "+.4f"), ci, _p(t.p), _p(t.p_holm), row.why,
    )


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.1e}" if 0 < value < 1e-3 else f"{value:.3f}"
