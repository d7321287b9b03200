"""Scoring a submission's units: the held-out targets of each task and every registered measure per query and seed.

Scores are always recomputed from the stored rankings and the held-out targets, so a record never carries a number
the harness did not compute itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from harness.metrics.measures import HEADLINE_MEASURE, SEGMENTS, Metric
from harness.metrics.scoring import score


@dataclass(frozen=True)
class Targets:
    """The test split's held-out relevance of one task, aligned with the requests the adapter got."""

    qids: list[str]
    rel_offsets: np.ndarray  # int [n + 1], CSR into rel_items
    rel_items: np.ndarray  # int


@dataclass(frozen=True)
class TaskScores:
    """One task's per-query values for every seed that finished: {seed: {Metric: float64 [n]}}."""

    targets: Targets
    per_seed: dict[int, dict[Metric, np.ndarray]]


def targets(ds, task: str) -> Targets:
    if task == "rec":
        requests = ds.rec_requests("test")
        keys = requests.user_key
        qids = [_safe_id(keys[u]) if keys is not None else str(u) for u in requests.user]
        items = ds.rec_targets("test").astype(np.int32)
        return Targets(qids, np.arange(len(items) + 1, dtype=np.int64), items)
    requests = ds.search_requests("test")
    offsets, items = ds.search_qrels("test")
    return Targets([f"q{int(q)}" for q in requests.query_id], offsets, items)


def _safe_id(value: Any) -> str:
    """TREC files split on whitespace: ids must not contain any."""
    return "_".join(str(value).split())


def score_units(ds, tasks: Sequence[str], ok_units, ks: Sequence[int]) -> dict[str, TaskScores]:
    """{task: its scores} for every task with at least one finished unit (units sorted by seed)."""
    catalogue = ds.catalogue()
    out = {}
    for task in tasks:
        if not ok_units:
            continue
        held_out = targets(ds, task)
        head = catalogue.head(task)
        per_seed = {unit.seed: score(unit.rankings[task], held_out.rel_offsets, held_out.rel_items, head, ks)
                    for unit in ok_units}
        out[task] = TaskScores(held_out, per_seed)
    return out


def headline_metrics(headline_k: int) -> list[Metric]:
    """What the significance tests and the gate compare by default: R@K over all / head / torso (the paper's)."""
    return [Metric(HEADLINE_MEASURE, headline_k, segment) for segment in SEGMENTS]
