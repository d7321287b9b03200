"""The gate's comparison: each (submission, dataset, task, metric) of a new record against its baseline.

For every row, the per-query values of both records (averaged over each record's seeds) are paired on the
query id and tested with a paired Student's t-test (harness.metrics.significance); Holm's correction runs
across the whole table, every row of one gate run being one family. A row is

    worse   when diff = now - baseline < 0 and (p_holm < alpha or -diff > max(tolerance, slack))
    better  when diff > 0 and (p_holm < alpha or diff > max(tolerance, slack))
    same    otherwise; untested when no query is in the metric's segment.

`slack` is what the `query_slack` queries that changed most account for on their own: the sum of their largest
absolute per-query differences over n. A trained model on another CPU moves a query or two across rank K
through float rounding (docs/gate.md: SASRec's ml-small R@30/head, one hit of 92 queries, 0.0109 against a
tolerance of 0.01); a difference one query carries is below what a segment of n queries can resolve, and the
paired test still judges it. query_slack = 0 restores the plain tolerance (exact reproduction).

`diff` is the mean of the per-query differences, with differences below 1e-12 taken as 0 (float rounding
in seed averaging), so a record reproduced with the same seed has diff exactly 0 and passes at tolerance 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from harness.errors import HarnessError
from harness.evaluation.comparison import paired_tests
from harness.evaluation.scoring import headline_metrics
from harness.gate.baseline import RecordFolder
from harness.gate.profiles import METRIC_SETS
from harness.metrics.measures import SEGMENTS, Metric
from harness.metrics.significance import PairedTTest, compare
from harness.records.per_query import aligned, query_means, record_values
from harness.records.record import ResultRecord


@dataclass(frozen=True)
class GateRow:
    submission: str
    dataset: str
    task: str
    metric: str
    verdict: str  # "worse" | "better" | "same" | "untested"
    why: str  # what made the verdict: "significant", "beyond tolerance", both, "within query slack" (same), or ""
    test: PairedTTest
    slack: float = 0.0  # what the query_slack most-changed queries account for alone (module docstring)

    def to_dict(self) -> dict:
        out = {"submission": self.submission, "dataset": self.dataset, "task": self.task}
        out.update(self.test.to_dict())
        out.update({"slack": self.slack, "verdict": self.verdict, "why": self.why})
        return out


@dataclass
class GateReport:
    rows: list[GateRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # failures that are not metric rows (a failed unit, a lost task)
    notes: list[str] = field(default_factory=list)
    alpha: float = 0.05
    tolerance: float = 0.0
    query_slack: int = 0

    def by_verdict(self, verdict: str) -> list[GateRow]:
        return [row for row in self.rows if row.verdict == verdict]

    @property
    def passed(self) -> bool:
        return not self.problems and not self.by_verdict("worse")

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "alpha": self.alpha,
            "tolerance": self.tolerance,
            "query_slack": self.query_slack,
            "correction": "holm",
            "rows": [row.to_dict() for row in self.rows],
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Pending:
    submission: str
    dataset: str
    task: str
    test: PairedTTest
    largest_changes: tuple[float, ...] = ()  # the largest absolute per-query differences, descending

    def slack(self, query_slack: int) -> float:
        return math.fsum(self.largest_changes[:query_slack]) / self.test.n if self.test.n else 0.0


_MOST_CHANGED = 10  # how many of the largest per-query differences are kept (the most --query-slack can use)
_FLOAT_NOISE = 1e-12  # as harness.metrics.significance: per-query differences at or below it count as 0


def gate_metrics(record: ResultRecord, which: str) -> list[Metric]:
    """headline: R@K over all / head / torso at the record's headline K; all: every cutoff of every measure the
    (baseline) record holds (its `measures`; Recall alone for a record written before measures were listed)."""
    if which == "headline":
        return headline_metrics(record.params.headline_k)
    if which == "all":
        return [Metric(code, k, segment) for code in record.measures for k in record.params.ks for segment in SEGMENTS]
    raise HarnessError(f"metric set {which!r} is unknown; give one of {', '.join(METRIC_SETS)}")


def compare_pair(now: RecordFolder, base: RecordFolder, *, alpha: float, metrics: str) -> tuple[list[_Pending], list[str]]:
    """Paired tests (not yet Holm-corrected) of every task the baseline scores, and the problems found."""
    tests: list[_Pending] = []
    problems: list[str] = []
    label = f"{now.submission} on {now.dataset}"
    if now.failed_seeds:
        problems.append(f"{label}: seeds {now.failed_seeds} FAILED (see {now.folder / 'record.json'})")
    if now.record.files.per_query is None:
        problems.append(f"{label}: the new record has no per-query scores (no unit finished)")
        return tests, problems
    wanted = gate_metrics(base.record, metrics)
    now_values = query_means(record_values(now.folder, now.record, wanted))
    base_values = query_means(record_values(base.folder, base.record, wanted))
    for task in sorted(base.record.metric_tasks):
        if task not in now.record.metric_tasks:
            problems.append(f"{label}: the baseline scores task {task!r}, the new record does not")
            continue
        now_task, base_task = now_values.filter(task=task), base_values.filter(task=task)
        sources = {"source": f"{now.folder} (task {task!r})", "reference_source": str(base.folder)}
        found, missing = paired_tests(now_task, base_task, wanted, alpha=alpha, **sources)
        problems.extend(f"{label}: {task} {metric} is missing from one side's per-query scores" for metric in missing)
        beside = aligned(now_task, base_task, **sources)
        for test in found:
            changes = _largest_changes(now_task.get_column(test.metric).to_numpy(),
                                       beside.get_column(test.metric).to_numpy())
            tests.append(_Pending(now.submission, now.dataset, task, test, changes))
    return tests, problems


def _largest_changes(values: np.ndarray, reference: np.ndarray) -> tuple[float, ...]:
    """The largest absolute per-query differences (queries scored on both sides), descending."""
    values, reference = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    d = np.abs(values - reference)
    d = d[~np.isnan(d) & (d > _FLOAT_NOISE)]
    return tuple(float(x) for x in np.sort(d)[::-1][:_MOST_CHANGED])


def judge(pending: list[_Pending], *, alpha: float, tolerance: float, query_slack: int = 0) -> list[GateRow]:
    """Holm across every row, then each row's verdict."""
    if tolerance < 0 or not math.isfinite(tolerance):
        raise HarnessError(f"--tolerance {tolerance!r} must be a finite number >= 0")
    if not 0 <= query_slack <= _MOST_CHANGED:
        raise HarnessError(f"--query-slack {query_slack!r} must be a whole number from 0 to {_MOST_CHANGED}")
    corrected = compare([p.test for p in pending], alpha=alpha)
    rows = []
    for p, test in zip(pending, corrected, strict=True):
        slack = p.slack(query_slack)
        rows.append(GateRow(p.submission, p.dataset, p.task, test.metric, *verdict(test, tolerance, slack), test, slack))
    return rows


