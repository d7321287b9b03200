"""The `mpd` source on a two-slice fixture in the Million Playlist Dataset's exact format
(tests/fixtures/mpd: 10 invented playlists, 12 invented tracks; docs/mpd.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from harness.data.sources import SOURCES
from harness.data.sources import mpd as mpd_module
from harness.data.sources.base import SourceContext
from harness.data.sources.mpd import MPD, normalize_name
from harness.errors import HarnessError

FIXTURE = Path(__file__).parent / "fixtures" / "mpd"
SLICES = ("mpd.slice.0-4.json", "mpd.slice.5-9.json")

T = {  # the fixture's track URIs
    1: "spotify:track:LdzdZaEa7ROF8cXhZrJJnG",
    2: "spotify:track:Gl8tbohZDpooU9GX2O7dYR",
    3: "spotify:track:tDCNwtgiPgI2oTpRAIhUYP",
    4: "spotify:track:bbV25dftpth1oAgyyawcqK",
    5: "spotify:track:AvdUfwR3H3Q6Q0nd4aXMSN",
    6: "spotify:track:BZ7iyTvZ5m7xkLMk4WYJmr",
    7: "spotify:track:T0kAHwxtFilhTGPIu6vvit",
    8: "spotify:track:o2Od5GHUoteJ7SLcy6hsIj",
    9: "spotify:track:wxtiaiTJmSYulwduwWdznK",
    10: "spotify:track:xf7ojEEeuWthbbq5pzXpPj",
    11: "spotify:track:RDhUNSY14p3DDEe5EUwIKk",
    12: "spotify:track:aVuKRDT9xnkjsAaAnEmlOa",
}
# pid -> (modified_at, tracks in pos order)
PLAYLISTS = {
    0: (1493424000, [1, 2, 3, 4, 5]),
    1: (1506556800, [5, 9, 2, 11, 12]),
    2: (1487894400, [6, 7, 8, 10, 6]),
    3: (1500000000, [1, 9, 12, 3, 11]),
    4: (1509494400, [3, 1, 4, 12, 2]),
    5: (1499990400, [9, 11, 5, 12, 2, 10]),
    6: (1480000000, [7, 10, 4, 3, 8]),
    7: (1505001600, [8, 6, 10, 7, 1]),
    8: (1498000000, [4, 3, 1, 8, 9]),
    9: (1510000000, [11, 2, 12, 5, 9]),
}


def load(path: Path = FIXTURE, con: duckdb.DuckDBPyConnection | None = None, **params: str):
    con = con or duckdb.connect()
    result = MPD.load(con, SourceContext(data_dir=Path("/nonexistent"), params=params, path=path))
    return con, result


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def loaded():
    return load()


@pytest.fixture
def slices(tmp_path: Path) -> Path:
    """A writable copy of the fixture."""
    folder = tmp_path / "data"
    shutil.copytree(FIXTURE, folder)
    return folder


def edit_slice(folder: Path, name: str, change) -> None:
    path = folder / name
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc, indent=4), encoding="utf-8")


# --- the raw tables ----------------------------------------------------------------------------------


def test_registered_under_its_name():
    assert SOURCES.load("mpd") is MPD
    assert MPD.headline_k == 30


def test_counts(loaded):
    con, _ = loaded
    counts = {t: rows(con, f"SELECT count(*) FROM {t}")[0][0]
              for t in ("raw_items", "raw_interactions", "raw_queries", "raw_qrels")}
    assert counts == {"raw_items": 12, "raw_interactions": 51, "raw_queries": 6, "raw_qrels": 32}


def test_interactions_first_middle_last(loaded):
    con, _ = loaded
    table = rows(con, "SELECT * FROM raw_interactions ORDER BY CAST(user_key AS INTEGER), ts, seq")
    assert len(table) == 51
    assert table[0] == ("0", T[1], 1493424000, 0)
    assert table[25] == ("5", T[9], 1499990400, 0)
    assert table[-1] == ("9", T[9], 1510000000, 4)


def test_every_playlist_is_a_sequence_in_track_order(loaded):
    """user = pid, ts = modified_at for every track, seq = pos; a repeated track stays (pid 2)."""
    con, _ = loaded
    got: dict[int, tuple[int, list[int]]] = {}
    uri_to_t = {uri: t for t, uri in T.items()}
    for user, item, ts, seq in rows(con, "SELECT * FROM raw_interactions ORDER BY user_key, seq"):
        modified, tracks = got.setdefault(int(user), (ts, []))
        assert ts == modified and seq == len(tracks)
        tracks.append(uri_to_t[item])
    assert got == PLAYLISTS


def test_items(loaded):
    con, _ = loaded
    items = rows(con, "SELECT * FROM raw_items ORDER BY item_key")
    assert [i[0] for i in items] == sorted(T.values())
    by_key = {i[0]: i[1:] for i in items}
    assert by_key[T[1]] == ("Sunday Static", "Sunday Static \u2014 The Paper Lanterns", None)
    assert by_key[T[6]] == ("Weightless (feat. Ora)", "Weightless (feat. Ora) \u2014 DJ Kestrel", None)
    # slice 0-4 stores it \u-escaped, slice 5-9 as raw UTF-8: both decode to the same text
    assert by_key[T[11]] == ("Låt Det Gå", "Låt Det Gå \u2014 Sigrid Ås", None)
    assert rows(con, "SELECT typeof(cluster) FROM raw_items LIMIT 1") == [("INTEGER",)]


def test_queries_are_unique_normalised_titles(loaded):
    """'Throwbacks'/'throwbacks ', 'Chill Vibes'/'chill_vibes' and 'WORKOUT!!'/'Workout' merge; the
    title '...' normalises to '' and gives no query (its playlist stays a recommendation sequence)."""
    con, _ = loaded
    queries = rows(con, "SELECT query_key, text, split FROM raw_queries ORDER BY text")
    assert [q[1] for q in queries] == [
        "chill vibes", "låt det gå", "road trip 2017", "rock & roll", "throwbacks", "workout"
    ]
    assert all(q[2] is None for q in queries)
    for key, text, _ in queries:
        assert key == hashlib.md5(text.encode("utf-8")).hexdigest()[:16]
    assert rows(con, "SELECT count(*) FROM raw_interactions WHERE user_key = '3'") == [(5,)]


def test_relevant_items_are_the_union_over_playlists_sharing_a_title(loaded):
    con, _ = loaded
    qrels = rows(con, "SELECT q.text, r.item_key FROM raw_qrels r JOIN raw_queries q USING (query_key)")
    relevant: dict[str, set[str]] = {}
    for text, item in qrels:
        relevant.setdefault(text, set()).add(item)
    assert len(qrels) == sum(len(v) for v in relevant.values())  # no duplicate pairs
    union = lambda *pids: {T[t] for pid in pids for t in PLAYLISTS[pid][1]}  # noqa: E731
    assert relevant == {
        "throwbacks": union(0, 4),
        "chill vibes": union(1, 5),
        "workout": union(2, 7),
        "rock & roll": union(6),
        "road trip 2017": union(8),
        "låt det gå": union(9),
    }
    assert relevant["throwbacks"] == {T[1], T[2], T[3], T[4], T[5], T[12]}  # written out once by hand
    assert relevant["workout"] == {T[1], T[6], T[7], T[8], T[10]}


@pytest.mark.parametrize(
    ("title", "normalised"),
    [
        ("Throwbacks", "throwbacks"),
        ("throwbacks ", "throwbacks"),
        ("WORKOUT!!", "workout"),
        ("chill_vibes", "chill vibes"),
        ("Road Trip (2017)", "road trip 2017"),
        ("Rock & Roll", "rock & roll"),
        ("...", ""),
        ("  Hip\tHop\n\nmix ", "hip hop mix"),
        ("80's #1 hits", "80's 1 hits"),
        ("R&B/Soul", "r&b soul"),
        ("country-pop + more?", "country-pop + more?"),
        ("Låt Det Gå", "låt det gå"),
        ("{party}=[fun]", "party [fun]"),
    ],
)
def test_normalize_name_is_the_mpd_one(title, normalised):
    assert normalize_name(title) == normalised


def test_files_params_and_notes(loaded):
    _, result = loaded
    assert [f["name"] for f in result.files] == list(SLICES)
    for entry in result.files:
        data = (FIXTURE / entry["name"]).read_bytes()
        assert entry["md5"] == hashlib.md5(data).hexdigest()
        assert entry["bytes"] == len(data)
        assert Path(entry["path"]) == (FIXTURE / entry["name"]).resolve()
    assert result.params == {"max_slices": None}
    assert result.notes == {"slices": 2, "playlists": 10, "playlists_with_empty_title": 1, "distinct_titles": 10}


def test_no_helper_tables_are_left(loaded):
    con, _ = loaded
    names = sorted(r[0] for r in rows(con, "SELECT table_name FROM duckdb_tables()"))
    assert names == ["raw_interactions", "raw_items", "raw_qrels", "raw_queries"]


# --- subsets, lookup and determinism -----------------------------------------------------------------


def test_max_slices_takes_the_lowest_pids(slices: Path):
    """Slices are ordered by their numeric start, not by name ('10-14' sorts before '5-9' as text)."""
    doc = json.loads((slices / "mpd.slice.5-9.json").read_text(encoding="utf-8"))
    for playlist in doc["playlists"]:
        playlist["pid"] += 5
    (slices / "mpd.slice.10-14.json").write_text(json.dumps(doc), encoding="utf-8")

    con, result = load(slices, max_slices="2")
    assert rows(con, "SELECT min(CAST(user_key AS INTEGER)), max(CAST(user_key AS INTEGER)) FROM raw_interactions") == [
        (0, 9)
    ]
    assert [f["name"] for f in result.files] == list(SLICES)
    assert result.params == {"max_slices": 2}

    con, result = load(slices, max_slices="1")
    assert rows(con, "SELECT count(*), count(DISTINCT user_key) FROM raw_interactions") == [(25, 5)]
    assert sorted(r[0] for r in rows(con, "SELECT text FROM raw_queries")) == ["chill vibes", "throwbacks", "workout"]
    assert [f["name"] for f in result.files] == [SLICES[0]]

    con, result = load(slices)
    assert result.notes["slices"] == 3
    assert [f["name"] for f in result.files] == ["mpd.slice.0-4.json", "mpd.slice.10-14.json", "mpd.slice.5-9.json"]


def _snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {t: rows(con, f"SELECT * FROM {t} ORDER BY ALL")
            for t in ("raw_items", "raw_interactions", "raw_queries", "raw_qrels")}


def test_tables_do_not_depend_on_listing_order_or_batching(monkeypatch):
    reference = _snapshot(load()[0])
    original_glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, pattern: sorted(original_glob(self, pattern), reverse=True))
    monkeypatch.setattr(mpd_module, "_MIN_FILES_PER_BATCH", 1)  # one slice per batch (threads = 1)
    monkeypatch.setattr(mpd_module, "_COMPACT_NAMES_EVERY", 1)
    con = duckdb.connect()
    con.execute("SET threads = 1")
    assert _snapshot(load(con=con)[0]) == reference


def test_folder_lookup(tmp_path: Path):
    """ctx.path or its data/ subfolder; without a path, <data_dir>/mpd/data then <data_dir>/mpd."""
    unpacked = tmp_path / "spotify_million_playlist_dataset"
    shutil.copytree(FIXTURE, unpacked / "data")
    assert load(unpacked)[1].notes["playlists"] == 10

    for folder in (tmp_path / "d1" / "mpd" / "data", tmp_path / "d2" / "mpd"):
        shutil.copytree(FIXTURE, folder)
        data_dir = folder.parent if folder.name == "mpd" else folder.parent.parent
        result = MPD.load(duckdb.connect(), SourceContext(data_dir=data_dir, params={}))
        assert result.files[0]["path"] == str((folder / SLICES[0]).resolve())


# --- bad input ---------------------------------------------------------------------------------------


def test_missing_folder_names_the_expected_files(tmp_path: Path):
    with pytest.raises(HarnessError, match=r"no Million Playlist Dataset slice files \(mpd\.slice\.\*\.json\) in "):
        MPD.load(duckdb.connect(), SourceContext(data_dir=tmp_path, params={}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match=r"no Million Playlist Dataset slice files .* in .*empty, .*empty/data"):
        load(tmp_path / "empty")
    with pytest.raises(HarnessError, match=r"is not a folder"):
        load(FIXTURE / SLICES[0])


def test_truncated_json_names_file_and_position(slices: Path):
    path = slices / SLICES[1]
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(HarnessError, match=r"mpd: mpd\.slice\.5-9\.json: malformed.*byte \d+") as err:
        load(slices)
    assert str(slices) not in str(err.value)  # the file is named, not the temp path


def test_malformed_json_names_file(slices: Path):
    path = slices / SLICES[0]
    path.write_text(path.read_text(encoding="utf-8").replace('"pid": 3,', '"pid": 3,,'), encoding="utf-8")
    with pytest.raises(HarnessError, match=r"mpd\.slice\.0-4\.json: malformed.*byte \d+"):
        load(slices)


def test_wrongly_typed_value_names_file(slices: Path):
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"][2].update(pid="two"))
    with pytest.raises(HarnessError, match=r"mpd\.slice\.0-4\.json: .*\"two\""):
        load(slices)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: doc["playlists"][2].update(pid="two"),
         r"mpd\.slice\.0-4\.json: malformed, truncated or mistyped JSON \(playlist #3: 'pid' is \"two\", expected an integer\)"),
        (lambda doc: doc["playlists"][1]["tracks"][3].update(track_uri=7),
         r"mpd\.slice\.0-4\.json: .*\(playlist pid=1, track #4: 'track_uri' is 7, expected a string\)"),
        (lambda doc: doc["playlists"][4].update(modified_at="yesterday"),
         r"mpd\.slice\.0-4\.json: .*\(playlist pid=4: 'modified_at' is \"yesterday\", expected an integer\)"),
        (lambda doc: doc["playlists"][0].update(tracks={"pos": 0}),
         r"mpd\.slice\.0-4\.json: .*\(playlist pid=0: 'tracks' is \{\"pos\": 0\}, expected a list\)"),
        (lambda doc: doc.update(playlists="none"),
         r"mpd\.slice\.0-4\.json: .*\('playlists' is \"none\", expected a list\)"),
    ],
)
def test_wrongly_typed_values_name_playlist_track_and_key(slices: Path, change, message: str):
    edit_slice(slices, SLICES[0], change)
    with pytest.raises(HarnessError, match=message):
        load(slices)


def test_invalid_utf8_names_file_and_byte(slices: Path):
    path = slices / SLICES[1]
    data = path.read_bytes()
    at = data.index(b"Slow Parade")
    path.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    with pytest.raises(HarnessError, match=rf"mpd\.slice\.5-9\.json: malformed.*invalid UTF-8 at byte {at}\)"):
        load(slices)


@pytest.mark.parametrize("key", ["name", "tracks"])
def test_playlist_missing_a_key_names_file_pid_and_key(slices: Path, key: str):
    edit_slice(slices, SLICES[1], lambda doc: doc["playlists"][2].pop(key))
    with pytest.raises(HarnessError, match=rf"mpd\.slice\.5-9\.json: playlist pid=7 has no '{key}'"):
        load(slices)


def test_playlist_missing_its_pid_is_named_by_position(slices: Path):
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"][3].pop("pid"))
    with pytest.raises(HarnessError, match=r"mpd\.slice\.0-4\.json: playlist #4 has no 'pid'"):
        load(slices)


@pytest.mark.parametrize("key", ["track_uri", "track_name", "artist_name"])
def test_track_missing_a_key_names_file_pid_track_and_key(slices: Path, key: str):
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"][1]["tracks"][3].pop(key))
    with pytest.raises(HarnessError, match=rf"mpd\.slice\.0-4\.json: playlist pid=1, track #4 has no '{key}'"):
        load(slices)


def test_null_value_counts_as_missing(slices: Path):
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"][0].update(name=None))
    with pytest.raises(HarnessError, match=r"playlist pid=0 has no 'name' \(missing or null\)"):
        load(slices)


@pytest.mark.parametrize(
    "content",
    ["", "  \n", "[]", "null", " null ", "5", '"text"', '{"info": {}}', '{"info": {}, "playlists": []}',
     '{"playlists": null}', '[{"pid": 1}]', "\ufeff{}"],
)
def test_file_without_playlists(slices: Path, content: str):
    (slices / SLICES[1]).write_text(content, encoding="utf-8")
    with pytest.raises(HarnessError, match=r"mpd\.slice\.5-9\.json: no playlists"):
        load(slices)


def test_two_tracks_at_one_position(slices: Path):
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"][4]["tracks"][2].update(pos=1))
    with pytest.raises(HarnessError, match=r"mpd\.slice\.0-4\.json: playlist pid=4 has two tracks at pos=1"):
        load(slices)


def test_a_null_playlist_or_track_is_missing_every_key(slices: Path):
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"].insert(1, None))
    with pytest.raises(HarnessError, match=r"mpd\.slice\.0-4\.json: playlist #2 has no 'pid'"):
        load(slices)
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"].pop(1))
    edit_slice(slices, SLICES[0], lambda doc: doc["playlists"][3]["tracks"].insert(2, None))
    with pytest.raises(HarnessError, match=r"mpd\.slice\.0-4\.json: playlist pid=3, track #3 has no 'track_uri'"):
        load(slices)


def test_duplicate_pid_across_files(slices: Path):
    edit_slice(slices, SLICES[1], lambda doc: doc["playlists"][0].update(pid=3))
    with pytest.raises(HarnessError, match=r"pid=3 appears twice \(mpd\.slice\.0-4\.json and mpd\.slice\.5-9\.json\)"):
        load(slices)


def test_badly_named_slice_file(slices: Path):
    shutil.copy(slices / SLICES[0], slices / "mpd.slice.first.json")
    with pytest.raises(HarnessError, match=r"mpd\.slice\.first\.json: not a slice file name"):
        load(slices)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_slices": "0"}, r"max_slices='0' is not a positive integer"),
        ({"max_slices": "two"}, r"max_slices='two' is not a positive integer"),
        ({"max_slices": "3"}, r"max_slices=3, but .* holds only 2 slice files"),
        ({"slices": "2"}, r"unknown parameter 'slices' \(known: max_slices\)"),
    ],
)
def test_bad_parameters(params: dict[str, str], message: str):
    with pytest.raises(HarnessError, match=message):
        load(**params)


# --- public subsets: what may be filled in, and what may not ----------------------------------------


def strip_keys(folder: Path, *keys: str) -> None:
    """Remove `keys` from every playlist and track of every slice, like a public MPD subset."""

    def change(doc):
        for playlist in doc["playlists"]:
            for track in playlist["tracks"]:
                for key in keys:
                    track.pop(key, None)
            for key in keys:
                playlist.pop(key, None)

    for name in SLICES:
        edit_slice(folder, name, change)


def test_stripped_public_style_slices_build_and_say_what_was_filled_in(slices: Path):
    """No `pos` (the list order is the order) and no `modified_at` (MISSING_MODIFIED_AT for every
    playlist): the same tables as the full fixture but for ts, and the notes count what was filled in."""
    reference = _snapshot(load()[0])
    strip_keys(slices, "pos", "modified_at")
    con, result = load(slices)
    assert result.notes == {"slices": 2, "playlists": 10, "playlists_with_empty_title": 1, "distinct_titles": 10,
                            "filled_in": {"pos": 51, "modified_at": 10}}
    assert mpd_module.MISSING_MODIFIED_AT == 0
    assert rows(con, "SELECT DISTINCT ts FROM raw_interactions") == [(0,)]
    got = _snapshot(con)
    assert got["raw_interactions"] == sorted((u, i, 0, s) for u, i, _, s in reference["raw_interactions"])
    assert {t: v for t, v in got.items() if t != "raw_interactions"} == {
        t: v for t, v in reference.items() if t != "raw_interactions"
    }


def test_stripping_pos_alone_changes_nothing_but_the_notes(slices: Path):
    """The fixture's pos is its list order (as in the MPD), so the list order gives the very same tables."""
    reference = _snapshot(load()[0])
    strip_keys(slices, "pos")
    con, result = load(slices)
    assert _snapshot(con) == reference
    assert result.notes["filled_in"] == {"pos": 51, "modified_at": 0}


