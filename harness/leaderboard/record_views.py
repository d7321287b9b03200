"""What a submission page shows of one record: its metrics, its significance tests and its units, as rows of
formatted strings for the templates (harness.leaderboard.site lays them out)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.leaderboard.collect import LoadedRecord
from harness.leaderboard.diagnostics import DiagnosticsView
from harness.leaderboard.tables import TASK_TITLES
from harness.leaderboard.views import Node, format_scalar, format_seconds, to_tree
from harness.metrics.measures import Metric, measure_order
from harness.records.record import ResultRecord


@dataclass
class RecordView:
    loaded: LoadedRecord
    group_id: str
    dataset_href: str
    download: str
    config_json: str
    metrics: list[dict]
    significance: list[dict]
    units: list[dict]
    environment: list[tuple[str, str]]
    diagnostics: Node | None  # the raw object, as the record holds it
    diagnostics_tables: DiagnosticsView | None
    adapter_params: Node


def metric_rows(record: ResultRecord) -> list[dict]:
    rows = []
    for task in sorted(record.metric_tasks):
        for name in sorted(record.metrics[task], key=metric_order):
            value = record.metrics[task][name]
            rows.append({
                "task": TASK_TITLES.get(task, task),
                "metric": name,
                "mean": format_scalar(value.mean) if value.mean is None else f"{value.mean:.4f}",
                "n": f"{value.n:,}",
                "per_seed": ["—" if value.per_seed.get(s) is None else f"{value.per_seed[s]:.4f}" for s in record.seeds],
            })
    return rows


@functools.lru_cache(maxsize=4096)  # a site sorts the same few dozen names for every record
def metric_order(name: str) -> tuple:
    """Metrics this harness knows by measure (Recall first), cutoff and segment (R@1, R@1/head, ..., nDCG@1, ...);
    others (a measure the schema allows but this harness does not compute) after them, by name."""
    try:
        metric = Metric.parse(name)
    except HarnessError:
        return (1, (), 0, "", name)
    return (0, measure_order(metric.measure), metric.k, metric.segment, "")


def significance_rows(record: ResultRecord) -> list[dict]:
    def num(x, spec):
        return "—" if x is None else format(x, spec)

    rows = []
    for task in sorted(record.significance):
        for row in record.significance[task]:
            rows.append({
                "task": TASK_TITLES.get(task, task),
                "metric": row.metric,
                "reference": row.reference,
                "n": f"{row.n:,}",
                "mean": num(row.mean, ".4f"),
                "reference_mean": num(row.reference_mean, ".4f"),
                "diff": num(row.diff, "+.4f"),
                "ci": f"[{num(row.ci_low, '.4f')}, {num(row.ci_high, '.4f')}]",
                "t": num(row.t, ".3f"),
                "p": num(row.p, ".3g"),
                "p_holm": num(row.p_holm, ".3g"),
                "significant": bool(row.significant),
            })
    return rows


def unit_rows(record: ResultRecord) -> list[dict]:
    rows = []
    for unit in sorted(record.units, key=lambda u: u.seed):
        retrieve = unit.retrieve_s
        rows.append({
            "seed": unit.seed,
            "status": unit.status,
            "fit": format_seconds(unit.fit_s),
            "retrieve": ", ".join(f"{TASK_TITLES.get(t, t).lower()} {format_seconds(retrieve[t])}" for t in sorted(retrieve)) or "—",
            "info": to_tree(unit.adapter_info),
            "error": unit.error,
        })
    return rows
