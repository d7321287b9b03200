"""Compiled datasets are verified, not trusted: a file whose tables no longer give its manifest's fingerprint, or
that DuckDB cannot read (truncated), is refused with a message naming the file and the command that rebuilds it.

Two checks, one answer:

- the fingerprint (harness.data.fingerprint), recomputed from the tables: the definition, and what
  `python -m harness data verify` runs (about 8% of the compile time at ML-25M size);
- a content digest stored in the manifest at compile time (`content_digest`): per fingerprinted table, the row count
  and the sum of DuckDB's `hash()` of each row's fingerprinted columns (about 1.5% of the compile time), bound to
  the fingerprint and the manifest's fingerprinted header. CompiledDataset.open checks it. DuckDB does not promise
  that `hash()` stays the same across its releases, so a digest written by another DuckDB version is not used: the
  fingerprint is recomputed instead, as for files compiled before digests existed. A digest that does not match is
  settled by the fingerprint too (the fingerprint is the definition; the digest only makes the common case cheap).

A file that passed is remembered for the rest of the process, keyed by its device, inode, size, mtime_ns and
ctime_ns: any write to it (or a new file renamed over it) changes the key, so a changed file is checked again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from harness import settings
from harness.data.fingerprint import FINGERPRINT_TABLES, FORMAT_VERSION, compute_fingerprint
from harness.data.spec import name_from_slug
from harness.errors import HarnessError
from harness.io import canonical_json

DIGEST_METHOD = "duckdb-hash-sum/1"
# The manifest keys the fingerprint hashes (harness.data.compile writes exactly these into its header).
HEADER_KEYS = ("format_version", "dataset", "source", "params", "split_params", "files")

_VERIFIED: dict[tuple[int, ...], str] = {}  # stat key -> the fingerprint the file was found to have


class DamagedDatasetError(HarnessError):
    """A compiled file that cannot be read, or whose tables do not give the fingerprint its manifest records."""


@dataclass(frozen=True)
class Verified:
    path: Path
    fingerprint: str
    how: str  # "fingerprint" (recomputed), "content digest", or "already verified" (this process, unchanged file)
    seconds: float


def fingerprint_header(manifest: dict[str, Any]) -> dict[str, Any]:
    return {key: manifest.get(key) for key in HEADER_KEYS}


def content_tables(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """{table: "rows:sum of row hashes"} over the fingerprinted columns of every fingerprinted table."""
    parts = []
    for table, columns, _ in FINGERPRINT_TABLES:
        values = ", ".join(column.split(" AS ")[0] for column in columns)
        parts.append(f"SELECT '{table}' AS t, count(*) AS n, coalesce(sum(hash({values})::HUGEINT), 0) AS s "
                     f"FROM {table}")
    return {table: f"{n}:{s}" for table, n, s in con.execute(" UNION ALL ".join(parts)).fetchall()}


def content_digest(con: duckdb.DuckDBPyConnection, header: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """The manifest's `content_digest` (written at compile time, beside the fingerprint it vouches for)."""
    return {
        "method": DIGEST_METHOD,
        "duckdb_version": duckdb.__version__,
        "fingerprint": fingerprint,
        "header_sha256": _header_sha256(header),
        "tables": content_tables(con),
    }


def _header_sha256(header: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(header).encode("utf-8")).hexdigest()


def check_compiled(con: duckdb.DuckDBPyConnection, path: Path, manifest: dict[str, Any], *, rebuild: str,
                   full: bool = False) -> Verified:
    """Raise DamagedDatasetError unless the tables behind `con` give the manifest's fingerprint.
    `full`: always recompute the fingerprint (data verify); otherwise the content digest when usable."""
    started = time.perf_counter()
    stored = str(manifest.get("fingerprint"))
    key = _stat_key(path)
    if not full and key is not None and _VERIFIED.get(key) == stored:
        return Verified(path, stored, "already verified", time.perf_counter() - started)
    try:
        problem = None if full else _digest_problem(con, manifest)
        if problem == "":
            how = "content digest"
        else:
            recomputed = compute_fingerprint(con, fingerprint_header(manifest))
            how = "fingerprint"
            if recomputed != stored:
                problem = problem if problem is not None else _digest_problem(con, manifest)  # which table
                detail = f"; {problem}" if problem else ""
                raise DamagedDatasetError(
                    f"{path} does not match its fingerprint: its manifest records {stored}, its tables give "
                    f"{recomputed}{detail}. The file was modified or damaged after it was compiled, and is not used; "
                    f"rebuild it with `{rebuild}`"
                )
    except duckdb.Error as exc:
        raise unreadable(path, exc, rebuild) from exc
    except (TypeError, ValueError) as exc:  # a column of another type, NULLs where the format has none
        raise DamagedDatasetError(f"{path} is not a compiled dataset of this format ({exc}); rebuild it with "
                                  f"`{rebuild}`") from exc
    if key is not None and _stat_key(path) == key:
        _VERIFIED[key] = stored
    return Verified(path, stored, how, time.perf_counter() - started)


