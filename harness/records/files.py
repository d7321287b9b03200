"""A record folder: everything one (submission, dataset) result consists of, side by side.

    record.json           the result record (validated; written LAST)
    per_query.parquet     per-query metric values: columns task, seed, qid, then one float column per
                          metric name ("R@30", "R@30/head", ...); null where the query is not in the segment
    <task>.seed<k>.run    TREC run per task and seed: "qid Q0 docid rank score tag"
    <task>.qrels          TREC qrels per task: "qid 0 docid 1"
    <task>.head           the task's head item keys, one per line (schema 1.3): the head / torso segments of the
                          per-query values can be recomputed from the run and qrels files (python -m harness verify)

Rewriting a folder never leaves a record beside files it does not describe, and loses nothing on a
failure while writing: the writer validates the record, writes every file of the new record into a staging
folder beside it (`.NAME.record-PID-START-RANDOM`; a failure here removes it and leaves the folder and its
previous record untouched), moves what else the folder holds (the runner's units/) into it, and exchanges the two
folders in one atomic step (Linux's renameat2). At every instant the folder holds a complete record, the previous
one or the new one; a writer killed before the exchange leaves the previous record, and the next writer (or the
runner) moves back what it had moved out. Where folders cannot be exchanged, the staged files are swapped in one
by one after the old record.json is removed, so a folder holding record.json is still complete and one without
it was never finished (readers say so).

Run files use the dataset's own item keys as docids, so trec_eval, ranx or ir_measures line up with any
qrels written from the same dataset. Scores are `depth - position` (position 0 = best), strictly
decreasing down each list, so tools that re-sort by score keep our order; rank is position + 1. An
empty ranking writes no line for its query (TREC has no way to say "nothing"); the qrels still list the
query, and our own metrics score it 0.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.io import (
    atomic_path,
    exchange_paths,
    process_alive,
    process_start_time,
    remove_stale_temporaries,
    write_json_atomic,
    write_text_atomic,
)
from harness.metrics.measures import Metric
from harness.records.record import ResultRecord

if TYPE_CHECKING:
    import pyarrow

RECORD_FILE = "record.json"
PER_QUERY_FILE = "per_query.parquet"
KEY_COLUMNS = ("task", "seed", "qid")  # per_query.parquet's first columns; the rest are metrics
# Files this module owns inside a record folder (stale ones are removed when a record is rewritten).
_MANAGED = re.compile(r"^(?:per_query\.parquet|[a-z]+\.seed[0-9]+\.run|[a-z]+\.qrels|[a-z]+\.head)$")
_WHITESPACE = re.compile(r"\s")
_STAGED = ".staged"  # suffix of a data file staged inside the record folder (by writers before staging folders)
_STAGING = re.compile(r"^(?P<pid>[0-9]+)-(?P<start>[0-9]+)-[A-Za-z0-9_]+$")  # .NAME.record-PID-START-RANDOM

Runs = Mapping[str, Mapping[int, tuple[Sequence[str], np.ndarray]]]
Qrels = Mapping[str, tuple[Sequence[str], np.ndarray, np.ndarray]]


def run_file_name(task: str, seed: int) -> str:
    return f"{task}.seed{seed}.run"


def qrels_file_name(task: str) -> str:
    return f"{task}.qrels"


def head_file_name(task: str) -> str:
    return f"{task}.head"


def files_block(runs: Runs, qrels: Qrels, has_per_query: bool, heads: Mapping[str, Sequence[str]] | None = None) -> dict:
    """The record's "files" entry for what write_record_folder writes."""
    block = {
        "per_query": PER_QUERY_FILE if has_per_query else None,
        "runs": {
            task: [run_file_name(task, seed) for seed in sorted(by_seed)] for task, by_seed in sorted(runs.items())
        },
        "qrels": {task: qrels_file_name(task) for task in sorted(qrels)},
    }
    if heads:
        block["heads"] = {task: head_file_name(task) for task in sorted(heads)}
    return block