def verdict(test: PairedTTest, tolerance: float, slack: float = 0.0) -> tuple[str, str]:
    """(verdict, why) of one row; `slack`: what the few most-changed queries account for alone (module docstring)."""
    if test.n == 0:
        return "untested", "no query in this segment"
    reasons = []
    if test.significant:
        reasons.append("significant")
    beyond_tolerance = abs(test.diff) > tolerance
    # the slack is compared with a margin: one query's share of a mean over n is diff itself, up to rounding
    within_slack = abs(test.diff) <= slack + _FLOAT_NOISE
    if beyond_tolerance and not within_slack:
        reasons.append("beyond tolerance")
    if not reasons:
        return "same", ("within query slack" if beyond_tolerance else "")
    return ("worse" if test.diff < 0 else "better"), ", ".join(reasons)


def run_gate(
    pairs: list[tuple[RecordFolder, RecordFolder]], *, alpha: float, tolerance: float, metrics: str = "headline",
    query_slack: int = 0,
) -> GateReport:
    """Compare each (new, baseline) pair; one table, one Holm family."""
    report = GateReport(alpha=alpha, tolerance=tolerance, query_slack=query_slack)
    pending: list[_Pending] = []
    for now, base in pairs:
        tests, problems = compare_pair(now, base, alpha=alpha, metrics=metrics)
        pending.extend(tests)
        report.problems.extend(problems)
    report.rows = judge(pending, alpha=alpha, tolerance=tolerance, query_slack=query_slack)
    return report
