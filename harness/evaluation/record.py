"""Assemble a result record from a dataset's finished units, with significance against references, and write it.

Scores are always recomputed from the stored rankings and the held-out targets (harness.evaluation.scoring), so a
record never carries a number the harness did not compute itself.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from harness import __version__
from harness.evaluation.diagnostics import diagnostics
from harness.evaluation.scoring import score_units
from harness.evaluation.significance import significance
from harness.metrics.measures import registry
from harness.records.files import per_query_table, write_record_folder
from harness.records.per_query import check_same_queries_every_seed, metrics_blocks, per_query_frame
from harness.records.provenance import PROTOCOL_VERSION, environment, git_commit, protocol_params
from harness.records.validate import SCHEMA_VERSION


def assemble_and_write(*, sub, ds, folder: Path, units, decoding: str, out_dir: Path, started_at: str,
                       total_s: float, reference_folders: Mapping[str, Path] | None = None) -> dict:
    """Score `units` (a submission's outcomes on `ds`, failed ones included), compare with the references found
    under `out_dir` (or, for a reference named in `reference_folders`, in that record folder: a published record
    used instead of retraining the reference), and write the record folder `folder`. Returns the record as written."""
    head_fraction = float(ds.manifest.get("split_params", {}).get("head_fraction", 0.01))
    params = protocol_params(ds.headline_k, head_fraction, decoding)
    ok_units = sorted((u for u in units if u.status == "ok"), key=lambda u: u.seed)
    scores = score_units(ds, sub.tasks, ok_units, params["ks"])
    tables = [per_query_table(task, seed, s.targets.qids, values)
              for task, s in scores.items() for seed, values in s.per_seed.items()]
    per_query = pa.concat_tables(tables) if tables else None
    # Every number below is aggregated from this table, as the verifier recomputes it from the file.
    values = per_query_frame(per_query, dataset=ds.name, submission=sub.name) if per_query is not None else None
    if values is not None:
        check_same_queries_every_seed(values)
    tested, comparison_notes = significance(sub=sub, ds=ds, decoding=decoding, out_dir=out_dir, values=values,
                                            params=params, my_seeds=[u.seed for u in ok_units],
                                            reference_folders=reference_folders)
    diagnosed: dict[str, Any] = {"comparison_notes": comparison_notes} if comparison_notes else {}
    diagnosed.update(diagnostics(sub=sub, ds=ds, decoding=decoding, out_dir=out_dir, ok_units=ok_units, params=params,
                                 reference_folders=reference_folders))
    record = {
        "schema_version": SCHEMA_VERSION,
        "harness": {"version": __version__, "git_commit": git_commit()},
        "protocol": {"version": PROTOCOL_VERSION, "params": params},
        "dataset": dataset_block(ds),
        "submission": submission_block(sub),
        "seeds": [u.seed for u in units],
        "units": [
            {"seed": u.seed, "status": u.status, "error": u.error, "timings": u.timings, "adapter_info": u.adapter_info}
            for u in units
        ],
        "measures": list(registry()),
        "metrics": metrics_blocks(values) if values is not None else {},
        "lists": list_stats(ok_units, sub.tasks, params["depth"]),
        "significance": tested,
        "diagnostics": diagnosed,
        "environment": environment(),
        "timing": {
            "started_at": started_at,
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "total_s": round(total_s, 3),
        },
    }
    catalogue = ds.catalogue()
    return write_record_folder(
        folder,
        record,
        per_query=per_query,
        runs={task: {unit.seed: (s.targets.qids, unit.rankings[task]) for unit in ok_units} for task, s in scores.items()},
        qrels={task: (s.targets.qids, s.targets.rel_offsets, s.targets.rel_items) for task, s in scores.items()},
        item_keys=[str(k) for k in catalogue.item_key],
        heads={task: [str(key) for key in catalogue.item_key[catalogue.head(task)]] for task in scores},
    )


def dataset_block(ds) -> dict[str, Any]:
    return {
        "name": ds.name,
        "fingerprint": ds.fingerprint,
        "format_version": int(ds.manifest.get("format_version", 1)),
        "headline_k": ds.headline_k,
        "source": ds.manifest.get("source"),
        "params": ds.manifest.get("params", {}),
        "notes": ds.manifest.get("notes", {}),
        "stats": ds.stats(),  # the Table 3 row, so the leaderboard needs nothing but records
    }


def submission_block(sub) -> dict[str, Any]:
    return {
        "name": sub.name,
        "display_name": sub.display_name,
        "kind": sub.kind,
        "adapter": sub.adapter,
        "tasks": list(sub.tasks),
        "params": sub.params,
        "config": sub.config,
        "config_hash": sub.config_hash,
        "references": dict(sub.references),
    }


def list_stats(ok_units, tasks, depth: int) -> dict[str, Any]:
    """Per task: how many distinct items the returned lists hold (the rankings are stored deduplicated and padded
    with -1), mean over requests, per seed and over seeds. A diverse beam search can return fewer than K distinct
    items, which caps Recall@K: this is what the "distinct" decoding is there to show (docs/decoding.md)."""
    out: dict[str, Any] = {}
    for task in tasks:
        per_seed = {str(u.seed): float((u.rankings[task] >= 0).sum(axis=1).mean()) if len(u.rankings[task]) else None
                    for u in ok_units}
        known = [v for v in per_seed.values() if v is not None]
        if per_seed:
            out[task] = {"depth": depth, "mean_distinct_items": float(np.mean(known)) if known else None,
                         "per_seed": per_seed}
    return out
