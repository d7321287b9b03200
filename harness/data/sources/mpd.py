"""The Million Playlist Dataset (MPD) as a raw source (paper §5: playlists are the recommendation
sequences, unique normalised playlist titles are the search queries). docs/mpd.md is the user's guide.

Input: a folder of the MPD's slice files `mpd.slice.<start>-<end>.json`, each
`{"info": {...}, "playlists": [{"name", "pid", "modified_at", "tracks": [{"pos", "track_uri",
"track_name", "artist_name", ...}], ...}]}`. The folder is ctx.path, else <data_dir>/mpd/data, else
<data_dir>/mpd; a folder holding a `data/` subfolder of slices (the unpacked zip) is also accepted.

Raw tables (harness.data.sources.base):
    raw_items         item_key = track_uri, title = track_name, text = "track_name — artist_name"
    raw_interactions  user_key = pid, item_key = track_uri, ts = the playlist's modified_at, seq = pos
    raw_queries       one row per distinct non-empty normalize_name(title); query_key = first 16 hex
                      digits of md5(normalised title); split NULL (the compiler assigns it)
    raw_qrels         a title's relevant tracks: the union of the tracks of every playlist with that title

The JSON is parsed by DuckDB's read_json, a batch of slice files at a time, so memory stays bounded
when a user points at all 1,000 slices; Python only touches file names and the distinct titles.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from harness.data.fetch import file_record, md5_file
from harness.data.params import Param, parse_params as parse_declared
from harness.data.sources.base import SourceContext, SourceResult
from harness.errors import HarnessError

SLICE_GLOB = "mpd.slice.*.json"
_SLICE_NAME = re.compile(r"^mpd\.slice\.(\d+)-(\d+)\.json$")

# What BM25 / bi-encoders index for a track; an em dash keeps titles and artists apart.
TEXT_SEPARATOR = " \u2014 "

# Keys this source reads; a playlist or track without one (or with null) is an error.
PLAYLIST_KEYS = ("pid", "name", "modified_at", "tracks")
TRACK_KEYS = ("pos", "track_uri", "track_name", "artist_name")

# read_json's schema for the keys we read (others are skipped by the parser, never type-checked).
_JSON_COLUMNS = (
    "{'playlists': 'STRUCT(pid BIGINT, name VARCHAR, modified_at BIGINT, tracks STRUCT(pos BIGINT,"
    " track_uri VARCHAR, track_name VARCHAR, artist_name VARCHAR)[])[]'}"
)

# Slice files parsed per read_json call (one thread parses one file): at least the thread count, few
# enough that the nested batch (about 33 MB of JSON per real slice) stays small. Never changes the output.
_MIN_FILES_PER_BATCH = 4
# Each batch appends its distinct (track, name, artist) rows; about 2.3M tracks in all, but ~150k per
# batch of 4 slices, so the table is deduplicated every few batches to stay near the catalogue's size.
_COMPACT_NAMES_EVERY = 16

MAX_SLICES = Param("max_slices", int, None, 1, float("inf"),
                   help="read only the first N slice files (default: every slice in the folder)")


def normalize_name(name: str) -> str:
    """The MPD's own title normalisation (normalize_name in the dataset's src/stats.py), unchanged:
    lower-case, replace each of . , / # ! $ % ^ * ; : { } = _ ` ~ ( ) @ by a space, collapse runs of
    whitespace into one space, strip. Note that & ' - + ? and non-ASCII letters are kept."""
    name = name.lower()
    name = re.sub(r"[.,\/#!$%\^\*;:{}=\_`~()@]", " ", name)
    name = re.sub(r"\s+", " ", name).strip()
    return name


@dataclass(frozen=True)
class SliceFile:
    path: Path
    start: int
    end: int


