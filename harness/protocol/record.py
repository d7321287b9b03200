"""Assemble a result record from a dataset's finished units, with significance against references, and write it.

Scores are always recomputed from the stored rankings and the held-out targets, so a record never carries a
number the harness did not compute itself.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.errors import HarnessError
from harness.records.provenance import PROTOCOL_VERSION, environment, git_commit, protocol_params, results_folder

HEADLINE_SEGMENTS = ("all", "head", "torso")


def targets(ds, task: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(query ids, rel_offsets, rel_items) of the test split, aligned with the requests the adapter got."""
    if task == "rec":
        requests = ds.rec_requests("test")
        keys = requests.user_key
        qids = [_safe_id(keys[u]) if keys is not None else str(u) for u in requests.user]
        items = ds.rec_targets("test").astype(np.int32)
        offsets = np.arange(len(items) + 1, dtype=np.int64)
        return qids, offsets, items
    requests = ds.search_requests("test")
    qids = [f"q{int(q)}" for q in requests.query_id]
    offsets, items = ds.search_qrels("test")
    return qids, offsets, items


def _safe_id(value: Any) -> str:
    """TREC files split on whitespace: ids must not contain any."""
    return "_".join(str(value).split())


def assemble_and_write(*, runner, ds, folder: Path, units, started_at: str, total_s: float) -> dict:
    from harness.metrics.measures import Metric, metrics_block, seed_average
    from harness.metrics.recall import recall_at_k
    from harness.records.files import per_query_table, write_record_folder
    from harness.records.validate import SCHEMA_VERSION

    sub = runner.sub
    head_fraction = float(ds.manifest.get("split_params", {}).get("head_fraction", 0.01))
    params = protocol_params(ds.headline_k, head_fraction, runner.decoding)
    ks = params["ks"]
    catalogue = ds.catalogue()
    ok_units = sorted((u for u in units if u.status == "ok"), key=lambda u: u.seed)

    metrics: dict[str, Any] = {}
    tables = []
    runs: dict[str, dict[int, tuple[list[str], np.ndarray]]] = {}
    qrels: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    seed_mean: dict[str, tuple[list[str], dict[str, np.ndarray]]] = {}
    for task in sub.tasks:
        qids, rel_offsets, rel_items = targets(ds, task)
        qrels[task] = (qids, rel_offsets, rel_items)
        per_seed = {}
        for unit in ok_units:
            values = recall_at_k(unit.rankings[task], rel_offsets, rel_items, catalogue.head(task), ks)
            per_seed[unit.seed] = values
            tables.append(per_query_table(task, unit.seed, qids, values))
            runs.setdefault(task, {})[unit.seed] = (qids, unit.rankings[task])
        if not per_seed:
            continue
        metrics[task] = metrics_block(per_seed)
        seed_mean[task] = (qids, {str(m): values for m, values in seed_average(per_seed).items()})

    significance, comparison_notes = _significance(runner, ds, seed_mean, params, Metric, [u.seed for u in ok_units])
    diagnostics: dict[str, Any] = {}
    if comparison_notes:
        diagnostics["comparison_notes"] = comparison_notes
    diagnostics.update(_diagnostics(runner, ds, ok_units, params))

    per_query = None
    if tables:
        import pyarrow as pa

        per_query = pa.concat_tables(tables)
    record = {
        "schema_version": SCHEMA_VERSION,
        "harness": {"version": __version__, "git_commit": git_commit()},
        "protocol": {"version": PROTOCOL_VERSION, "params": params},
        "dataset": {
            "name": ds.name,
            "fingerprint": ds.fingerprint,
            "format_version": int(ds.manifest.get("format_version", 1)),
            "headline_k": ds.headline_k,
            "source": ds.manifest.get("source"),
            "params": ds.manifest.get("params", {}),
            "notes": ds.manifest.get("notes", {}),
            "stats": ds.stats(),  # the Table 3 row, so the leaderboard needs nothing but records
        },
        "submission": {
            "name": sub.name,
            "display_name": sub.display_name,
            "kind": sub.kind,
            "adapter": sub.adapter,
            "tasks": list(sub.tasks),
            "params": sub.params,
            "config": sub.config,
            "config_hash": sub.config_hash,
            "references": dict(sub.references),
        },
        "seeds": [u.seed for u in units],
        "units": [
            {
                "seed": u.seed,
                "status": u.status,
                "error": u.error,
                "timings": u.timings,
                "adapter_info": u.adapter_info,
            }
            for u in units
        ],
        "metrics": metrics,
        "lists": list_stats(ok_units, sub.tasks, params["depth"]),
        "significance": significance,
        "diagnostics": diagnostics,
        "environment": environment(),
        "timing": {
            "started_at": started_at,
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "total_s": round(total_s, 3),
        },
    }
    write_record_folder(
        folder,
        record,
        per_query=per_query,
        runs=runs,
        qrels=qrels,
        item_keys=[str(k) for k in catalogue.item_key],
    )
    return record


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


