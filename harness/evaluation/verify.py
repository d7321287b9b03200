"""Verify a record folder: recompute every number it states from the files beside it, never trust it.

    verification = verify_record_folder(folder)      # python -m harness verify FOLDER...
    verification.ok, verification.mismatches[0]     # "record.json: $.metrics.rec['R@10'].mean: stored 0.99, recomputed 0.312"

What is recomputed, from what (each step only where its inputs are in the folder; what could not be checked is
listed in `unverified`, never passed over silently):

1. every per-query value of per_query.parquet, from the TREC run files and qrels (the `all` segment always; head and
   torso where the record lists its head items, `files.heads`, schema 1.3), and the mean number of items per list
   (`lists`) from the run files;
2. every value of `metrics` (per seed, over seeds, and the segment sizes n) from per_query.parquet;
3. every row of `significance` from the per-query values of the record and of its reference's record (found in the
   runner's layout beside it, or under `root`), Holm across the record's rows as the writer does; without the
   reference's record, the rows are checked for what they say of the record itself (its mean, Holm over its p-values,
   `significant`).

Steps 2 and 3 aggregate with harness.records.per_query, the writer's own code, in the writer's order: a record of this
harness gives its numbers back bit for bit. Numbers agree within 1e-9 all the same, for records written by earlier
versions (which averaged seeds in another order); counts, seeds and verdicts exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from harness.errors import HarnessError
from harness.evaluation.comparison import paired_tests
from harness.metrics.measures import Metric, registry
from harness.metrics.scoring import score
from harness.metrics.significance import compare, holm
from harness.records.files import KEY_COLUMNS, RECORD_FILE, read_per_query, read_record_folder
from harness.records.per_query import metrics_blocks, over_seeds, per_query_frame, query_means
from harness.records.provenance import results_folder
from harness.records.record import ResultRecord

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Mismatch:
    """A stated number that the files do not give back."""

    file: str  # the file holding the wrong value (record.json or per_query.parquet), as a path
    field: str  # where in it: a JSON path, or a column and a query
    stored: Any
    recomputed: Any

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: stored {_show(self.stored)}, recomputed {_show(self.recomputed)}"


@dataclass
class Verification:
    folder: Path
    record: ResultRecord | None = None  # the record read (and validated) from the folder
    mismatches: list[Mismatch] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was recomputed, in words
    unverified: list[str] = field(default_factory=list)  # what could not be, and why

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify_record_folder(folder: str | Path, *, root: str | Path | None = None,
                         also: Sequence[str | Path] = ()) -> Verification:
    """Recompute what the record in `folder` states. HarnessError when the folder is not a readable, valid record;
    a Verification (with its mismatches) otherwise. `root`: where to look for reference records (default: the
    results root of the runner's layout, two folders up); `also`: more results roots tried after it (the published
    results, whose records a run may have been compared with: harness.evaluation.published)."""
    folder = Path(folder)
    record = read_record_folder(folder)
    result = Verification(folder, record)
    table = None
    if record.files.per_query is not None:
        table = read_per_query(folder)
        _check_trec_files(record, folder, table, result)
        _check_metrics(record, folder, table, result)
    else:
        _check_metrics_without_values(record, folder, result)
    roots = [Path(root) if root is not None else folder.parent.parent, *(Path(r) for r in also)]
    _check_significance(record, folder, table, roots, result)
    return result


# ---- 1. per-query values and lists from the TREC files ---------------------------------------------------------


def _check_trec_files(record: ResultRecord, folder: Path, table: pa.Table, result: Verification) -> None:
    known = [code for code in record.measures if code in registry()]
    if len(known) < len(record.measures):
        result.unverified.append(f"measures this harness does not know: {sorted(set(record.measures) - set(known))}")
    for task, runs in sorted(record.files.runs.items()):
        if task not in record.files.qrels:
            result.unverified.append(f"{task}: run files without qrels")
            continue
        qids, offsets, doc_ids = _read_qrels(folder / record.files.qrels[task])
        head_file = record.files.heads.get(task)
        heads = _read_lines(folder / head_file) if head_file else None
        segments = ("all", "head", "torso") if heads is not None else ("all",)
        if heads is None:
            result.unverified.append(f"{task}: head and torso per-query values (no head item list: schema < 1.3)")
        for run_name in runs:
            seed = int(run_name.rsplit(".seed", 1)[1].split(".")[0])
            run_qids, run_docs, ranks = _read_run(folder / run_name)
            vocabulary, (items, ranked) = _encode(doc_ids, run_docs)
            is_head = np.isin(vocabulary, np.asarray(sorted(heads), dtype=object)) if heads else np.zeros(len(vocabulary), bool)
            rankings = _rankings(qids, run_qids, ranked, ranks, folder / run_name)
            values = score(rankings, offsets, items, is_head, record.params.ks, known)
            stored = _per_query_rows(table, task, seed)
            _compare_values(values, segments, qids, stored, folder, task, seed, result)
            _check_lists(record, folder, task, seed, rankings, result)
        result.checked.append(f"{task}: per-query values of {len(runs)} seed(s) from the run and qrels files")


def _read_qrels(path: Path) -> tuple[list[str], np.ndarray, pa.Array]:
    rows = _read_space_separated(path, ["qid", "iter", "docid", "rel"])
    qid = rows["qid"].to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]]) if len(qid) else np.zeros(0, np.int64)
    offsets = np.r_[starts, len(qid)].astype(np.int64)
    return [str(q) for q in qid[starts]], offsets, rows["docid"]


def _read_run(path: Path) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    rows = _read_space_separated(path, ["qid", "q0", "docid", "rank", "score", "tag"])
    return rows["qid"].to_numpy(zero_copy_only=False), rows["docid"], rows["rank"].to_numpy().astype(np.int64)


def _read_space_separated(path: Path, names: list[str]) -> pa.Table:
    types = {name: pa.string() for name in names if name in ("qid", "docid", "q0", "tag")}
    try:
        if path.stat().st_size == 0:  # a run that retrieved nothing for any query (BM25 with no shared words)
            return pa.table({name: pa.array([], type=types.get(name, pa.int64())) for name in names})
        return csv.read_csv(path, read_options=csv.ReadOptions(column_names=names),
                            parse_options=csv.ParseOptions(delimiter=" "),
                            convert_options=csv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, OSError) as exc:
        raise HarnessError(f"{path}: cannot read it as a TREC file ({exc})") from None


def _read_lines(path: Path) -> set[str]:
    return {line for line in path.read_text(encoding="utf-8").splitlines() if line}


def _encode(doc_ids: pa.Array, run_docs: pa.Array) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """One integer id per docid over both files: (the docids by id, (qrels ids, run ids))."""
    docs = pa.concat_arrays([_flat(doc_ids), _flat(run_docs)]).dictionary_encode()
    ids = docs.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return docs.dictionary.to_numpy(zero_copy_only=False), (ids[: len(doc_ids)], ids[len(doc_ids):])


def _flat(array) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _rankings(qids: list[str], run_qids: np.ndarray, ranked: np.ndarray, ranks: np.ndarray, path: Path) -> np.ndarray:
    row_of = {q: i for i, q in enumerate(qids)}
    unknown = [q for q in set(run_qids.tolist()) if q not in row_of]
    if unknown:
        raise HarnessError(f"{path}: query {sorted(unknown)[0]!r} is not in the qrels")
    depth = int(ranks.max()) if len(ranks) else 0
    if len(ranks) and ranks.min() < 1:
        raise HarnessError(f"{path}: rank {int(ranks.min())} is below 1")
    rankings = np.full((len(qids), depth), -1, dtype=np.int64)
    rankings[np.fromiter((row_of[q] for q in run_qids), np.int64, len(run_qids)), ranks - 1] = ranked
    return rankings


def _per_query_rows(table: pa.Table, task: str, seed: int) -> pa.Table:
    return table.filter(pc.and_(pc.equal(table["task"], task), pc.equal(table["seed"], seed)))


def _compare_values(values, segments, qids, stored: pa.Table, folder: Path, task: str, seed: int,
                    result: Verification) -> None:
    file = str(folder / "per_query.parquet")
    if stored.num_rows != len(qids) or set(stored["qid"].to_pylist()) != set(qids):
        result.mismatches.append(Mismatch(file, f"rows of task {task!r}, seed {seed}", f"{stored.num_rows} queries",
                                          f"{len(qids)} queries in the qrels"))
        return
    row_of = {q: j for j, q in enumerate(stored["qid"].to_pylist())}
    position = np.fromiter((row_of[q] for q in qids), np.int64, len(qids))  # stored rows in the qrels' query order
    for metric, recomputed in sorted(values.items()):
        if metric.segment not in segments:
            continue
        name = str(metric)
        if name not in stored.column_names:
            result.mismatches.append(Mismatch(file, f"column {name!r}", "absent", "present in the recomputation"))
            continue
        column = stored[name].to_numpy(zero_copy_only=False).astype(np.float64)[position]
        bad = ~_close(column, recomputed)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            result.mismatches.append(Mismatch(file, f"{name} of query {qids[i]!r} ({task}, seed {seed})",
                                              _number(column[i]), _number(recomputed[i])))


def _check_lists(record: ResultRecord, folder: Path, task: str, seed: int, rankings: np.ndarray,
                 result: Verification) -> None:
    lists = record.lists.get(task)
    if lists is None or seed not in lists.per_seed:
        return
    recomputed = float((rankings >= 0).sum(axis=1).mean()) if len(rankings) else None
    stored = lists.per_seed[seed]
    if not _same(stored, recomputed):
        result.mismatches.append(Mismatch(str(folder / RECORD_FILE), f"$.lists.{task}.per_seed['{seed}']", stored,
                                          recomputed))


# ---- 2. metrics from the per-query values ------------------------------------------------------------------------


def _check_metrics(record: ResultRecord, folder: Path, table: pa.Table, result: Verification) -> None:
    file = str(folder / RECORD_FILE)
    columns = {name for name in table.column_names if name not in KEY_COLUMNS}
    recomputed = metrics_blocks(per_query_frame(table))  # what the writer computes, from the file instead of memory
    for task, block in record.metrics.items():
        stored_rows = table.filter(pc.equal(table["task"], task))
        seeds = sorted(set(stored_rows["seed"].to_pylist()))
        if seeds != sorted(record.ok_seeds):
            result.mismatches.append(Mismatch(file, f"$.units (task {task})", f"finished seeds {sorted(record.ok_seeds)}",
                                              f"seeds {seeds} in per_query.parquet"))
        for name, value in sorted(block.items()):
            path = f"$.metrics.{task}['{name}']"
            if name not in columns:
                result.mismatches.append(Mismatch(file, path, value.mean, "no such column in per_query.parquet"))
                continue
            fresh = recomputed.get(task, {}).get(name, {"mean": None, "n": 0, "per_seed": {}})
            if fresh["n"] != value.n:
                result.mismatches.append(Mismatch(file, f"{path}.n", value.n, fresh["n"]))
            if not _same(value.mean, fresh["mean"]):
                result.mismatches.append(Mismatch(file, f"{path}.mean", value.mean, fresh["mean"]))
            for seed, stored in sorted(value.per_seed.items()):
                recomputed_seed = fresh["per_seed"].get(str(seed))
                if not _same(stored, recomputed_seed):
                    result.mismatches.append(Mismatch(file, f"{path}.per_seed['{seed}']", stored, recomputed_seed))
        missing = sorted(columns - set(block))
        if missing:
            result.unverified.append(f"{task}: per-query columns the record states no metric for: {missing[:3]}")
    result.checked.append(f"metrics of {len(record.metrics)} task(s) from per_query.parquet")


def _check_metrics_without_values(record: ResultRecord, folder: Path, result: Verification) -> None:
    """No per-query values: only what the record says of itself (the mean is the mean of the per-seed means)."""
    if record.metrics:
        result.unverified.append("metrics: the record has no per-query values to recompute them from")
    per_seed = pl.DataFrame([(task, name, seed, mean) for task, block in record.metrics.items()
                             for name, value in block.items() for seed, mean in value.per_seed.items()],
                            schema={"task": pl.String, "metric": pl.String, "seed": pl.Int64, "value": pl.Float64},
                            orient="row")
    for task, name, _, mean, _ in over_seeds(per_seed, ["task", "metric"]).iter_rows():
        stored = record.metrics[task][name].mean
        if not _same(stored, mean):
            result.mismatches.append(Mismatch(str(folder / RECORD_FILE), f"$.metrics.{task}['{name}'].mean", stored,
                                              mean))


# ---- 3. significance ---------------------------------------------------------------------------------------------


_TEST_FIELDS = ("n", "mean", "reference_mean", "diff", "ci_low", "ci_high", "t", "p", "p_holm", "significant")


def _check_significance(record: ResultRecord, folder: Path, table: pa.Table | None, roots: list[Path],
                        result: Verification) -> None:
    rows = [(task, row) for task in sorted(record.significance) for row in record.significance[task]]
    if not rows:
        return
    file = str(folder / RECORD_FILE)
    recomputed = _recompute_tests(record, table, roots, rows, result)
    if recomputed is None:  # what the rows say of the record itself
        adjusted = holm([math.nan if row.p is None else row.p for _, row in rows])
        for i, ((task, row), p_holm) in enumerate(zip(rows, adjusted)):
            path = f"$.significance.{task}[{[r for t, r in rows if t == task].index(row)}]"
            if not _same(row.p_holm, None if math.isnan(p_holm) else float(p_holm)):
                result.mismatches.append(Mismatch(file, f"{path}.p_holm", row.p_holm, float(p_holm)))
            if row.p_holm is not None and row.significant != (row.p_holm < row.alpha):
                result.mismatches.append(Mismatch(file, f"{path}.significant", row.significant,
                                                  row.p_holm < row.alpha))
            metric = record.metric(task, row.metric)
            if metric is not None and not _same(row.mean, metric.mean):
                result.mismatches.append(Mismatch(file, f"{path}.mean", row.mean, metric.mean))
        return
    for (task, row), test in zip(rows, recomputed):
        path = f"$.significance.{task}[{[r for t, r in rows if t == task].index(row)}]"
        fresh = test.to_dict()
        for name in _TEST_FIELDS:
            if not _same(getattr(row, name), fresh[name]):
                result.mismatches.append(Mismatch(file, f"{path}.{name}", getattr(row, name), fresh[name]))
                break
    result.checked.append(f"{len(rows)} significance test(s) from the per-query values of both records")


def _reference_values(record: ResultRecord, reference: str, roots: list[Path]):
    """(folder, per-query table) of the first usable record of `reference` on the record's dataset fingerprint under
    `roots`, or (None, None)."""
    for root in roots:
        ref_folder = results_folder(root, record.dataset.name, reference, record.params.decoding)
        try:
            ref_record = read_record_folder(ref_folder)
            ref_table = read_per_query(ref_folder) if ref_record.files.per_query else None
        except HarnessError:
            continue
        if ref_table is not None and ref_record.dataset.fingerprint == record.dataset.fingerprint:
            return ref_folder, ref_table
    return None, None


def _recompute_tests(record: ResultRecord, table, roots: list[Path], rows, result: Verification):
    """The record's tests recomputed (Holm across all of them), or None when a reference's values are missing."""
    if table is None:
        result.unverified.append("significance: no per-query values of this record")
        return None
    fresh = []
    for task in sorted(record.significance):
        names = [row.metric for row in record.significance[task]]
        reference = record.significance[task][0].reference
        ref_folder, ref_table = _reference_values(record, reference, roots)
        if ref_table is None:
            where = " or ".join(str(r) for r in roots)
            result.unverified.append(f"significance: the reference {reference!r} has no usable record under {where} "
                                     "(checked for what the rows say of this record only)")
            return None
        metrics = [Metric.parse(n) for n in names]
        values, ref_values = (query_means(per_query_frame(t, metrics=metrics).filter(task=task))
                              for t in (table, ref_table))
        tests, missing = paired_tests(values, ref_values, metrics, alpha=record.significance[task][0].alpha,
                                      source=str(record.source), reference_source=str(ref_folder))
        if missing:
            result.unverified.append(f"significance: {[str(m) for m in missing]} missing from a per-query file")
            return None
        fresh.extend(tests)
    return compare(fresh, alpha=rows[0][1].alpha)


# ---- numbers -----------------------------------------------------------------------------------------------------


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | (np.abs(a - b) <= TOLERANCE)


def _same(stored: Any, recomputed: Any) -> bool:
    if isinstance(stored, bool) or isinstance(recomputed, bool) or stored is None or recomputed is None:
        return stored == recomputed
    if isinstance(stored, int) and isinstance(recomputed, int):
        return stored == recomputed
    a, b = float(stored), float(recomputed)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)
