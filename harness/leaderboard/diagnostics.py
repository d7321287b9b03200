"""A record's §7 diagnostics (harness/diagnostics, docs/diagnostics.md) as the paper's Tables 6, 7 and 8.

    view = diagnostics_view(loaded_record)   # None when the record carries no diagnostics

Rows are target tasks (Table 6 and 7) or request groups (Table 8); every number is formatted here, so the
template only lays them out. Diagnostics are free-form in record schema 1, so every value is read defensively: a
missing or mistyped number shows as "—", never as an error (a hostile record must not break the site).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.leaderboard.collect import LoadedRecord
from harness.leaderboard.tables import SIGNIFICANT_MARK, TASK_TITLES

OTHER = {"rec": "search", "search": "rec"}
H2_MEASURES = {  # the paper's Table 7 column names
    "history_target_query_matches": "# matches of history → target queries",
    "relevant_pair_rec_cooccurrence": "item pairs from R in rel pairs for queries",
}
TABLE8_GROUPS = (
    ("redundant", "with a redundant pair"),
    ("non_redundant", "with a non-redundant pair"),
    ("both", "with both kinds"),
    ("none", "with neither"),
)


@dataclass
class DiagnosticsTable:
    caption: str
    explanation: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class DiagnosticsView:
    name: str
    display_name: str
    comparisons: list[str]  # "recommendation: against rec_t5, seed 0"
    tables: list[DiagnosticsTable]


def diagnostics_view(loaded: LoadedRecord) -> DiagnosticsView | None:
    diagnostics = loaded.record.diagnostics
    per_task = {t: diagnostics[t] for t in TASK_TITLES if isinstance(diagnostics.get(t), dict)}
    if not per_task:
        return None
    comparisons = [
        f"{TASK_TITLES[t].lower()}: against {_text(d.get('reference'))}, predictions of seed {_text(d.get('seed'))}, "
        f"{_count(d.get('n_changed'))} of {_count(d.get('n_requests'))} top-{_text(d.get('depth'))} lists changed"
        for t, d in per_task.items()
    ]
    return DiagnosticsView(
        name=loaded.name,
        display_name=loaded.display_name,
        comparisons=comparisons,
        tables=[_table6(per_task), _table7(per_task), _table8(per_task)],
    )


def _table6(per_task: dict[str, dict]) -> DiagnosticsTable:
    table = DiagnosticsTable(
        caption="H1: popularity of the predicted items (Table 6)",
        explanation="Mean popularity of the items each model predicts, counted in the other task's training data. "
        "A positive change means joint training moved predictions towards what is popular in the added task.",
        headers=["Target task", "Popularity counted in", "Requests", "Reference", "Joint", "Change", "p"],
    )
    for task, d in per_task.items():
        h1 = _dict(d.get("h1"))
        for key, label in (("all", ""), ("changed_only", " (changed lists only)")):
            part = _dict(h1.get(key))
            test = _dict(part.get("test"))
            table.rows.append([
                TASK_TITLES[task] + label,
                f"{_task_name(h1.get('popularity_from'))} training data",
                _count(part.get("n")),
                _num(part.get("reference_mean"), ".2f"),
                _num(part.get("joint_mean"), ".2f"),
                _percent(part.get("delta_pct")) + _mark(test),
                _num(test.get("p"), ".3g"),
            ])
    return table


def _table7(per_task: dict[str, dict]) -> DiagnosticsTable:
    table = DiagnosticsTable(
        caption="H2: where the changed predictions win (Table 7)",
        explanation="Over the requests whose top-K list the joint model changed: how strongly the other task's "
        "training data links the request's items (recommendation: training queries holding a history item and the "
        "target together; search: users whose training history holds both items of a relevant pair, mean over "
        "pairs), where the joint model is better against where the reference is better (Welch t-test). A positive "
        "change means the joint model wins where the added task links the items: it learned from that task's data.",
        headers=["Target task", "Measure", "Changed lists", "Joint better: n, mean", "Reference better: n, mean",
                 "Change", "p"],
    )
    for task, d in per_task.items():
        h2 = _dict(d.get("h2"))
        groups = _dict(h2.get("groups"))
        test = _dict(h2.get("test"))
        better, worse = _dict(groups.get("joint_better")), _dict(groups.get("reference_better"))
        table.rows.append([
            TASK_TITLES[task],
            H2_MEASURES.get(h2.get("metric"), _text(h2.get("metric"))),
            _count(h2.get("n_changed")),
            f"{_count(better.get('n'))}, {_num(better.get('mean'), '.2f')}",
            f"{_count(worse.get('n'))}, {_num(worse.get('mean'), '.2f')}",
            _percent(h2.get("delta_pct")) + _mark(test),
            _num(test.get("p"), ".3g"),
        ])
    return table


def _table8(per_task: dict[str, dict]) -> DiagnosticsTable:
    depth = next((d.get("depth") for d in per_task.values() if isinstance(d.get("depth"), int)), None)
    metric = f"R@{depth}" if depth else "recall"
    table = DiagnosticsTable(
        caption="Redundant and non-redundant item pairs (Table 8)",
        explanation="A test request's item pairs (history item and target; two relevant items of a query) that the "
        "other task's training data holds: redundant when the target task's training data holds them too, "
        "non-redundant when only the other task's does. Non-redundant pairs are what joint training can add.",
        headers=["Target task", "Request group", "Requests", "Distinct pairs", f"Reference {metric}", f"Joint {metric}",
                 "Improvement", "p"],
    )
    for task, d in per_task.items():
        red = _dict(d.get("redundancy"))
        groups = _dict(red.get("groups"))
        pairs = {"redundant": red.get("redundant_pairs"), "non_redundant": red.get("non_redundant_pairs")}
        for key, label in TABLE8_GROUPS:
            group = _dict(groups.get(key))
            test = _dict(group.get("test"))
            table.rows.append([
                TASK_TITLES[task],
                label,
                _count(group.get("n_requests")),
                _count(pairs[key]) if key in pairs else "",
                _num(group.get("reference_mean"), ".3f"),
                _num(group.get("joint_mean"), ".3f"),
                _percent(group.get("improvement_pct")) + _mark(test),
                _num(test.get("p"), ".3g"),
            ])
    return table


# ---- defensive formatting ---------------------------------------------------------------------------------
def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN is not shown


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if _is_number(value) else "—"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "—"


def _percent(value: Any) -> str:
    """+3.2%, −2.7% (one decimal, as the paper's Tables 6 to 8 give them closer than Table 5's whole percents)."""
    if not _is_number(value):
        return "—"
    text = f"{value:+,.1f}%"
    return "±0.0%" if text in ("+0.0%", "-0.0%") else text.replace("-", "−")


def _mark(test: dict) -> str:
    return SIGNIFICANT_MARK if test.get("significant") is True else ""


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


def _task_name(task: Any) -> str:
    return TASK_TITLES.get(task, _text(task)).lower() if isinstance(task, str) else "—"
