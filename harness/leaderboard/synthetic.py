"""Synthetic, schema-valid result records for the leaderboard's tests and benchmark (never for results).

`synthetic_records(n_datasets)` gives, per dataset, the paper's Table 5 line-up: Gen_R, Gen_S and the joint
Gen_R+S (which declares them as references and carries their paired tests), and baselines. Numbers are
drawn from a generator seeded by the dataset and submission names, so the same call gives the same records.
Records name no data files (`files` lists none), so a folder needs only its record.json.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.io import write_json_atomic
from harness.metrics.measures import standard_metrics
from harness.metrics.significance import holm

SIM_KS = [1, 5, 10]
REAL_KS = [1, 5, 10, 30]


@dataclass(frozen=True)
class Entry:
    name: str
    display_name: str
    kind: str
    tasks: tuple[str, ...]
    references: tuple[tuple[str, str], ...] = ()


LINEUP: tuple[Entry, ...] = (
    Entry("rec_t5", "Gen_R", "generative", ("rec",)),
    Entry("search_t5", "Gen_S", "generative", ("search",)),
    Entry("joint_t5", "Gen_R+S", "generative", ("rec", "search"), (("rec", "rec_t5"), ("search", "search_t5"))),
    Entry("pop_rec", "Pop_R", "baseline", ("rec", "search")),
    Entry("pop_search", "Pop_S", "baseline", ("rec", "search")),
    Entry("sasrec", "SASRec", "baseline", ("rec",)),
    Entry("bert4rec", "BERT4Rec", "baseline", ("rec",)),
    Entry("bm25", "BM25", "baseline", ("search",)),
    Entry("biencoder", "Bi-encoder", "baseline", ("search",)),
)


def sha256_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _rng(*parts: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:16], 16))


def synthetic_metrics(dataset: str, name: str, tasks, ks, seeds, n_queries: int = 500, measures=("R",)) -> dict:
    """{task: {metric: {mean, n, per_seed}}}: recall grows with K; head above torso, as on real data."""
    metrics = {}
    for task in tasks:
        rng = _rng(dataset, name, task)
        base = rng.uniform(0.05, 0.4)
        block = {}
        for metric in (m for measure in measures for m in standard_metrics(ks, measure)):
            scale = {"all": 1.0, "head": 1.6, "torso": 0.7}[metric.segment] * (metric.k / max(ks)) ** 0.5
            n = {"all": n_queries, "head": n_queries // 5, "torso": n_queries - n_queries // 10}[metric.segment]
            per_seed = {str(s): float(min(1.0, base * scale * rng.uniform(0.9, 1.1))) for s in seeds}
            block[str(metric)] = {"mean": float(np.mean(list(per_seed.values()))), "n": n, "per_seed": per_seed}
        metrics[task] = block
    return metrics


def synthetic_record(
    entry: Entry,
    dataset: str = "sim1",
    *,
    fingerprint: str | None = None,
    ks=SIM_KS,
    seeds=(0, 1),
    protocol_version: str = "1",
    finished_at: str = "2024-05-01T12:00:00+00:00",
    reference_metrics: dict | None = None,
    measures: tuple[str, ...] = ("R",),
) -> dict:
    """One valid record. `reference_metrics`: {task: metrics block of the reference} for the paired tests.
    `measures` other than Recall alone make it a schema 1.2 record listing them."""
    fingerprint = fingerprint or sha256_of(f"dataset:{dataset}")
    headline = max(ks)
    metrics = synthetic_metrics(dataset, entry.name, entry.tasks, ks, seeds, measures=measures)
    references = dict(entry.references)
    config = {"submission": {"display_name": entry.display_name, "kind": entry.kind, "tasks": list(entry.tasks),
                             "datasets": [dataset], "seeds": list(seeds)},
              "params": {"epochs": 5}, "references": references}
    record = {
        "schema_version": "1.0",
        "harness": {"version": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567"},
        "protocol": {"version": protocol_version, "params": {
            "depth": headline, "ks": list(ks), "headline_k": headline, "head_fraction": 0.01, "test": "paired-t",
            "alpha": 0.05, "correction": "holm", "seed_aggregation": "mean"}},
        "dataset": {"name": dataset, "fingerprint": fingerprint, "format_version": 1, "headline_k": headline,
                    "stats": {"rec_items": 50, "rec_users": 200, "rec_interactions": 1602, "rec_density": 0.16,
                              "rec_gini": 0.41, "search_items": 50, "search_queries": 500, "search_qrels": 1000,
                              "search_avg_rel": 2.0, "search_gini": 0.33, "ks_sr": 0.2, "kld_sr": 0.11, "kld_rs": 0.12}},
        "submission": {"name": entry.name, "display_name": entry.display_name, "kind": entry.kind,
                       "adapter": f"harness.synthetic:{entry.name}", "tasks": list(entry.tasks),
                       "params": {"epochs": 5}, "config": config, "config_hash": sha256_of(repr(config)),
                       "references": references},
        "seeds": list(seeds),
        "units": [{"seed": s, "status": "ok", "error": None,
                   "timings": {"fit_s": 12.5 + s, "retrieve_s": {t: 0.5 for t in entry.tasks}},
                   "adapter_info": {"parameters": 1000}} for s in seeds],
        "metrics": metrics,
        "significance": _significance(entry, dataset, metrics, reference_metrics or {}, fingerprint, headline),
        "diagnostics": {},
        "files": {"per_query": None, "runs": {}, "qrels": {}},
        "environment": {"python": "3.11.7", "platform": "Linux", "device": "cpu", "numpy": "2.4.6"},
        "timing": {"started_at": "2024-05-01T11:00:00+00:00", "finished_at": finished_at, "total_s": 3600.0},
    }
    if tuple(measures) != ("R",):
        record.update(schema_version="1.2", measures=list(measures))
    return record


def _significance(entry: Entry, dataset: str, metrics: dict, reference_metrics: dict, fingerprint: str, k: int) -> dict:
    out = {}
    for task, reference in entry.references:
        if task not in reference_metrics:
            continue
        rng = _rng(dataset, entry.name, task, "significance")
        rows = []
        for segment in ("", "/head", "/torso"):
            name = f"R@{k}{segment}"
            mean, ref_mean = metrics[task][name]["mean"], reference_metrics[task][name]["mean"]
            diff = mean - ref_mean
            p = float(rng.uniform(0, 0.2))
            rows.append({"metric": name, "n": metrics[task][name]["n"], "mean": mean, "reference_mean": ref_mean,
                         "diff": diff, "ci_low": diff - 0.01, "ci_high": diff + 0.01, "t": diff / 0.005, "p": p,
                         "alpha": 0.05, "reference": reference, "reference_fingerprint": fingerprint})
        out[task] = rows
    every = [row for rows in out.values() for row in rows]  # Holm across the record's rows, as a record has it
    for row, p_holm in zip(every, holm([row["p"] for row in every])):
        row.update(p_holm=float(p_holm), significant=bool(p_holm < 0.05))
    for rows in out.values():
        for row in rows:  # the field order of a real record
            row.update({key: row.pop(key) for key in ("p_holm", "significant", "reference", "reference_fingerprint")})
    return out


def synthetic_records(n_datasets: int, lineup: tuple[Entry, ...] = LINEUP, seeds=(0, 1)) -> list[dict]:
    """The line-up on `n_datasets` datasets (sim-like K cutoffs on odd ones, real-data cutoffs on even ones)."""
    records = []
    for d in range(n_datasets):
        dataset = f"synthetic-{d:04d}"
        ks = REAL_KS if d % 2 == 0 else SIM_KS
        by_name = {}
        for entry in lineup:  # references come before the joint model in LINEUP
            refs = {task: by_name[ref]["metrics"][task] for task, ref in entry.references if ref in by_name}
            record = synthetic_record(entry, dataset, ks=ks, seeds=seeds, reference_metrics=refs)
            by_name[entry.name] = record
            records.append(record)
    return records


def write_records(root: str | Path, records: list[dict]) -> list[Path]:
    """Each record to <root>/<dataset>/<submission>/record.json (the runner's layout); the folders."""
    folders = []
    for record in records:
        folder = Path(root) / record["dataset"]["name"].replace(":", "_") / record["submission"]["name"]
        write_json_atomic(folder / "record.json", record)
        folders.append(folder)
    return folders