@dataclass(frozen=True)
class MPDSource:
    name: str = "mpd"
    description: str = "Million Playlist Dataset slice files (user-supplied): playlists and their titles"
    headline_k: int = 30
    params = (MAX_SLICES,)  # not a field: the declared parameters (harness.data.params)

    def load(self, con: duckdb.DuckDBPyConnection, ctx: SourceContext) -> SourceResult:
        max_slices = parse_params(ctx.params)
        folder = find_slice_folder(ctx)
        slices = list_slices(folder)
        if max_slices is not None:
            if max_slices > len(slices):
                raise HarnessError(
                    f"mpd: max_slices={max_slices}, but {folder} holds only {len(slices)} slice files"
                )
            slices = slices[:max_slices]
        _create_accumulators(con)
        try:
            for number, batch in enumerate(_batches(slices, _files_per_batch(con)), start=1):
                _ingest_batch(con, batch)
                if number % _COMPACT_NAMES_EVERY == 0:
                    _compact_track_names(con)
            _check_unique_pids(con)
            _create_raw_tables(con)
            notes = _notes(con, slices)
        finally:
            _drop(con, "_mpd_batch_playlists", "_mpd_batch_tracks", "_mpd_playlists", "_mpd_track_names",
                  "_mpd_titles")
        return SourceResult(files=file_records(slices), params={"max_slices": max_slices}, notes=notes)


MPD = MPDSource()


# --- inputs ------------------------------------------------------------------------------------------


def parse_params(params: dict[str, str]) -> int | None:
    """`max_slices` (a positive integer; default: every slice in the folder)."""
    return parse_declared("mpd", params, MPDSource.params)["max_slices"]


def find_slice_folder(ctx: SourceContext) -> Path:
    """ctx.path when given (or its data/ subfolder), else <data_dir>/mpd/data, else <data_dir>/mpd."""
    if ctx.path is not None:
        folder = Path(ctx.path)
        if not folder.is_dir():
            raise HarnessError(
                f"mpd: {folder} is not a folder; pass the folder holding the MPD slice files "
                f"({SLICE_GLOB}, e.g. spotify_million_playlist_dataset/data)"
            )
        candidates = [folder, folder / "data"]
    else:
        candidates = [Path(ctx.data_dir) / "mpd" / "data", Path(ctx.data_dir) / "mpd"]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob(SLICE_GLOB)):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise HarnessError(
        f"mpd: no Million Playlist Dataset slice files ({SLICE_GLOB}) in {looked}. Unpack the MPD "
        f"(https://www.aicrowd.com/challenges/spotify-million-playlist-dataset-challenge) and pass its "
        f"data/ folder as the dataset path, or put the slice files in {Path(ctx.data_dir) / 'mpd' / 'data'}"
    )


def list_slices(folder: Path) -> list[SliceFile]:
    """Every mpd.slice.<start>-<end>.json in `folder`, ordered by start (the listing order never counts)."""
    slices = []
    for path in folder.glob(SLICE_GLOB):
        match = _SLICE_NAME.match(path.name)
        if not match:
            raise HarnessError(
                f"mpd: {path}: not a slice file name of the form mpd.slice.<start>-<end>.json; "
                f"rename or remove it"
            )
        slices.append(SliceFile(path, int(match.group(1)), int(match.group(2))))
    slices.sort(key=lambda s: (s.start, s.end, s.path.name))
    return slices


def file_records(slices: list[SliceFile]) -> list[dict[str, Any]]:
    """[{"name", "md5", "bytes", "path"}] of the slice files read, ordered by name. hashlib releases
    the GIL, so the threads hash files in parallel (the whole MPD is 33 GB)."""
    paths = sorted((s.path for s in slices), key=lambda p: p.name)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        digests = list(pool.map(md5_file, paths))
    return [file_record(p, md5) for p, md5 in zip(paths, digests)]


def _files_per_batch(con: duckdb.DuckDBPyConnection) -> int:
    threads = _first_row(con, "SELECT current_setting('threads')")[0]
    return max(_MIN_FILES_PER_BATCH, int(threads))