def write_record_folder(
    folder: str | Path,
    record: ResultRecord | dict,
    *,
    per_query: "pyarrow.Table | None",
    runs: Runs,
    qrels: Qrels,
    item_keys: np.ndarray,
    run_tag: str | None = None,
    heads: Mapping[str, Sequence[str]] | None = None,
) -> ResultRecord:
    """Validate, then write the folder (record.json last). Returns the record as written.

    runs[task][seed] = (query ids, rankings int [n, depth] padded with -1); qrels[task] = (query ids,
    rel_offsets, rel_items) in CSR form; ids index `item_keys` (the catalogue's item keys), which become
    the docids. heads[task] = the task's head item keys. The record's `files` block is filled in from these
    arguments (or must already match them; ResultRecord.without_files() gives a record read elsewhere without its
    own). `run_tag` defaults to the submission's name.
    """
    folder = Path(folder)
    data = record.to_dict() if isinstance(record, ResultRecord) else record
    files = files_block(runs, qrels, per_query is not None, heads)
    if "files" in data and data["files"] != files:
        raise HarnessError(
            f"{folder / RECORD_FILE}: $.files: {data['files']} does not match the files given: {files}"
        )
    written = ResultRecord.from_dict({**data, "files": files}, source=str(folder / RECORD_FILE))
    tag = run_tag if run_tag is not None else written.submission.name
    _check_no_whitespace([tag], what="run tag")
    item_keys = np.asarray(item_keys, dtype=object)
    if per_query is not None:
        _check_per_query_columns(per_query, source="per_query table")

    folder.mkdir(parents=True, exist_ok=True)
    recover_record_folder(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.record-{os.getpid()}-{process_start_time(os.getpid()) or 0}-",
                                    dir=folder.parent))
    try:
        staged = _stage_files(staging, per_query, runs, qrels, item_keys, tag, heads or {})
        write_json_atomic(staging / RECORD_FILE, written.to_dict())
        if not _exchange_in(staging, folder):  # no atomic exchange here: the files are swapped in one by one
            _commit(folder, staged, written.to_dict())
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange: the previous record's files
    return written


def recover_record_folder(folder: str | Path) -> None:
    """Undo what a writer killed mid-way left: put back into `folder` what it had moved out (the runner's units/),
    remove its staging folder, its staged and its temporary files. Writers of other, live processes are left be."""
    folder = Path(folder)
    prefix = f".{folder.name}.record-"
    if folder.parent.is_dir():
        for staging in sorted(folder.parent.iterdir()):
            match = _STAGING.match(staging.name[len(prefix):]) if staging.name.startswith(prefix) else None
            if match is None or not staging.is_dir() or process_alive(int(match["pid"]), int(match["start"])):
                continue
            for entry in sorted(staging.iterdir()):
                if not _is_record_file(entry.name) and not (folder / entry.name).exists():
                    os.rename(entry, folder / entry.name)
            shutil.rmtree(staging, ignore_errors=True)
    if folder.is_dir():
        for leftover in folder.glob(f".*{_STAGED}"):  # the in-place commit's, from a writer killed mid-way
            leftover.unlink()
        remove_stale_temporaries(folder)


def _is_record_file(name: str) -> bool:
    return name == RECORD_FILE or bool(_MANAGED.match(name)) or name.startswith(".")


def _exchange_in(staging: Path, folder: Path) -> bool:
    """Make `staging` (the new record's files) the record folder in one atomic step: what else the folder holds (the
    runner's units/) moves into staging first, then the two folders are exchanged (harness.io.exchange_paths). A kill
    before the exchange leaves the previous record complete, and recover_record_folder moves the rest back. False,
    with everything put back, where the system cannot exchange two folders."""
    moved = [entry.name for entry in sorted(folder.iterdir()) if not _is_record_file(entry.name)]
    for name in moved:
        os.rename(folder / name, staging / name)
    if exchange_paths(staging, folder):
        return True
    for name in moved:
        os.rename(staging / name, folder / name)
    return False


def read_record_folder(folder: str | Path) -> ResultRecord:
    """The validated record of a complete folder; HarnessError if it is incomplete or a named file is missing."""
    folder = Path(folder)
    if not (folder / RECORD_FILE).exists():
        raise HarnessError(f"{folder}: no {RECORD_FILE}: the record was never written or its writing was interrupted")
    record = ResultRecord.read(folder / RECORD_FILE)
    for name in sorted(record.files.names()):
        if not (folder / name).is_file():
            raise HarnessError(f"{folder / RECORD_FILE}: $.files names {name!r}, which is not in {folder}")
    return record


