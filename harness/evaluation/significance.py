"""A record's significance block: paired t-tests of the headline metrics against each task's declared reference,
Holm across all of them (the paper's ‡).

The reference's record is looked up in the results folder under the same decoding; it must be measured on the same
dataset fingerprint and protocol version. A comparison that cannot be made is never silently dropped: it leaves a
note {"task", "reference", "missing": true, "note"}; one made over other seeds than the submission's leaves a note
with "missing": false.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import polars as pl
import pyarrow.compute as pc

from harness.errors import HarnessError
from harness.evaluation.comparison import paired_tests
from harness.evaluation.scoring import headline_metrics
from harness.metrics.significance import compare
from harness.records.files import read_per_query
from harness.records.per_query import ROW_KEYS, per_query_frame, query_means
from harness.records.provenance import PROTOCOL_VERSION, results_folder
from harness.records.record import ResultRecord


def significance(*, sub, ds, decoding: str, out_dir: Path, values: pl.DataFrame | None, params: dict[str, Any],
                 my_seeds: list[int], reference_folders: Mapping[str, Path] | None = None
                 ) -> tuple[dict[str, list], list[dict[str, Any]]]:
    """({task: [test rows]}, comparison notes). `values`: the submission's per-query values (per_query_frame of
    harness.records.per_query; None when no unit finished). `reference_folders`: {reference: its record folder} for
    references read from elsewhere than `out_dir` (published records, harness.evaluation.published)."""
    notes: list[dict[str, Any]] = []
    rows: list[tuple[str, str, str, Any]] = []  # (task, reference, fingerprint, test)
    metrics = headline_metrics(params["headline_k"])
    tested = None if values is None else values.select(*ROW_KEYS, *(name for name in map(str, metrics)
                                                                    if name in values.columns))
    tasks = set() if tested is None else set(tested.get_column("task").unique())
    for task, reference in sorted(sub.references.items()):
        if task not in tasks:
            continue
        folder = (reference_folders or {}).get(reference) or results_folder(out_dir, ds.name, reference, decoding)
        found = _reference_scores(sub, ds, decoding, out_dir, folder, task, reference, my_seeds, metrics)
        if isinstance(found, dict):
            notes.append(found)
            continue
        fingerprint, ref_values, seeds_note = found
        try:
            tests, _ = paired_tests(query_means(tested.filter(task=task)), ref_values, metrics, alpha=params["alpha"],
                                    source=sub.name, reference_source=reference)
        except HarnessError:
            notes.append(_note(task, reference, f"reference {reference!r} scored other queries; not compared"))
            continue
        if seeds_note is not None:
            notes.append(seeds_note)
        rows.extend((task, reference, fingerprint, test) for test in tests)
    corrected = compare([r[3] for r in rows], alpha=params["alpha"]) if rows else []
    out: dict[str, list] = {}
    for (task, reference, fingerprint, _), test in zip(rows, corrected):
        entry = test.to_dict()
        entry.update({"reference": reference, "reference_fingerprint": fingerprint})
        out.setdefault(task, []).append(entry)
    return out, notes


def _note(task: str, reference: str, text: str, missing: bool = True) -> dict[str, Any]:
    return {"task": task, "reference": reference, "missing": missing, "note": text}


def _reference_scores(sub, ds, decoding, out_dir, folder, task, reference, my_seeds, metrics):
    """(fingerprint, the seed-averaged values of `metrics` (query_means), a note on other seeds or None) of the
    reference's record in `folder`, or the note saying why there is none to compare with."""
    if not (folder / "record.json").is_file():
        return _note(task, reference, f"reference {reference!r} has no record for {ds.name} (decoding {decoding}) "
                                      f"under {out_dir}; run `python -m harness run submissions/{sub.name}` again (it "
                                      f"runs its references first) or `python -m harness run submissions/{reference}`")
    try:
        record = ResultRecord.read(folder / "record.json")
    except HarnessError as exc:
        return _note(task, reference, f"reference record unusable: {exc}")
    if record.dataset.fingerprint != ds.fingerprint or record.protocol_version != PROTOCOL_VERSION:
        return _note(task, reference,
                     f"reference {reference!r} was measured on another dataset fingerprint or protocol version")
    if record.params.decoding != decoding:  # never one test across two decodings
        return _note(task, reference, f"reference {reference!r} was decoded with {record.params.decoding!r}, this "
                                      f"run with {decoding!r}; not compared")
    ref_ok = sorted(record.ok_seeds)
    if not ref_ok:
        failed = [u for u in record.units if not u.ok]
        error = failed[0].error if failed else None
        why = f" ({error.type}: {error.message})" if error else ""
        return _note(task, reference, f"comparison missing: every seed of reference {reference!r} failed{why}")
    table = read_per_query(folder)
    if not pc.any(pc.equal(table["task"], task)).as_py():
        return _note(task, reference, f"comparison missing: reference {reference!r} has no per-query scores for {task}")
    values = per_query_frame(table, dataset=ds.name, submission=reference, metrics=metrics).filter(task=task)
    seeds_note = None
    if ref_ok != my_seeds:
        seeds_note = _note(task, reference, f"compared over different seeds: reference {reference!r} finished seeds "
                                            f"{ref_ok}, this submission {my_seeds}; each side is averaged over its own",
                           missing=False)
    return record.dataset.fingerprint, query_means(values), seeds_note