def _batches(items: list[SliceFile], size: int) -> list[list[SliceFile]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- parsing -----------------------------------------------------------------------------------------


def _create_accumulators(con: duckdb.DuckDBPyConnection) -> None:
    """raw_interactions is appended to batch by batch (the bulk of the data is never copied twice)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE raw_interactions (user_key VARCHAR, item_key VARCHAR, ts BIGINT, seq BIGINT)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _mpd_playlists"
        " (file VARCHAR, pid BIGINT, user_key VARCHAR, name VARCHAR, modified_at BIGINT)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _mpd_track_names"
        " (track_uri VARCHAR, track_name VARCHAR, artist_name VARCHAR)"
    )


def _compact_track_names(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _mpd_track_names AS SELECT DISTINCT * FROM _mpd_track_names")


def _ingest_batch(con: duckdb.DuckDBPyConnection, batch: list[SliceFile]) -> None:
    """Parse a batch of slice files, check them, and append them to the accumulators."""
    files = [str(s.path) for s in batch]
    by_path = {str(s.path): s.path.name for s in batch}
    # Each slice is one JSON object; let it be as large as the largest file of the batch.
    max_object = max(s.path.stat().st_size for s in batch) + (1 << 20)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _mpd_batch_playlists AS
            SELECT filename AS path, unnest(generate_series(1, len(playlists))) AS playlist_no,
                   unnest(playlists) AS p
            FROM read_json(?, format = 'auto', records = true, columns = {_JSON_COLUMNS},
                           filename = true, maximum_object_size = {max_object})
            """,
            [files],
        )
    except duckdb.Error as exc:
        raise HarnessError(_json_error_message(exc, by_path)) from exc
    _check_every_file_has_playlists(con, by_path)
    _check_playlist_keys(con, by_path)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _mpd_batch_tracks AS
        SELECT path, p.pid AS pid, p.modified_at AS modified_at,
               unnest(generate_series(1, len(p.tracks))) AS track_no, unnest(p.tracks, recursive := true)
        FROM _mpd_batch_playlists
        """
    )
    _check_track_keys(con, by_path)
    _check_unique_positions(con, by_path)
    con.execute(
        "INSERT INTO _mpd_playlists SELECT parse_filename(path), p.pid, CAST(p.pid AS VARCHAR), p.name,"
        " p.modified_at FROM _mpd_batch_playlists"
    )
    con.execute(
        "INSERT INTO raw_interactions SELECT CAST(pid AS VARCHAR), track_uri, modified_at, pos FROM _mpd_batch_tracks"
    )
    con.execute(
        "INSERT INTO _mpd_track_names SELECT DISTINCT track_uri, track_name, artist_name FROM _mpd_batch_tracks"
    )


def _json_error_message(exc: duckdb.Error, by_path: dict[str, str]) -> str:
    """Name the slice file DuckDB complains about (its message carries the path and byte position)."""
    text = str(exc).split("\n")[0]
    text = re.sub(r"^[A-Za-z ]*Error: ", "", text).strip()
    for path, name in by_path.items():
        if path in text:
            return f"mpd: {name}: malformed, truncated or mistyped JSON ({text.replace(path, name)})"
    return f"mpd: one of {', '.join(sorted(by_path.values()))}: cannot read the JSON ({text})"


def _check_every_file_has_playlists(con: duckdb.DuckDBPyConnection, by_path: dict[str, str]) -> None:
    seen = {row[0] for row in con.execute("SELECT DISTINCT path FROM _mpd_batch_playlists").fetchall()}
    for path, name in sorted(by_path.items(), key=lambda kv: kv[1]):
        if path not in seen:
            raise HarnessError(
                f"mpd: {name}: no playlists (expected a JSON object {{\"info\": ..., \"playlists\": [...]}} "
                f"with at least one playlist)"
            )


def _check_playlist_keys(con: duckdb.DuckDBPyConnection, by_path: dict[str, str]) -> None:
    missing = " OR ".join(f"p.{key} IS NULL" for key in PLAYLIST_KEYS)
    row = _first_row(con, 
        f"SELECT path, playlist_no, p FROM _mpd_batch_playlists WHERE {missing}"
        " ORDER BY path, playlist_no LIMIT 1"
    )
    if row is None:
        return
    path, playlist_no, playlist = row
    key = next(k for k in PLAYLIST_KEYS if playlist[k] is None)
    where = f"playlist pid={playlist['pid']}" if playlist["pid"] is not None else f"playlist #{playlist_no}"
    raise HarnessError(f"mpd: {by_path[path]}: {where} has no {key!r} (missing or null)")


def _check_track_keys(con: duckdb.DuckDBPyConnection, by_path: dict[str, str]) -> None:
    missing = " OR ".join(f"{key} IS NULL" for key in TRACK_KEYS)
    row = _first_row(con, 
        f"SELECT path, pid, track_no, {', '.join(TRACK_KEYS)} FROM _mpd_batch_tracks WHERE {missing}"
        " ORDER BY path, pid, track_no LIMIT 1"
    )
    if row is None:
        return
    path, pid, track_no, *values = row
    key = next(k for k, v in zip(TRACK_KEYS, values) if v is None)
    raise HarnessError(f"mpd: {by_path[path]}: playlist pid={pid}, track #{track_no} has no {key!r} (missing or null)")


def _check_unique_positions(con: duckdb.DuckDBPyConnection, by_path: dict[str, str]) -> None:
    """seq = pos, so two tracks at one position would make the playlist's order ambiguous."""
    row = _first_row(con, 
        "SELECT path, pid, pos FROM _mpd_batch_tracks GROUP BY ALL HAVING count(*) > 1"
        " ORDER BY path, pid, pos LIMIT 1"
    )
    if row is not None:
        raise HarnessError(f"mpd: {by_path[row[0]]}: playlist pid={row[1]} has two tracks at pos={row[2]}")


