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
7. statistics (Table 3), fingerprint, manifest; written to a temporary file beside the destination and
   renamed into place (a killed build leaves the previous good file untouched).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import duckdb

import harness
from harness import settings
from harness.data.fingerprint import FORMAT_VERSION, compute_fingerprint
from harness.data.spec import DatasetSpec
from harness.errors import HarnessError
from harness.io import atomic_path

# FORMAT_VERSION lives in fingerprint.py (store.py checks it without importing this module); importable here too.

RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw_items": ("item_key", "title", "text", "cluster"),
    "raw_interactions": ("user_key", "item_key", "ts", "seq"),
    "raw_queries": ("query_key", "text", "split"),
    "raw_qrels": ("query_key", "item_key"),
}
SPLITS = ("train", "valid", "test")


# --------------------------------------------------------------------------------------------------
# Split parameters: taken out of the dataset name (`ml-small:split_seed=3`), the rest go to the source.


@dataclass(frozen=True)
class SplitParams:
    split_seed: int = 0
    valid_frac: float = 0.1
    test_frac: float = 0.1
    min_user_interactions: int = 5
    head_fraction: float = 0.01

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> tuple["SplitParams", dict[str, str]]:
        """(split params, the remaining source params). Values are validated with errors naming them."""
        source_params = spec.param_dict()
        values: dict[str, Any] = {}
        for name, kind in (("split_seed", int), ("valid_frac", float), ("test_frac", float),
                           ("min_user_interactions", int), ("head_fraction", float)):
            if name in source_params:
                raw = source_params.pop(name)
                try:
                    values[name] = kind(raw)
                except ValueError as exc:
                    raise HarnessError(f"dataset {spec}: {name}={raw!r} is not a valid {kind.__name__}") from exc
        params = cls(**values)
        params.validate(str(spec))
        return params, source_params

    def validate(self, where: str) -> None:
        if not (0 <= self.valid_frac < 1 and 0 <= self.test_frac < 1 and self.valid_frac + self.test_frac < 1):
            raise HarnessError(f"dataset {where}: valid_frac and test_frac must be in [0, 1) with a sum below 1")
        if self.min_user_interactions < 3:
            raise HarnessError(
                f"dataset {where}: min_user_interactions={self.min_user_interactions} must be at least 3 "
                "(validation predicts item t-1 from a non-empty history)"
            )
        if not 0 < self.head_fraction <= 1:
            raise HarnessError(f"dataset {where}: head_fraction={self.head_fraction} must be in (0, 1]")

    def eval_query_counts(self, n_unassigned: int) -> tuple[int, int]:
        """(n_valid, n_test) among queries the source left unassigned: round half up of frac * n, computed
        exactly (Fraction of the decimal text) so 0.1 * 35 is 3.5 -> 4 on every machine."""
        n_test = math.floor(Fraction(repr(self.test_frac)) * n_unassigned + Fraction(1, 2))
        n_valid = math.floor(Fraction(repr(self.valid_frac)) * n_unassigned + Fraction(1, 2))
        return min(n_valid, n_unassigned - n_test), n_test

    def head_size(self, n_items: int) -> int:
        return max(1, math.ceil(Fraction(repr(self.head_fraction)) * n_items))


# --------------------------------------------------------------------------------------------------
# Entry points


@dataclass
class BuildOutcome:
    path: Path
    fingerprint: str
    skipped: bool  # an up-to-date build was already there
    manifest: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


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
    from harness.data.sources import SOURCES
    from harness.data.store import dataset_path

    spec = DatasetSpec.parse(spec) if isinstance(spec, str) else spec
    if source is None:
        source = SOURCES.load(spec.name)
    split, source_params = SplitParams.from_spec(spec)
    from harness.data.sources.base import SourceContext

    ctx = SourceContext(
        data_dir=settings.data_dir(data_dir),
        params=source_params,
        allow_download=allow_download,
        path=Path(path).expanduser() if path else None,
    )
    dest = Path(dest) if dest else dataset_path(spec, cache_dir)
    if not force:
        existing = up_to_date_fingerprint(dest, spec, split, ctx)
        if existing:
            return BuildOutcome(dest, existing, skipped=True, manifest=_read_manifest(dest))
    started = time.perf_counter()
    _remove_stale_temporaries(dest)
    with atomic_path(dest) as tmp, tempfile.TemporaryDirectory(prefix="harness-duckdb-", dir=dest.parent) as spill:
        con = duckdb.connect(str(tmp), config=duckdb_config(spill))
        try:
            manifest = _compile_into(con, spec, source, ctx, split)
            t0 = time.perf_counter()
            con.execute("CHECKPOINT")
            _log_timing("checkpoint", t0)
        finally:
            con.close()
    return BuildOutcome(dest, manifest["fingerprint"], False, manifest, time.perf_counter() - started)


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
# Skipping an up-to-date build