def _stage_files(staging: Path, per_query, runs: Runs, qrels: Qrels, item_keys: np.ndarray, tag: str,
                 heads: Mapping[str, Sequence[str]]) -> dict:
    """Write every data file, under its final name, into the staging folder; {final name: its path there}.

    This is the slow part, where a full disk or a bad input can fail: if it does, the staging folder is removed
    and the record folder, with its previous record, is exactly as it was."""
    staged: dict[str, Path] = {}

    def stage(name: str) -> Path:
        staged[name] = staging / name
        return staged[name]

    try:
        if per_query is not None:
            _write_parquet(stage(PER_QUERY_FILE), per_query)
        for task, by_seed in runs.items():
            for seed, (qids, rankings) in by_seed.items():
                write_trec_run(stage(run_file_name(task, seed)), qids, rankings, item_keys, tag)
        for task, (qids, rel_offsets, rel_items) in qrels.items():
            write_trec_qrels(stage(qrels_file_name(task)), qids, rel_offsets, rel_items, item_keys)
        for task, keys in heads.items():
            _check_no_whitespace(keys, what="item key")
            write_text_atomic(stage(head_file_name(task)), "".join(f"{key}\n" for key in sorted(map(str, keys))))
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    return staged


def _commit(folder: Path, staged: dict[str, Path], record: dict) -> None:
    """Where folders cannot be exchanged atomically: swap the staged files in and write record.json last.

    The old record.json goes first, so that should this short run of renames be interrupted, the folder
    has no record.json (incomplete) rather than an old record beside new files. Files of the old record
    that the new one does not name are removed."""
    (folder / RECORD_FILE).unlink(missing_ok=True)
    for path in folder.iterdir():
        if path.is_file() and _MANAGED.match(path.name) and path.name not in staged:
            path.unlink()
    for name, path in staged.items():
        _move_into_place(path, folder / name)
    write_json_atomic(folder / RECORD_FILE, record)


def _move_into_place(staged: Path, final: Path) -> None:
    os.replace(staged, final)  # atomic on one file system: a reader sees the old file or the new one


# --- per-query Parquet --------------------------------------------------------------------------------


def per_query_table(task: str, seed: int, qids: Sequence[str], values: Mapping[Metric, np.ndarray]) -> "pyarrow.Table":
    """One (task, seed)'s per-query values as a table; concatenate several with pyarrow.concat_tables."""
    import pyarrow as pa

    n = len(qids)
    columns = {
        "task": pa.array([task] * n, pa.string()),
        "seed": pa.array(np.full(n, seed, dtype=np.int64)),
        "qid": pa.array([str(q) for q in qids], pa.string()),
    }
    for metric in sorted(values):
        column = np.asarray(values[metric], dtype=np.float64)
        if column.shape != (n,):
            raise HarnessError(f"per-query values of {metric}: shape {column.shape}, expected ({n},) for {n} query ids")
        columns[str(metric)] = pa.array(column, pa.float64(), mask=np.isnan(column))  # NaN -> null
    return pa.table(columns)


def read_per_query(folder: str | Path) -> "pyarrow.Table":
    """The folder's per-query table, with its columns checked."""
    import pyarrow.parquet as pq

    path = Path(folder) / PER_QUERY_FILE
    if not path.is_file():
        raise HarnessError(f"{path}: no per-query file")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise HarnessError(f"{path}: cannot read the per-query Parquet file ({exc})") from None
    _check_per_query_columns(table, source=str(path))
    return table


def _check_per_query_columns(table: "pyarrow.Table", *, source: str) -> None:
    import pyarrow as pa

    names = table.column_names
    if tuple(names[:3]) != KEY_COLUMNS:
        raise HarnessError(f"{source}: the first columns must be {list(KEY_COLUMNS)}, got {names[:3]}")
    for name in names[3:]:
        try:
            Metric.parse(name)
        except HarnessError as err:
            raise HarnessError(f"{source}: column {name!r} is not a metric name ({err})") from None
        if not pa.types.is_floating(table.schema.field(name).type):
            raise HarnessError(f"{source}: column {name!r} has type {table.schema.field(name).type}, expected float")