def _digest_problem(con: duckdb.DuckDBPyConnection, manifest: dict[str, Any]) -> str | None:
    """'' when the stored content digest matches the tables; what differs when not; None when there is no
    usable digest (none stored, or written by another DuckDB version, whose hash() may differ)."""
    digest = manifest.get("content_digest")
    if not isinstance(digest, dict) or digest.get("method") != DIGEST_METHOD:
        return None
    if digest.get("duckdb_version") != duckdb.__version__:
        return None
    if digest.get("fingerprint") != manifest.get("fingerprint"):
        return "the manifest's fingerprint is not the one recorded with its content digest"
    if digest.get("header_sha256") != _header_sha256(fingerprint_header(manifest)):
        return "the manifest's dataset, parameters or input files changed since it was compiled"
    stored_tables = digest.get("tables") or {}
    found = content_tables(con)
    changed = [table for table in found if stored_tables.get(table) != found[table]]
    if changed:
        rows = [f"{t} ({_rows(stored_tables.get(t))} rows when compiled, {_rows(found[t])} now)" for t in changed]
        return f"changed since it was compiled: {', '.join(rows)}"
    return ""


def _rows(entry: str | None) -> str:
    return f"{int(entry.split(':')[0]):,}" if entry else "?"


def unreadable(path: Path, exc: BaseException, rebuild: str) -> DamagedDatasetError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DamagedDatasetError(
        f"{path} is damaged or truncated: DuckDB cannot read it ({first}); rebuild it with `{rebuild}`"
    )


def _stat_key(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def forget_verified() -> None:
    """Drop the in-process record of verified files (tests; a long-lived process that wants a fresh check)."""
    _VERIFIED.clear()


def rebuild_command(name: str, path: Path, manifest: dict[str, Any] | None = None) -> str:
    """`python -m harness data build NAME --force`, with the --cache-dir the file lives in when it is not the
    default one, and the --path its inputs were read from when the source needs one (logs, mpd, an unpinned zip)."""
    command = f"python -m harness data build {name} --force"
    folder = Path(path).parent
    if folder.name == "datasets" and folder.resolve() != settings.compiled_dir().resolve():
        command += f" --cache-dir {folder.parent}"
    inputs = [Path(entry["path"]) for entry in ((manifest or {}).get("local_files") or {}).values()
              if isinstance(entry, dict) and entry.get("path")]
    source = (manifest or {}).get("source")
    unpinned = ((manifest or {}).get("notes") or {}).get("archive_verified") is False
    if inputs and (source in ("logs", "mpd") or unpinned):
        given = inputs[0] if len(inputs) == 1 and unpinned else Path(os.path.commonpath([p.parent for p in inputs]))
        command += f" --path {given}"
    return command


def open_verified(path: Path, name: str | None = None, *, full: bool = False
                  ) -> tuple[duckdb.DuckDBPyConnection, dict[str, Any], Verified]:
    """(read-only connection, manifest, how it was verified) of a compiled file. `name`: the dataset name for the
    rebuild command when the manifest cannot be read (default: from the file name). Raises DamagedDatasetError
    (damaged, truncated, edited) or HarnessError (another format version), the connection closed."""
    path = Path(path)
    rebuild = rebuild_command(name or name_from_slug(path.stem), path)
    con = None
    try:
        con = duckdb.connect(str(path), read_only=True)
        manifest = {key: json.loads(value) for key, value in con.execute("SELECT key, value FROM manifest").fetchall()}
    except (duckdb.Error, json.JSONDecodeError) as exc:
        if con is not None:
            con.close()
        raise unreadable(path, exc, rebuild) from exc
    try:
        rebuild = rebuild_command(str(manifest.get("dataset") or name or name_from_slug(path.stem)), path, manifest)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise HarnessError(f"{path} has data format version {manifest.get('format_version')}, this harness reads "
                               f"{FORMAT_VERSION}; rebuild it with `{rebuild}`")
        verified = check_compiled(con, path, manifest, rebuild=rebuild, full=full)
    except BaseException:
        con.close()
        raise
    return con, manifest, verified


def verify_file(path: Path, name: str | None = None, *, full: bool = False) -> tuple[dict[str, Any], Verified]:
    """open_verified, the connection closed again: (manifest, how it was verified)."""
    con, manifest, verified = open_verified(path, name, full=full)
    con.close()
    return manifest, verified