def _read_manifest(path: Path) -> dict[str, Any]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM manifest").fetchall()}
    finally:
        con.close()


def up_to_date_fingerprint(dest: Path, spec: DatasetSpec, split: SplitParams, ctx: Any) -> str | None:
    """The fingerprint of the build at `dest` if it was made from the same inputs: same dataset name, split
    params, format and harness version, and every source file it read still there unchanged (size and
    mtime, else MD5). None when a build is needed. New files a source would now also read (an extra MPD
    slice) are not noticed: rebuild with --force after adding input files."""
    if not dest.exists():
        return None
    try:
        manifest = _read_manifest(dest)
    except (duckdb.Error, json.JSONDecodeError):
        return None
    same = (
        manifest.get("format_version") == FORMAT_VERSION
        and manifest.get("dataset") == str(spec)
        and manifest.get("split_params") == asdict(split)
        and manifest.get("harness_version") == harness.__version__
    )
    if not same:
        return None
    local = manifest.get("local_files", {})
    for entry in manifest.get("files", []):
        if not _input_unchanged(entry, local.get(entry["name"]), ctx):
            return None
    return manifest.get("fingerprint")


def _input_unchanged(entry: dict[str, Any], recorded: dict[str, Any] | None, ctx: Any) -> bool:
    from harness.data.fetch import md5_file

    root = ctx.path if ctx.path is not None else ctx.data_dir
    candidates: list[Path] = []
    if recorded and Path(recorded["path"]).resolve().is_relative_to(Path(root).resolve()):
        candidates.append(Path(recorded["path"]))
    candidates += [Path(root) / entry["name"], Path(root)]
    for candidate in candidates:
        if not candidate.is_file() or candidate.name != Path(entry["name"]).name:
            continue
        stat = candidate.stat()
        if stat.st_size != entry.get("bytes"):
            continue
        if recorded and recorded.get("mtime_ns") == stat.st_mtime_ns and Path(recorded["path"]) == candidate:
            return True
        return md5_file(candidate) == entry.get("md5")
    return False


def _remove_stale_temporaries(dest: Path) -> None:
    """Leftovers of builds killed earlier (SIGKILL skips every cleanup); younger ones may be a live build."""
    if not dest.parent.is_dir():
        return
    cutoff = time.time() - 3600
    for leftover in dest.parent.glob(f".{dest.name}.*.tmp*"):
        with contextlib.suppress(OSError):
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink()


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
    _check_raw_tables(con, spec)
    dropped: dict[str, int] = {}
    steps: list[Callable[..., None]] = [
        _stage_queries_and_qrels,
        _stage_catalogue,
        _stage_users_and_sequences,
        _stage_rec_examples,
        _stage_search_splits,
        _stage_items,
    ]
    for step in steps:
        t0 = time.perf_counter()
        step(con, spec, split, dropped)
        _log_timing(step.__name__, t0)
    counts = _table_counts(con)
    _check_not_empty(spec, counts)
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
    from harness.data.stats import stats_from_connection

    manifest = {
        **header,
        "headline_k": int(source.headline_k),
        "fingerprint": fingerprint,
        "counts": counts,
        "dropped": dropped,
        "notes": result.notes,
        "harness_version": harness.__version__,
        "stats": stats_from_connection(con, n_rec_items=_scalar(con, "SELECT count(*) FROM item_rec")),
        "local_files": _local_files(result.files),
    }
    _log_timing("stats", t0)
    _write_manifest(con, manifest)
    _drop_temporaries(con)
    return manifest


def _log_timing(what: str, started: float) -> None:
    """Stage timings on stderr when $HARNESS_DATA_TIMINGS is set (for profiling big builds)."""
    if os.environ.get("HARNESS_DATA_TIMINGS"):
        print(f"[compile] {what}: {time.perf_counter() - started:.2f} s wall, process CPU so far "
              f"{time.process_time():.1f} s", file=sys.stderr, flush=True)