def _significance(
    runner, ds, seed_mean, params, Metric, my_seeds: list[int]
) -> tuple[dict[str, list], list[dict[str, Any]]]:
    """Paired t-tests of the headline metrics against each task's declared reference, Holm across all of them.

    Also returns a note per comparison that is missing (no usable reference record) or made over other seeds (the
    reference finished other seeds than this run): {"task", "reference", "missing": bool, "note"}. Never silently
    dropped.
    """
    from harness.metrics.significance import compare, paired_ttest
    from harness.protocol.decodings import record_decoding
    from harness.records.files import read_per_query
    from harness.records.validate import read_record

    notes: list[dict[str, Any]] = []
    rows: list[tuple[str, str, str, Any]] = []  # (task, reference, fingerprint, test)

    def note(task: str, reference: str, text: str, missing: bool = True) -> None:
        notes.append({"task": task, "reference": reference, "missing": missing, "note": text})

    for task, reference in sorted(runner.sub.references.items()):
        if task not in seed_mean:
            continue
        ref_folder = results_folder(runner.out_dir, ds.name, reference, runner.decoding)
        record_path = ref_folder / "record.json"
        if not record_path.is_file():
            note(task, reference, f"reference {reference!r} has no record for {ds.name} (decoding {runner.decoding}) "
                                  f"under {runner.out_dir}; "
                                  f"run `python -m harness run submissions/{runner.sub.name}` again (it runs its "
                                  f"references first) or `python -m harness run submissions/{reference}`")
            continue
        try:
            ref_record = read_record(record_path)
        except HarnessError as exc:
            note(task, reference, f"reference record unusable: {exc}")
            continue
        if ref_record["dataset"]["fingerprint"] != ds.fingerprint or ref_record["protocol"]["version"] != PROTOCOL_VERSION:
            note(task, reference,
                 f"reference {reference!r} was measured on another dataset fingerprint or protocol version")
            continue
        if record_decoding(ref_record) != runner.decoding:  # never one test across two decodings
            note(task, reference, f"reference {reference!r} was decoded with {record_decoding(ref_record)!r}, this "
                                  f"run with {runner.decoding!r}; not compared")
            continue
        ref_ok = sorted(u["seed"] for u in ref_record["units"] if u["status"] == "ok")
        failed = [u for u in ref_record["units"] if u["status"] != "ok"]
        if not ref_ok:
            error = failed[0]["error"] if failed else None
            why = f" ({error['type']}: {error['message']})" if error else ""
            note(task, reference, f"comparison missing: every seed of reference {reference!r} failed{why}")
            continue
        ref_means = _reference_means(read_per_query(ref_folder), task)
        if ref_means is None:
            note(task, reference, f"comparison missing: reference {reference!r} has no per-query scores for {task}")
            continue
        qids, means = seed_mean[task]
        ref_qids, ref_values = ref_means
        position = {q: i for i, q in enumerate(ref_qids)}
        if len(position) != len(qids) or any(q not in position for q in qids):
            note(task, reference, f"reference {reference!r} scored other queries; not compared")
            continue
        if ref_ok != my_seeds:
            note(task, reference, f"compared over different seeds: reference {reference!r} finished seeds {ref_ok}, "
                                  f"this submission {my_seeds}; each side is averaged over its own", missing=False)
        order = np.array([position[q] for q in qids])
        for segment in HEADLINE_SEGMENTS:
            name = str(Metric("R", params["headline_k"], segment))
            test = paired_ttest(means[name], ref_values[name][order], metric=name, alpha=params["alpha"])
            rows.append((task, reference, ref_record["dataset"]["fingerprint"], test))
    corrected = compare([r[3] for r in rows], alpha=params["alpha"]) if rows else []
    out: dict[str, list] = {}
    for (task, reference, fingerprint, _), test in zip(rows, corrected):
        entry = test.to_dict()
        entry.update({"reference": reference, "reference_fingerprint": fingerprint})
        out.setdefault(task, []).append(entry)
    return out, notes