def _write_parquet(path: Path, table: "pyarrow.Table") -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


# --- TREC files ------------------------------------------------------------------------------------


def write_trec_run(
    path: str | Path, qids: Sequence[str], rankings: np.ndarray, item_keys: np.ndarray, tag: str
) -> None:
    """Write "qid Q0 docid rank score tag" lines, queries in the given order, each list best first.

    rankings: int [n, depth] of item ids padded with -1; docid = item_keys[id]; rank = position + 1;
    score = depth - position. Padding writes nothing (an empty ranking writes no line).
    """
    import pyarrow as pa

    rankings = np.asarray(rankings)
    if rankings.ndim != 2 or len(qids) != rankings.shape[0]:
        raise HarnessError(f"{path}: {len(qids)} query ids for rankings of shape {rankings.shape}")
    item_keys = np.asarray(item_keys, dtype=object)
    _check_ids(rankings[rankings >= 0], len(item_keys), path)
    _check_no_whitespace(qids, what="query id")
    _check_no_whitespace([tag], what="run tag")
    _check_no_whitespace(item_keys[np.unique(rankings[rankings >= 0])], what="item key")
    row, position = np.nonzero(rankings >= 0)  # row-major: each query's items in rank order
    n_lines, depth = len(row), rankings.shape[1]
    table = pa.table(
        {
            "qid": _strings(qids).take(pa.array(row)),
            "q0": pa.array(np.full(n_lines, "Q0", dtype=object), pa.string()),
            "docid": _strings(item_keys).take(pa.array(rankings[row, position])),
            "rank": pa.array(position + 1),
            "score": pa.array(depth - position),
            "tag": pa.array(np.full(n_lines, tag, dtype=object), pa.string()),
        }
    )
    _write_space_separated(path, table)


def write_trec_qrels(
    path: str | Path, qids: Sequence[str], rel_offsets: np.ndarray, rel_items: np.ndarray, item_keys: np.ndarray
) -> None:
    """Write "qid 0 docid 1" lines: every relevant item of every query (CSR rel_offsets / rel_items)."""
    import pyarrow as pa

    rel_offsets = np.asarray(rel_offsets, dtype=np.int64)
    rel_items = np.asarray(rel_items)
    if rel_offsets.shape != (len(qids) + 1,) or rel_offsets[-1] != len(rel_items):
        raise HarnessError(f"{path}: {len(qids)} query ids for rel_offsets of shape {rel_offsets.shape}")
    item_keys = np.asarray(item_keys, dtype=object)
    _check_ids(rel_items, len(item_keys), path)
    _check_no_whitespace(qids, what="query id")
    _check_no_whitespace(item_keys[np.unique(rel_items)], what="item key")
    row = np.repeat(np.arange(len(qids)), np.diff(rel_offsets))
    n_lines = len(row)
    table = pa.table(
        {
            "qid": _strings(qids).take(pa.array(row)),
            "iter": pa.array(np.zeros(n_lines, dtype=np.int64)),
            "docid": _strings(item_keys).take(pa.array(rel_items.astype(np.int64))),
            "rel": pa.array(np.ones(n_lines, dtype=np.int64)),
        }
    )
    _write_space_separated(path, table)


def _write_space_separated(path: str | Path, table: "pyarrow.Table") -> None:
    from pyarrow import csv

    options = csv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none")
    with atomic_path(path) as tmp:
        csv.write_csv(table, tmp, write_options=options)


def _strings(values: Sequence[str]) -> "pyarrow.Array":
    import pyarrow as pa

    return pa.array([str(v) for v in values], pa.string())


def _check_ids(ids: np.ndarray, n_items: int, path: str | Path) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        bad = ids[(ids < 0) | (ids >= n_items)][0]
        raise HarnessError(f"{path}: item id {int(bad)} is outside the catalogue of {n_items} item keys")


def _check_no_whitespace(values, *, what: str) -> None:
    """TREC files are whitespace-separated: a key holding a space or tab would shift every later column."""
    for value in values:
        text = str(value)
        if not text or _WHITESPACE.search(text):
            raise HarnessError(f"{what} {text!r} is empty or contains whitespace; TREC files cannot hold it")
