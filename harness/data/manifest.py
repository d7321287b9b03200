"""The manifest of a compiled dataset file: written into the file at the end of a build, read back to skip a
rebuild whose inputs have not changed. Separate from harness.data.compile (the orchestration) because it is the
only part that looks at an existing build and at the source files on disk.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb

import harness
from harness.data.fetch import md5_file
from harness.data.fingerprint import FORMAT_VERSION
from harness.data.integrity import rebuild_command, unreadable
from harness.data.spec import DatasetSpec
from harness.data.split_params import SplitParams


# --------------------------------------------------------------------------------------------------
# Skipping an up-to-date build


def read_manifest(path: Path) -> dict[str, Any]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM manifest").fetchall()}
    finally:
        con.close()


def up_to_date_fingerprint(dest: Path, spec: DatasetSpec, split: SplitParams, ctx: Any) -> str | None:
    """The fingerprint of the build at `dest` if it was made from the same inputs: same dataset name, split
    params, format and harness version, and every source file it read still there unchanged (size and
    mtime, else MD5). None when a build is needed; DamagedDatasetError when the file cannot be read. New files a source would now also read (an extra MPD
    slice) are not noticed: rebuild with --force after adding input files."""
    if not dest.exists():
        return None
    try:
        manifest = read_manifest(dest)
    except (duckdb.Error, json.JSONDecodeError) as exc:  # truncated or not a DuckDB file: said, then rebuilt
        raise unreadable(dest, exc, rebuild_command(str(spec), dest)) from exc
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


# --------------------------------------------------------------------------------------------------
# Writing it (at the end of a build)


def write_manifest(con: duckdb.DuckDBPyConnection, manifest: dict[str, Any]) -> None:
    con.execute("CREATE TABLE manifest (key VARCHAR, value VARCHAR)")
    rows = [(k, json.dumps(v, sort_keys=True, ensure_ascii=False)) for k, v in sorted(manifest.items())]
    con.executemany("INSERT INTO manifest VALUES (?, ?)", rows)


def local_files(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Where each input was read on this machine: used only to skip an up-to-date rebuild, never hashed."""
    out = {}
    for entry in files:
        if entry.get("path"):
            p = Path(entry["path"]).resolve()
            out[entry["name"]] = {"path": str(p), "mtime_ns": p.stat().st_mtime_ns if p.exists() else None}
    return out