def test_null_values_are_filled_in_like_missing_ones(slices: Path):
    def change(doc):
        doc["playlists"][1]["modified_at"] = None
        doc["playlists"][1]["tracks"][2]["pos"] = None  # pid 1, third track: list index 2, as its pos was

    edit_slice(slices, SLICES[0], change)
    con, result = load(slices)
    assert result.notes["filled_in"] == {"pos": 1, "modified_at": 1}
    assert rows(con, "SELECT DISTINCT ts FROM raw_interactions WHERE user_key = '1'") == [(0,)]
    assert rows(con, "SELECT seq FROM raw_interactions WHERE user_key = '1' ORDER BY seq") == [(i,) for i in range(5)]


def test_a_filled_in_pos_that_collides_with_a_given_one_is_an_error(slices: Path):
    def change(doc):
        tracks = doc["playlists"][4]["tracks"]
        tracks[1].pop("pos")  # filled with its list index 1 ...
        tracks[2]["pos"] = 1  # ... which the next track claims too

    edit_slice(slices, SLICES[0], change)
    with pytest.raises(HarnessError, match=r"mpd\.slice\.0-4\.json: playlist pid=4 has two tracks at pos=1"):
        load(slices)


def test_a_stripped_slice_lacking_track_uri_is_refused_naming_the_file(slices: Path):
    strip_keys(slices, "pos", "modified_at")
    edit_slice(slices, SLICES[1], lambda doc: doc["playlists"][3]["tracks"][0].pop("track_uri"))
    with pytest.raises(HarnessError, match=r"mpd: mpd\.slice\.5-9\.json: playlist pid=8, track #1 has no 'track_uri'"):
        load(slices)


