"""Compile any Source into the canonical tables and the paper's splits: one DuckDB file with a fingerprint.

The pipeline (all DuckDB SQL, no Python loops over rows; see docs/datasets.md for the full rules):

1. the source creates raw_items / raw_interactions / raw_queries / raw_qrels (harness.data.sources.base);
2. one filtering pass: keep items present in both tasks (an interaction and a qrel), then users with at
   least `min_user_interactions` of those interactions, then queries with at least one relevant kept item;
3. recommendation: per user with t interactions ordered by (ts, seq, item): test = position t, validation
   = t-1, training targets = t-2 down to 3 (stored as prefix lengths: history = positions 1..target_pos-1);
4. search: the source's fixed split, else md5(split_seed || ':' || query_key) order -> test, valid, train;
5. evaluation targets must be training targets of the same task (dropped and counted otherwise);
6. popularity per task over the training part, head = top max(1, ceil(head_fraction * n_items)) items;
7. statistics (Table 3), fingerprint, content digest (harness.data.integrity), manifest; written to a temporary
   file beside the destination and renamed into place (harness.data.scratch: a killed build leaves the previous
   good file untouched, and the next build removes what it left).

This module runs the pipeline and writes the file; the split parameters are in harness.data.split_params, the
SQL stages (2-6) in harness.data.stages, the manifest and the up-to-date check in harness.data.manifest. An existing
file is reused only when it is up to date and still verifies (a damaged one is rebuilt, BuildOutcome.damaged says
why).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

import harness
from harness import settings
from harness.data.fingerprint import FORMAT_VERSION, compute_fingerprint
from harness.data.integrity import DamagedDatasetError, content_digest, verify_file
from harness.data.manifest import local_files, up_to_date_fingerprint, write_manifest
from harness.data.scratch import compile_target, remove_debris
from harness.data.sources import SOURCES
from harness.data.sources.base import SourceContext
from harness.data.spec import DatasetSpec
from harness.data.split_params import SplitParams
from harness.data.stages import STAGES, check_not_empty, check_raw_tables, scalar, table_counts
from harness.data.stats import stats_from_connection
from harness.data.store import dataset_path
from harness.errors import HarnessError

# FORMAT_VERSION lives in fingerprint.py (store.py checks it without importing this module); importable here too.


# --------------------------------------------------------------------------------------------------
# Entry points


@dataclass
class BuildOutcome:
    path: Path
    fingerprint: str
    skipped: bool  # an up-to-date build was already there
    manifest: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    damaged: str = ""  # why the file that was there was not reused (it was rebuilt): edited, truncated, unreadable
    removed: list[Path] = field(default_factory=list)  # leftovers of killed compiles removed first


def build_dataset(
    spec: DatasetSpec | str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    allow_download: bool = True,
    force: bool = False,
) -> Path:
    """Compile `spec` into <cache>/datasets/<slug>.duckdb (skipped when an up-to-date build exists)."""
    return compile_dataset(
        spec, data_dir=data_dir, cache_dir=cache_dir, path=path, allow_download=allow_download, force=force
    ).path


def compile_dataset(
    spec: DatasetSpec | str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    allow_download: bool = True,
    force: bool = False,
    dest: str | os.PathLike | None = None,
    source: Any = None,
) -> BuildOutcome:
    """Like build_dataset, with details. `dest` overrides the output file and `source` the registry lookup
    (benchmarks and tests compile hand-made sources this way)."""
    spec = DatasetSpec.parse(spec) if isinstance(spec, str) else spec
    if source is None:
        source = SOURCES.load(spec.name)
    split, source_params = SplitParams.from_spec(spec)
    ctx = SourceContext(
        data_dir=settings.data_dir(data_dir),
        params=source_params,
        allow_download=allow_download,
        path=Path(path).expanduser() if path else None,
    )
    dest = Path(dest) if dest else dataset_path(spec, cache_dir)
    damaged = ""
    if not force and dest.exists():
        try:
            existing = up_to_date_fingerprint(dest, spec, split, ctx)
            if existing:
                manifest, _ = verify_file(dest, str(spec))  # never "already compiled" for an edited or damaged file
                return BuildOutcome(dest, existing, skipped=True, manifest=manifest)
        except DamagedDatasetError as exc:
            damaged = str(exc)
    started = time.perf_counter()
    removed = remove_debris(dest.parent)
    with compile_target(dest) as (tmp, scratch):
        con = duckdb.connect(str(tmp), config=duckdb_config(scratch))
        try:
            manifest = _compile_into(con, spec, source, dataclasses.replace(ctx, temp_dir=scratch), split)
            t0 = time.perf_counter()
            con.execute("CHECKPOINT")
            _log_timing("checkpoint", t0)
        finally:
            con.close()
    return BuildOutcome(dest, manifest["fingerprint"], False, manifest, time.perf_counter() - started, damaged, removed)


def duckdb_config(spill_dir: str | os.PathLike) -> dict[str, Any]:
    """Threads and memory for a build. Defaults suit the project's 2-core, 24 GiB machines: every core,
    and a memory limit well under the 3.7 GiB the pandas reference needs (DuckDB spills to `spill_dir`
    beyond it). Override with $HARNESS_DUCKDB_THREADS and $HARNESS_DUCKDB_MEMORY (e.g. '8GB')."""
    threads = int(os.environ.get("HARNESS_DUCKDB_THREADS") or min(os.cpu_count() or 1, 8))
    return {
        "threads": threads,
        "memory_limit": os.environ.get("HARNESS_DUCKDB_MEMORY") or "2GB",
        "temp_directory": str(spill_dir),
        "preserve_insertion_order": True,
    }


# --------------------------------------------------------------------------------------------------
# The pipeline


def _compile_into(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, source: Any, ctx: Any,
                  split: SplitParams) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        result = source.load(con, ctx)
    except duckdb.Error as exc:
        raise HarnessError(f"dataset {spec}: reading the source failed: {exc}") from exc
    _log_timing("source.load", t0)
    check_raw_tables(con, spec)
    dropped: dict[str, int] = {}
    for step in STAGES:
        t0 = time.perf_counter()
        step(con, spec, split, dropped)
        _log_timing(step.__name__, t0)
    counts = table_counts(con)
    check_not_empty(spec, counts)
    files = [{k: v for k, v in f.items() if k != "path"} for f in result.files]
    header = {
        "format_version": FORMAT_VERSION,
        "dataset": str(spec),
        "source": spec.name,
        "params": result.params,
        "split_params": asdict(split),
        "files": files,
    }
    t0 = time.perf_counter()
    fingerprint = compute_fingerprint(con, header)
    _log_timing("fingerprint", t0)
    t0 = time.perf_counter()
    digest = content_digest(con, header, fingerprint)  # what opening the file checks (harness.data.integrity)
    _log_timing("content digest", t0)
    t0 = time.perf_counter()
    manifest = {
        **header,
        "headline_k": int(source.headline_k),
        "fingerprint": fingerprint,
        "content_digest": digest,
        "counts": counts,
        "dropped": dropped,
        "notes": result.notes,
        "harness_version": harness.__version__,
        "stats": stats_from_connection(con, n_rec_items=scalar(con, "SELECT count(*) FROM item_rec")),
        "local_files": local_files(result.files),
    }
    _log_timing("stats", t0)
    write_manifest(con, manifest)
    _drop_temporaries(con)
    return manifest


def _log_timing(what: str, started: float) -> None:
    """Stage timings on stderr when $HARNESS_DATA_TIMINGS is set (for profiling big builds)."""
    if os.environ.get("HARNESS_DATA_TIMINGS"):
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"[compile] {what}: {time.perf_counter() - started:.2f} s wall, process CPU so far "
              f"{time.process_time():.2f} s, peak RSS so far {peak_mib:.0f} MiB", file=sys.stderr, flush=True)


def _drop_temporaries(con: duckdb.DuckDBPyConnection) -> None:
    """Temporary tables vanish with the connection; drop them early to free memory before the checkpoint."""
    for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary UNION ALL "
        "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
    ).fetchall():
        with contextlib.suppress(duckdb.Error):
            con.execute(f'DROP TABLE IF EXISTS temp."{name}"')
        with contextlib.suppress(duckdb.Error):
            con.execute(f'DROP VIEW IF EXISTS temp."{name}"')