def _local_files(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Where each input was read on this machine: used only to skip an up-to-date rebuild, never hashed."""
    out = {}
    for entry in files:
        if entry.get("path"):
            p = Path(entry["path"]).resolve()
            out[entry["name"]] = {"path": str(p), "mtime_ns": p.stat().st_mtime_ns if p.exists() else None}
    return out


def _check_raw_tables(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> None:
    for table, columns in RAW_COLUMNS.items():
        try:
            have = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        except duckdb.CatalogException as exc:
            raise HarnessError(f"dataset {spec}: the source did not create table {table}") from exc
        missing = [c for c in columns if c not in have]
        if missing:
            raise HarnessError(f"dataset {spec}: source table {table} lacks column(s) {', '.join(missing)}")


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    return con.execute(sql, params or []).fetchall()[0][0]  # fetchall: leaves no open result


def _first_duplicate(con: duckdb.DuckDBPyConnection, table: str, key: str) -> str | None:
    row = con.execute(
        f"SELECT {key} FROM {table} WHERE {key} IS NOT NULL GROUP BY {key} HAVING count(*) > 1"
        f" ORDER BY {key} LIMIT 1"
    ).fetchall()
    return row[0][0] if row else None


def _stage_queries_and_qrels(con, spec, split, dropped) -> None:
    duplicate = _first_duplicate(con, "raw_queries", "query_key")
    if duplicate is not None:
        raise HarnessError(f"dataset {spec}: raw_queries has query_key {duplicate!r} more than once")
    bad = con.execute(
        "SELECT query_key, split FROM raw_queries WHERE split IS NOT NULL AND split NOT IN ('train','valid','test')"
        " ORDER BY query_key LIMIT 1"
    ).fetchall()
    if bad:
        key, value = bad[0]
        raise HarnessError(f"dataset {spec}: query {key!r} has split {value!r}; expected train, valid, test or NULL")
    con.execute(
        "CREATE TEMP TABLE c_queries AS SELECT query_key, coalesce(text, '') AS text, split"
        " FROM raw_queries WHERE query_key IS NOT NULL"
    )
    dropped["queries_null_key"] = _scalar(con, "SELECT count(*) FROM raw_queries WHERE query_key IS NULL")
    con.execute(
        "CREATE TEMP TABLE c_qrels AS SELECT DISTINCT r.query_key, r.item_key FROM raw_qrels r"
        " SEMI JOIN c_queries q ON q.query_key = r.query_key WHERE r.item_key IS NOT NULL"
    )
    raw = _scalar(con, "SELECT count(*) FROM (SELECT DISTINCT query_key, item_key FROM raw_qrels)")
    dropped["qrels_duplicate_rows"] = _scalar(con, "SELECT count(*) FROM raw_qrels") - raw
    dropped["qrels_unknown_query_or_null"] = raw - _scalar(con, "SELECT count(*) FROM c_qrels")


def _stage_catalogue(con, spec, split, dropped) -> None:
    """Items present in both tasks, with dense ids in item_key order."""
    duplicate = _first_duplicate(con, "raw_items", "item_key")
    if duplicate is not None:
        raise HarnessError(f"dataset {spec}: raw_items has item_key {duplicate!r} more than once")
    # One scan of the interactions gives the distinct items and the row / NULL counts.
    con.execute(
        """
        CREATE TEMP TABLE rec_item_counts AS
        SELECT item_key, count(*) AS n, count(*) FILTER (WHERE user_key IS NULL OR ts IS NULL) AS n_null
        FROM raw_interactions GROUP BY item_key
        """
    )
    con.execute("CREATE TEMP TABLE rec_item_keys AS SELECT item_key FROM rec_item_counts WHERE item_key IS NOT NULL")
    con.execute("CREATE TEMP TABLE search_item_keys AS SELECT DISTINCT item_key FROM c_qrels")
    con.execute(
        """
        CREATE TEMP TABLE c_items AS
        WITH both_tasks AS (SELECT item_key FROM rec_item_keys INTERSECT SELECT item_key FROM search_item_keys)
        SELECT (row_number() OVER (ORDER BY b.item_key) - 1)::INTEGER AS item_id, b.item_key,
               coalesce(r.title, '') AS title, coalesce(r.text, '') AS text, r.cluster::INTEGER AS cluster,
               r.item_key IS NULL AS no_metadata
        FROM both_tasks b LEFT JOIN raw_items r ON r.item_key = b.item_key
        """
    )
    n_items = _scalar(con, "SELECT count(*) FROM c_items")
    n_rec = _scalar(con, "SELECT count(*) FROM rec_item_keys")
    n_search = _scalar(con, "SELECT count(*) FROM search_item_keys")
    dropped["items_only_in_recommendation"] = n_rec - n_items
    dropped["items_only_in_search"] = n_search - n_items
    dropped["items_without_interactions_or_qrels"] = _scalar(
        con,
        "SELECT count(*) FROM raw_items r WHERE r.item_key NOT IN (SELECT item_key FROM rec_item_keys)"
        " AND r.item_key NOT IN (SELECT item_key FROM search_item_keys)",
    )
    dropped["items_kept_without_metadata"] = _scalar(con, "SELECT count(*) FROM c_items WHERE no_metadata")
    if n_items == 0:
        raise HarnessError(
            f"dataset {spec} is empty after filtering: no item appears in both tasks "
            f"({n_rec} items have interactions, {n_search} have relevant queries)"
        )


def _stage_users_and_sequences(con, spec, split, dropped) -> None:
    """Interactions on kept items; users with at least min_user_interactions; positions by (ts, seq, item).

    One sort, by (user_key, ts, seq, item_id): user ids follow user_key order, so the sorted rows line up
    with 1..length generated per user in user order, and are paired with them row by row (POSITIONAL JOIN;
    a DuckDB table keeps the insertion order of CREATE ... ORDER BY). The user keys of both sides are
    compared on every row, so a misalignment is an error, never a silent shift."""
    con.execute(
        """
        CREATE TEMP TABLE seq_all AS
        SELECT i.user_key, c.item_id, i.ts::BIGINT AS ts
        FROM raw_interactions i JOIN c_items c ON c.item_key = i.item_key
        WHERE i.user_key IS NOT NULL AND i.ts IS NOT NULL
        ORDER BY i.user_key, i.ts, i.seq, c.item_id
        """
    )
    con.execute(
        "CREATE TEMP TABLE user_counts AS SELECT user_key, count(*)::INTEGER AS n FROM seq_all GROUP BY user_key"
    )
    con.execute(
        f"""
        CREATE TEMP TABLE c_users AS
        SELECT (row_number() OVER (ORDER BY user_key) - 1)::INTEGER AS user_id, user_key, n AS length
        FROM user_counts WHERE n >= {int(split.min_user_interactions)}
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE all_users AS
        SELECT a.user_key, a.n, k.user_id FROM user_counts a LEFT JOIN c_users k ON k.user_key = a.user_key
        ORDER BY a.user_key
        """
    )
    n_raw, n_null = con.execute(
        "SELECT sum(n), sum(CASE WHEN item_key IS NULL THEN n ELSE n_null END) FROM rec_item_counts"
    ).fetchall()[0]
    n_kept_items = int(_scalar(con, "SELECT sum(n) FROM user_counts") or 0)
    n_users = _scalar(con, "SELECT count(*) FROM c_users")
    dropped["interactions_null_fields"] = int(n_null or 0)
    dropped["interactions_on_dropped_items"] = int(n_raw or 0) - int(n_null or 0) - n_kept_items
    dropped["users_below_min_interactions"] = _scalar(con, "SELECT count(*) FROM user_counts") - n_users
    dropped["interactions_of_dropped_users"] = n_kept_items - int(_scalar(con, "SELECT sum(length) FROM c_users") or 0)
    if n_users == 0:
        raise HarnessError(
            f"dataset {spec} is empty after filtering: no user has at least "
            f"{split.min_user_interactions} interactions with items present in both tasks"
        )
    con.execute("CREATE TABLE users AS SELECT user_id, user_key, length FROM c_users ORDER BY user_id")
    con.execute(
        """
        CREATE TABLE sequences AS
        SELECT p.user_id, p.pos, s.item_id, s.ts
        FROM seq_all s POSITIONAL JOIN
             (SELECT user_key, user_id, unnest(generate_series(1, n))::INTEGER AS pos FROM all_users) p
        WHERE CASE WHEN s.user_key = p.user_key THEN p.user_id IS NOT NULL
                   ELSE error('internal error: sorted interactions and positions are misaligned') END
        """
    )
    con.execute("DROP TABLE seq_all")


def _stage_rec_examples(con, spec, split, dropped) -> None:
    """test = t, valid = t-1, train = t-2 down to 3; evaluation targets must be training targets.

    Written split by split in (split, user_id, target_pos) order, so no sort of the training rows is needed."""
    # One pass over the sequences: per item, its training popularity (positions 1..t-2) and whether it
    # is some training instance's target (positions 3..t-2).
    con.execute(
        """
        CREATE TEMP TABLE item_rec AS
        SELECT s.item_id, count(*) FILTER (WHERE s.pos <= u.length - 2) AS pop_rec,
               bool_or(s.pos >= 3 AND s.pos <= u.length - 2) AS train_target
        FROM sequences s JOIN users u ON u.user_id = s.user_id GROUP BY s.item_id
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE rec_eval AS
        SELECT CASE WHEN s.pos = u.length THEN 'test' ELSE 'valid' END AS split, s.user_id,
               s.pos AS target_pos, coalesce(r.train_target, false) AS seen
        FROM sequences s JOIN users u ON u.user_id = s.user_id LEFT JOIN item_rec r ON r.item_id = s.item_id
        WHERE s.pos >= u.length - 1
        """
    )
    for name in ("valid", "test"):
        dropped[f"rec_{name}_target_not_in_training"] = _scalar(
            con, "SELECT count(*) FROM rec_eval WHERE split = ? AND NOT seen", [name]
        )
    con.execute(
        "CREATE TABLE rec_examples AS SELECT split, user_id, target_pos::INTEGER AS target_pos FROM rec_eval"
        " WHERE seen AND split = 'test' ORDER BY user_id"
    )
    con.execute(
        "INSERT INTO rec_examples SELECT 'train', user_id, unnest(generate_series(3, length - 2))::INTEGER"
        " FROM users"
    )
    con.execute(
        "INSERT INTO rec_examples SELECT split, user_id, target_pos FROM rec_eval"
        " WHERE seen AND split = 'valid' ORDER BY user_id"
    )


def _stage_search_splits(con, spec, split, dropped) -> None:
    """Queries with a kept relevant item; deterministic split for unassigned ones; eval qrels filtered."""
    con.execute(
        """
        CREATE TEMP TABLE k_qrels AS
        SELECT r.query_key, c.item_id FROM c_qrels r JOIN c_items c ON c.item_key = r.item_key
        """
    )
    con.execute("CREATE TEMP TABLE k_queries AS SELECT * FROM c_queries SEMI JOIN k_qrels USING (query_key)")
    dropped["queries_without_kept_items"] = _scalar(con, "SELECT count(*) FROM c_queries") - _scalar(
        con, "SELECT count(*) FROM k_queries"
    )
    n_unassigned = _scalar(con, "SELECT count(*) FROM k_queries WHERE split IS NULL")
    n_valid, n_test = split.eval_query_counts(n_unassigned)
    con.execute(
        """
        CREATE TEMP TABLE s_queries AS
        SELECT query_key, text, coalesce(split, CASE WHEN rank <= $n_test THEN 'test'
                                                     WHEN rank <= $n_test + $n_valid THEN 'valid'
                                                     ELSE 'train' END) AS split
        FROM (SELECT *, row_number() OVER (ORDER BY split IS NOT NULL, md5($seed || ':' || query_key), query_key)
                        AS rank FROM k_queries)
        """,
        {"n_test": n_test, "n_valid": n_valid, "seed": str(split.split_seed)},
    )
    con.execute(
        """
        CREATE TEMP TABLE search_train_items AS
        SELECT DISTINCT r.item_id FROM k_qrels r JOIN s_queries q ON q.query_key = r.query_key WHERE q.split = 'train'
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE s_qrels AS
        SELECT r.query_key, r.item_id, q.split FROM k_qrels r JOIN s_queries q ON q.query_key = r.query_key
        WHERE q.split = 'train' OR r.item_id IN (SELECT item_id FROM search_train_items)
        """
    )
    for name in ("valid", "test"):
        dropped[f"search_{name}_qrels_item_not_in_training"] = _scalar(
            con,
            "SELECT count(*) FROM k_qrels r JOIN s_queries q ON q.query_key = r.query_key WHERE q.split = ?"
            " AND r.item_id NOT IN (SELECT item_id FROM search_train_items)",
            [name],
        )
        dropped[f"search_{name}_queries_left_empty"] = _scalar(
            con,
            "SELECT count(*) FROM s_queries q WHERE q.split = ?"
            " AND q.query_key NOT IN (SELECT query_key FROM s_qrels)",
            [name],
        )
    con.execute(
        """
        CREATE TABLE queries AS
        SELECT (row_number() OVER (ORDER BY query_key) - 1)::INTEGER AS query_id, query_key, text, split
        FROM s_queries SEMI JOIN s_qrels USING (query_key) ORDER BY query_id
        """
    )
    con.execute(
        """
        CREATE TABLE qrels AS
        SELECT q.query_id, r.item_id FROM s_qrels r JOIN queries q ON q.query_key = r.query_key
        ORDER BY q.query_id, r.item_id
        """
    )


def _stage_items(con, spec, split, dropped) -> None:
    """Training popularity per task and the head flags (ties broken by item_id)."""
    n_items = _scalar(con, "SELECT count(*) FROM c_items")
    head = split.head_size(n_items)
    con.execute(
        f"""
        CREATE TABLE items AS
        WITH pr AS (SELECT item_id, pop_rec AS n FROM item_rec),
             ps AS (SELECT r.item_id, count(*) AS n FROM qrels r JOIN queries q ON q.query_id = r.query_id
                    WHERE q.split = 'train' GROUP BY r.item_id),
             pop AS (SELECT c.*, coalesce(pr.n, 0)::BIGINT AS pop_rec, coalesce(ps.n, 0)::BIGINT AS pop_search
                     FROM c_items c LEFT JOIN pr ON pr.item_id = c.item_id LEFT JOIN ps ON ps.item_id = c.item_id)
        SELECT item_id, item_key, title, text, cluster, pop_rec, pop_search,
               row_number() OVER (ORDER BY pop_rec DESC, item_id) <= {head} AS head_rec,
               row_number() OVER (ORDER BY pop_search DESC, item_id) <= {head} AS head_search
        FROM pop ORDER BY item_id
        """
    )


def _table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    counts: dict[str, Any] = {
        t: _scalar(con, f"SELECT count(*) FROM {t}") for t in ("items", "users", "sequences", "queries", "qrels")
    }
    counts["rec_examples"] = dict(con.execute("SELECT split, count(*) FROM rec_examples GROUP BY split").fetchall())
    counts["queries_by_split"] = dict(con.execute("SELECT split, count(*) FROM queries GROUP BY split").fetchall())
    counts["qrels_by_split"] = dict(
        con.execute(
            "SELECT q.split, count(*) FROM qrels r JOIN queries q ON q.query_id = r.query_id GROUP BY q.split"
        ).fetchall()
    )
    for key in ("rec_examples", "queries_by_split", "qrels_by_split"):
        counts[key] = {s: int(counts[key].get(s, 0)) for s in SPLITS}
    return counts


def _check_not_empty(spec: DatasetSpec, counts: dict[str, Any]) -> None:
    """Validation may be empty (a source may fix the split); training and test may not."""
    needed = {
        "recommendation training examples": counts["rec_examples"]["train"],
        "recommendation test examples": counts["rec_examples"]["test"],
        "search training queries": counts["queries_by_split"]["train"],
        "search test queries": counts["queries_by_split"]["test"],
    }
    empty = [name for name, n in needed.items() if n == 0]
    if empty:
        raise HarnessError(
            f"dataset {spec} is empty after filtering: no {', no '.join(empty)} "
            f"(items {counts['items']}, users {counts['users']}, queries {counts['queries']})"
        )


def _write_manifest(con: duckdb.DuckDBPyConnection, manifest: dict[str, Any]) -> None:
    con.execute("CREATE TABLE manifest (key VARCHAR, value VARCHAR)")
    rows = [(k, json.dumps(v, sort_keys=True, ensure_ascii=False)) for k, v in sorted(manifest.items())]
    con.executemany("INSERT INTO manifest VALUES (?, ?)", rows)


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