def _check_unique_pids(con: duckdb.DuckDBPyConnection) -> None:
    row = _first_row(con, 
        "SELECT pid, min(file), max(file) FROM _mpd_playlists GROUP BY pid HAVING count(*) > 1"
        " ORDER BY pid LIMIT 1"
    )
    if row is not None:
        where = f"{row[1]} and {row[2]}" if row[1] != row[2] else row[1]
        raise HarnessError(f"mpd: playlist pid={row[0]} appears twice ({where}); pids must be unique")


# --- raw tables --------------------------------------------------------------------------------------


def _create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    # A track named differently in two playlists keeps its smallest (track_name, artist_name) pair.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE raw_items AS
        SELECT track_uri AS item_key, m.t AS title, m.t || '{TEXT_SEPARATOR}' || m.a AS text,
               CAST(NULL AS INTEGER) AS cluster
        FROM (SELECT track_uri, min({{'t': track_name, 'a': artist_name}}) AS m
              FROM _mpd_track_names GROUP BY track_uri)
        """
    )
    _create_titles(con)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE raw_queries AS
        SELECT DISTINCT query_key, normalized AS text, CAST(NULL AS VARCHAR) AS split
        FROM _mpd_titles WHERE normalized <> ''
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE raw_qrels AS
        SELECT DISTINCT q.query_key, i.item_key
        FROM _mpd_playlists p
        JOIN _mpd_titles q ON q.name = p.name
        JOIN raw_interactions i ON i.user_key = p.user_key
        WHERE q.normalized <> ''
        """
    )
    _check_query_keys_unique(con)


def _create_titles(con: duckdb.DuckDBPyConnection) -> None:
    """_mpd_titles(name, normalized, query_key) for every distinct raw title. normalize_name runs in
    Python on distinct titles only (about 93k for the whole MPD), so it is exactly the MPD's own."""
    names = [row[0] for row in con.execute("SELECT DISTINCT name FROM _mpd_playlists").fetchall()]
    normalized = [normalize_name(n) for n in names]
    con.execute("CREATE OR REPLACE TEMP TABLE _mpd_titles (name VARCHAR, normalized VARCHAR, query_key VARCHAR)")
    con.register("_mpd_titles_arrow", pa.table({"name": pa.array(names, pa.string()),
                                                "normalized": pa.array(normalized, pa.string())}))
    try:
        con.execute(
            "INSERT INTO _mpd_titles SELECT name, normalized, substr(md5(normalized), 1, 16) FROM _mpd_titles_arrow"
        )
    finally:
        con.unregister("_mpd_titles_arrow")


def _check_query_keys_unique(con: duckdb.DuckDBPyConnection) -> None:
    row = _first_row(con, 
        "SELECT query_key, min(text), max(text) FROM raw_queries GROUP BY query_key HAVING count(*) > 1 LIMIT 1"
    )
    if row is not None:  # a 64-bit md5 prefix collision: never expected, but never silent
        raise HarnessError(f"mpd: titles {row[1]!r} and {row[2]!r} share the query key {row[0]}")


def _notes(con: duckdb.DuckDBPyConnection, slices: list[SliceFile]) -> dict[str, Any]:
    playlists, empty_titles = _first_row(con, 
        "SELECT count(*), count(*) FILTER (WHERE q.normalized = '')"
        " FROM _mpd_playlists p JOIN _mpd_titles q USING (name)"
    )
    return {
        "slices": len(slices),
        "playlists": playlists,
        "playlists_with_empty_title": empty_titles,
        "distinct_titles": _first_row(con, "SELECT count(DISTINCT name) FROM _mpd_playlists")[0],
    }


def _drop(con: duckdb.DuckDBPyConnection, *tables: str) -> None:
    for table in tables:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _first_row(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple | None:
    """The first row of a query, or None; fetches everything so no unfinished result holds the connection."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None