@pytest.mark.parametrize("key", ["pid", "name", "tracks", "track_uri", "track_name", "artist_name"])
def test_what_the_protocol_needs_is_never_filled_in(slices: Path, key: str):
    strip_keys(slices, "pos", "modified_at", key)
    with pytest.raises(HarnessError, match=rf"mpd: mpd\.slice\.0-4\.json: playlist .*has no '{key}'"):
        load(slices)


def test_stripped_slices_compile_and_data_show_prints_what_was_filled_in(slices: Path, tmp_path: Path, capsys):
    pytest.importorskip("harness.data.compile")
    from harness.cli import main

    strip_keys(slices, "pos", "modified_at")
    cache = str(tmp_path / "cache")
    assert main(["data", "build", "mpd", "--path", str(slices), "--cache-dir", cache]) == 0
    built = capsys.readouterr().out
    assert "filled in: modified_at 10, pos 51 (missing from the input" in built
    assert main(["data", "show", "mpd", "--cache-dir", cache]) == 0
    shown = capsys.readouterr().out
    assert "filled in    modified_at 10, pos 51 (missing from the input; the source's docs say with what)" in shown
    assert main(["data", "show", "mpd", "--cache-dir", cache, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"]["filled_in"] == {"pos": 51, "modified_at": 10}


# --- end to end through the compiler -----------------------------------------------------------------


def test_compiles_end_to_end(tmp_path: Path):
    """Counts hand-derived from the fixture under the compiler's defaults (min 5 interactions per user,
    10% valid and test queries, evaluation targets must be training targets)."""
    compile_module = pytest.importorskip("harness.data.compile")
    outcome = compile_module.compile_dataset("mpd", path=FIXTURE, cache_dir=tmp_path)
    counts = outcome.manifest["counts"]
    assert (counts["items"], counts["users"], counts["sequences"], counts["queries"], counts["qrels"]) == (
        12, 10, 51, 6, 32
    )
    # training targets: position 3 of each 5-track playlist, positions 3 and 4 of pid 5 (6 tracks) =
    # tracks {3, 2, 8, 12, 4, 5, 10, 1}; valid (position t-1) misses pids 1 (T11) and 7 (T7); test
    # (position t) misses pids 2 (T6), 3 (T11), 8 and 9 (T9).
    assert counts["rec_examples"] == {"train": 11, "valid": 8, "test": 6}
    assert counts["queries_by_split"] == {"train": 4, "valid": 1, "test": 1}  # round(0.1 * 6) = 1 each
    assert outcome.manifest["params"] == {"max_slices": None}
    assert [f["name"] for f in outcome.manifest["files"]] == list(SLICES)
    again = compile_module.compile_dataset("mpd", path=FIXTURE, cache_dir=tmp_path / "again")
    assert again.fingerprint == outcome.fingerprint
    # the same two slices named by a parameter: same tables, but the parameter is part of the fingerprint
    named = compile_module.compile_dataset("mpd:max_slices=2", path=FIXTURE, cache_dir=tmp_path)
    assert named.manifest["counts"] == counts
    assert named.fingerprint != outcome.fingerprint