def _reference_means(table, task: str) -> tuple[list[str], dict[str, np.ndarray]] | None:
    """Per-query values of one task averaged over the reference's seeds, keyed by metric name: the same averaging
    the gate reads records with (records.files.seed_averaged). None when the reference scored nothing for it."""
    import pyarrow.compute as pc

    from harness.records.files import seed_averaged

    if table is None or not pc.any(pc.equal(table["task"], task)).as_py():
        return None
    qids, values = seed_averaged(table, task)
    return list(qids), {str(metric): v for metric, v in values.items()}


def _reference_rankings(runner, ds, reference: str, seed: int, task: str) -> np.ndarray | None:
    """The reference's stored test rankings for one seed, if it finished that unit on this very dataset."""
    import json

    from harness.protocol.decodings import DEFAULT as DEFAULT_DECODING

    unit_dir = results_folder(runner.out_dir, ds.name, reference, runner.decoding) / "units" / f"seed{seed}"
    try:
        meta = json.loads((unit_dir / "unit.json").read_text())
        key = meta["key"]
        if meta["status"] != "ok" or key["fingerprint"] != ds.fingerprint or key["protocol_version"] != PROTOCOL_VERSION:
            return None
        if key.get("decoding", DEFAULT_DECODING) != runner.decoding:
            return None
        with np.load(unit_dir / "rankings.npz") as npz:
            return npz[task] if task in npz.files else None
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _diagnostics(runner, ds, ok_units, params) -> dict[str, Any]:
    """H1/H2/Table 8 (paper §7) of this submission against each task's reference, on the lowest seed both
    finished (per-query recall of that seed on both sides), so the two prediction lists come from one seed."""
    from harness.diagnostics.compute import TrainingCooccurrence, compute_diagnostics
    from harness.metrics.recall import recall_at_k
    from harness.metrics.measures import Metric

    out: dict[str, Any] = {}
    if not runner.sub.references or not ok_units:
        return out
    train = None
    cooc = None
    headline = Metric("R", params["headline_k"], "all")
    for task, reference in sorted(runner.sub.references.items()):
        for unit in ok_units:  # sorted by seed
            ref_rankings = _reference_rankings(runner, ds, reference, unit.seed, task)
            if ref_rankings is None or ref_rankings.shape != unit.rankings[task].shape:
                continue
            if train is None:
                train = ds.train_view()
                cooc = TrainingCooccurrence(train)
            qids, rel_offsets, rel_items = targets(ds, task)
            head = ds.catalogue().head(task)
            mine = recall_at_k(unit.rankings[task], rel_offsets, rel_items, head, [params["headline_k"]])[headline]
            theirs = recall_at_k(ref_rankings, rel_offsets, rel_items, head, [params["headline_k"]])[headline]
            requests = ds.rec_requests("test") if task == "rec" else ds.search_requests("test")
            result = compute_diagnostics(
                train, task, unit.rankings[task], ref_rankings, requests, rel_offsets, rel_items, mine, theirs,
                alpha=params["alpha"], cooccurrence=cooc,
            )
            result.update({"reference": reference, "seed": unit.seed})
            out[task] = result
            break
    return out
