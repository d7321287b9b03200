"""The Million Playlist Dataset (MPD) as a raw source (paper §5: playlists are the recommendation
sequences, unique normalised playlist titles are the search queries). docs/mpd.md is the user's guide.

Input: a folder of the MPD's slice files `mpd.slice.<start>-<end>.json`, each
`{"info": {...}, "playlists": [{"name", "pid", "modified_at", "tracks": [{"pos", "track_uri",
"track_name", "artist_name", ...}], ...}]}`. The folder is ctx.path, else <data_dir>/mpd/data, else
<data_dir>/mpd; a folder holding a `data/` subfolder of slices (the unpacked zip) is also accepted.
Public subsets that drop a track's `pos` or a playlist's `modified_at` are accepted: `pos` is then the
track's index in its playlist's list, `modified_at` is MISSING_MODIFIED_AT, and the notes count both.

Raw tables (harness.data.sources.base):
    raw_items         item_key = track_uri, title = track_name, text = "track_name — artist_name"
    raw_interactions  user_key = pid, item_key = track_uri, ts = the playlist's modified_at, seq = pos
    raw_queries       one row per distinct non-empty normalize_name(title); query_key = first 16 hex
                      digits of md5(normalised title); split NULL (the compiler assigns it)
    raw_qrels         a title's relevant tracks: the union of the tracks of every playlist with that title

Each slice file is read once: its bytes are hashed (MD5, for the manifest) and parsed by Arrow's JSON
reader against a schema of only the keys used (every other key is skipped unconverted), in parallel
threads, a batch of files at a time; the checks run on the Arrow columns and each batch is appended to
DuckDB tables, so memory stays bounded when a user points at all 1,000 slices. Python touches only file
names, the distinct titles, and (only when a file cannot be read) the file it diagnoses.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from harness.data.fetch import file_record
from harness.data.params import Param, parse_params as parse_declared
from harness.data.sources.base import SourceContext, SourceResult
from harness.errors import HarnessError

SLICE_GLOB = "mpd.slice.*.json"
_SLICE_NAME = re.compile(r"^mpd\.slice\.(\d+)-(\d+)\.json$")

# What BM25 / bi-encoders index for a track; an em dash keeps titles and artists apart.
TEXT_SEPARATOR = " \u2014 "

# Keys the protocol needs; a playlist or track without one (or with null) is an error naming the file.
PLAYLIST_KEYS = ("pid", "name", "tracks")
TRACK_KEYS = ("track_uri", "track_name", "artist_name")
# Keys filled in when missing or null (public MPD subsets strip them), each counted in the notes:
#   pos          the track's index in its playlist's list (0, 1, 2, ...), i.e. the list order;
#   modified_at  MISSING_MODIFIED_AT for every track of the playlist. A playlist is ordered by seq (= pos)
#                within one ts, so this never changes the protocol; the compiler drops NULL ts, hence a value.
FILLED_KEYS = ("pos", "modified_at")
MISSING_MODIFIED_AT = 0

# The JSON reader's schema: only these keys are converted; any other key is skipped, never type-checked.
_TRACK = pa.struct([("pos", pa.int64()), ("track_uri", pa.string()), ("track_name", pa.string()),
                    ("artist_name", pa.string())])
_PLAYLIST = pa.struct([("pid", pa.int64()), ("name", pa.string()), ("modified_at", pa.int64()),
                       ("tracks", pa.list_(_TRACK))])
_SLICE_SCHEMA = pa.schema([("playlists", pa.list_(_PLAYLIST))])
# Arrow's JSON reader takes a block at a time; a slice is one JSON object, so one block holds the file.
_MAX_BLOCK = (1 << 31) - 1

# Slice files parsed per batch (one thread parses one file): at least the thread count, few enough that
# the batch (about 33 MB of JSON per real slice, a third of that as columns) stays small. Never changes
# the output.
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
        md5s: dict[Path, str] = {}
        filled = dict.fromkeys(FILLED_KEYS, 0)
        threads = int(_first_row(con, "SELECT current_setting('threads')")[0])
        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for number, batch in enumerate(_batches(slices, max(_MIN_FILES_PER_BATCH, threads)), start=1):
                    for parsed in _ingest_batch(con, pool, batch):
                        md5s[parsed.path] = parsed.md5
                        for key in FILLED_KEYS:
                            filled[key] += parsed.filled[key]
                    if number % _COMPACT_NAMES_EVERY == 0:
                        _compact_track_names(con)
            _check_unique_pids(con)
            _create_raw_tables(con)
            notes = _notes(con, slices, filled)
        finally:
            _drop(con, "_mpd_playlists", "_mpd_track_names", "_mpd_titles")
        return SourceResult(files=file_records(slices, md5s), params={"max_slices": max_slices}, notes=notes)


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


def file_records(slices: list[SliceFile], md5s: dict[Path, str]) -> list[dict[str, Any]]:
    """[{"name", "md5", "bytes", "path"}] of the slice files read, ordered by name; the MD5s were
    computed from the very bytes that were parsed (each file is read once)."""
    paths = sorted((s.path for s in slices), key=lambda p: p.name)
    return [file_record(p, md5s[p]) for p in paths]


def _batches(items: list[SliceFile], size: int) -> list[list[SliceFile]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- parsing -----------------------------------------------------------------------------------------


@dataclass
class ParsedSlice:
    """One slice file as Arrow columns, checked, with what was filled in."""

    path: Path
    md5: str
    playlists: pa.Table  # file, pid, user_key, name, modified_at: one row per playlist
    tracks: pa.Table  # user_key, item_key, ts, seq, track_name, artist_name: one row per track
    filled: dict[str, int]  # FILLED_KEYS -> tracks (pos) or playlists (modified_at) filled in


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


def _ingest_batch(con: duckdb.DuckDBPyConnection, pool: ThreadPoolExecutor,
                  batch: list[SliceFile]) -> list[ParsedSlice]:
    """Parse and check a batch of slice files in parallel threads (Arrow and hashlib release the GIL),
    then append them to the accumulators. A bad file raises for the first one in slice order."""
    parsed = [future.result() for future in [pool.submit(parse_slice, s.path) for s in batch]]
    playlists = pa.concat_tables([p.playlists for p in parsed])
    tracks = pa.concat_tables([p.tracks for p in parsed])
    con.register("_mpd_batch_playlists", playlists)
    con.register("_mpd_batch_tracks", tracks)
    try:
        con.execute("INSERT INTO _mpd_playlists SELECT * FROM _mpd_batch_playlists")
        con.execute("INSERT INTO raw_interactions SELECT user_key, item_key, ts, seq FROM _mpd_batch_tracks")
        con.execute(
            "INSERT INTO _mpd_track_names SELECT DISTINCT item_key, track_name, artist_name FROM _mpd_batch_tracks"
        )
    finally:
        con.unregister("_mpd_batch_playlists")
        con.unregister("_mpd_batch_tracks")
    return parsed


def parse_slice(path: Path) -> ParsedSlice:
    """Read one slice file (once: MD5 and parse from the same bytes), check it, fill in what may be filled."""
    data = path.read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    name = path.name
    playlists = _read_playlists(data, name)
    if len(playlists) == 0:
        raise _no_playlists(name)
    pid, title, modified_at, track_lists = playlists.flatten()  # the parent's nulls carried into each field
    _check_playlist_keys(name, {"pid": pid, "name": title, "tracks": track_lists})
    pos, track_uri, track_name, artist_name = pc.list_flatten(track_lists).flatten()
    try:  # Arrow's JSON reader copies string bytes as they are: check they are UTF-8 (a few MB per slice)
        for text in (title, track_uri, track_name, artist_name):
            text.validate(full=True)
    except pa.ArrowInvalid as exc:
        _diagnose(data, name, exc)

    filled_modified_at = modified_at.null_count
    if filled_modified_at:
        modified_at = pc.fill_null(modified_at, MISSING_MODIFIED_AT)
    # Tracks in file order; `parent` is each track's playlist, `index` its index in the playlist's list.
    lengths = pc.list_value_length(track_lists).to_numpy(zero_copy_only=False)
    parent = pc.list_parent_indices(track_lists).to_numpy(zero_copy_only=False)
    index = np.arange(len(parent), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    pids = pid.to_numpy(zero_copy_only=False)
    _check_track_keys(name, pids[parent], index,
                      {"track_uri": track_uri, "track_name": track_name, "artist_name": artist_name})
    filled_pos = pos.null_count
    seq = pos.to_numpy(zero_copy_only=False) if not filled_pos else np.asarray(
        pc.fill_null(pos, pa.array(index)).to_numpy(zero_copy_only=False))
    _check_unique_positions(name, pids[parent], seq, index)

    user_key = pc.cast(pid, pa.string())
    return ParsedSlice(
        path=path,
        md5=md5,
        playlists=pa.table({"file": pa.array([name] * len(pid), pa.string()), "pid": pid, "user_key": user_key,
                            "name": title, "modified_at": modified_at}),
        tracks=pa.table({"user_key": user_key.take(parent), "item_key": track_uri,
                         "ts": modified_at.take(parent), "seq": pa.array(seq, pa.int64()),
                         "track_name": track_name, "artist_name": artist_name}),
        filled={"pos": filled_pos, "modified_at": filled_modified_at},
    )


def _read_playlists(data: bytes, name: str) -> pa.StructArray:
    """Every playlist of the file (null entries included), in file order, as one StructArray."""
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        # Not a JSON object (empty, an array, `null`, ...): never handed to Arrow, whose reader crashes on
        # a top-level null; the diagnosis says what it is.
        _diagnose(data, name)
    try:
        table = pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=min(len(data) + 1, _MAX_BLOCK)),
            parse_options=pa_json.ParseOptions(explicit_schema=_SLICE_SCHEMA, newlines_in_values=True,
                                               unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        _diagnose(data, name, exc)
    # One row per JSON object in the file (normally one); a row without playlists adds none.
    return pc.list_flatten(table.column("playlists").combine_chunks())


def _no_playlists(name: str) -> HarnessError:
    return HarnessError(
        f"mpd: {name}: no playlists (expected a JSON object {{\"info\": ..., \"playlists\": [...]}} "
        f"with at least one playlist)"
    )


def _check_playlist_keys(name: str, columns: dict[str, pa.Array]) -> None:
    """The first playlist (in file order) lacking a key the protocol needs, named by pid or position."""
    first = _first_null(columns)
    if first is None:
        return
    row, key = first
    pid = columns["pid"][row].as_py()
    where = f"playlist pid={pid}" if pid is not None else f"playlist #{row + 1}"
    raise HarnessError(f"mpd: {name}: {where} has no {key!r} (missing or null)")


def _check_track_keys(name: str, pids: np.ndarray, index: np.ndarray, columns: dict[str, pa.Array]) -> None:
    first = _first_null(columns)
    if first is None:
        return
    row, key = first
    raise HarnessError(
        f"mpd: {name}: playlist pid={pids[row]}, track #{index[row] + 1} has no {key!r} (missing or null)"
    )


def _first_null(columns: dict[str, pa.Array]) -> tuple[int, str] | None:
    """(row, key) of the first row with a null among `columns`, the first such key in their order."""
    if not any(col.null_count for col in columns.values()):
        return None
    missing = np.zeros(len(next(iter(columns.values()))), dtype=bool)
    for col in columns.values():
        if col.null_count:
            missing |= col.is_null().to_numpy(zero_copy_only=False)
    row = int(np.flatnonzero(missing)[0])
    return row, next(key for key, col in columns.items() if not col[row].is_valid)


def _check_unique_positions(name: str, pids: np.ndarray, seq: np.ndarray, index: np.ndarray) -> None:
    """seq = pos, so two tracks at one position would make the playlist's order ambiguous. The MPD's pos
    is the list index, which is checked in one pass; otherwise the smallest (pid, pos) repeated is named."""
    if np.array_equal(seq, index):
        return
    order = np.lexsort((seq, pids))
    p, s = pids[order], seq[order]
    repeated = np.flatnonzero((p[1:] == p[:-1]) & (s[1:] == s[:-1]))
    if len(repeated):
        i = order[repeated[0]]
        raise HarnessError(f"mpd: {name}: playlist pid={pids[i]} has two tracks at pos={seq[i]}")


def _diagnose(data: bytes, name: str, exc: Exception | None = None) -> NoReturn:
    """Why a slice file could not be read, named with the file: decoded again with Python's json (only
    on this error path) to give the byte position of a syntax error, or the playlist, track and key of a
    value of the wrong type; a file holding no JSON object with playlists has no playlists."""
    prefix = f"mpd: {name}: malformed, truncated or mistyped JSON"
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        raise HarnessError(f"{prefix} (invalid UTF-8 at byte {bom + err.start})") from None
    decoder, docs, at = json.JSONDecoder(), [], _skip_space(text, 0)
    while at < len(text):  # one object per file; several in a row are read like JSON lines
        try:
            doc, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as err:
            byte = bom + len(text[: err.pos].encode("utf-8"))
            ends = ", the end of the file: truncated?" if _skip_space(text, err.pos) >= len(text) else ""
            raise HarnessError(
                f"{prefix} ({err.msg} at byte {byte}, line {err.lineno} column {err.colno}{ends})"
            ) from None
        docs.append(doc)
        at = _skip_space(text, at)
    number = 0
    for doc in docs:
        playlists = doc.get("playlists") if isinstance(doc, dict) else None
        if playlists is None:
            continue
        if not isinstance(playlists, list):
            raise HarnessError(f"{prefix} ('playlists' is {_shown(playlists)}, expected a list)")
        for playlist in playlists:
            number += 1
            problem = _mistyped(playlist, f"playlist #{number}")
            if problem:
                raise HarnessError(f"{prefix} ({problem})")
    if number == 0:
        raise _no_playlists(name)
    raise HarnessError(f"mpd: {name}: cannot read the JSON ({exc or 'it does not start with a JSON object'})")


_PLAYLIST_TYPES = {"pid": "integer", "name": "string", "modified_at": "integer", "tracks": "list"}
_TRACK_TYPES = {"pos": "integer", "track_uri": "string", "track_name": "string", "artist_name": "string"}


def _mistyped(playlist: Any, where: str) -> str | None:
    """What is of the wrong type in one decoded playlist (None, or keys absent or null, are not)."""
    if playlist is None:
        return None
    if not isinstance(playlist, dict):
        return f"{where} is {_shown(playlist)}, expected an object"
    if _is_type(playlist.get("pid"), "integer"):
        where = f"playlist pid={playlist['pid']}"
    for key, kind in _PLAYLIST_TYPES.items():
        if not _is_type(playlist.get(key), kind):
            return f"{where}: {key!r} is {_shown(playlist[key])}, expected {'an' if kind == 'integer' else 'a'} {kind}"
    for number, track in enumerate(playlist.get("tracks") or [], start=1):
        if track is None:
            continue
        if not isinstance(track, dict):
            return f"{where}, track #{number} is {_shown(track)}, expected an object"
        for key, kind in _TRACK_TYPES.items():
            if not _is_type(track.get(key), kind):
                return (f"{where}, track #{number}: {key!r} is {_shown(track[key])}, "
                        f"expected {'an' if kind == 'integer' else 'a'} {kind}")
    return None


def _is_type(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 63)
    return isinstance(value, {"string": str, "list": list}[kind])


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


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


def _notes(con: duckdb.DuckDBPyConnection, slices: list[SliceFile], filled: dict[str, int]) -> dict[str, Any]:
    """Counts for the manifest; `filled_in` (only when something was) counts the tracks whose `pos` and
    the playlists whose `modified_at` were missing or null and filled in (docs/mpd.md)."""
    playlists, empty_titles = _first_row(con, 
        "SELECT count(*), count(*) FILTER (WHERE q.normalized = '')"
        " FROM _mpd_playlists p JOIN _mpd_titles q USING (name)"
    )
    notes: dict[str, Any] = {
        "slices": len(slices),
        "playlists": playlists,
        "playlists_with_empty_title": empty_titles,
        "distinct_titles": _first_row(con, "SELECT count(DISTINCT name) FROM _mpd_playlists")[0],
    }
    if any(filled.values()):
        notes["filled_in"] = dict(filled)
    return notes


def _drop(con: duckdb.DuckDBPyConnection, *tables: str) -> None:
    for table in tables:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _first_row(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple | None:
    """The first row of a query, or None; fetches everything so no unfinished result holds the connection."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None
