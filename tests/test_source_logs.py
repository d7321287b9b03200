"""The `logs` source on the hand-written fixture of docs/logs-schema.md (tests/fixtures/logs: 4 users,
24 interactions, 10 queries, 13 qrels, 8 items), as CSV and as typed Parquet, and every bad input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from harness.data.sources import SOURCES
from harness.data.sources.base import SourceContext
from harness.data.sources.logs import LOGS
from harness.errors import HarnessError

FIXTURE = Path(__file__).parent / "fixtures" / "logs"
TABLES = ("raw_items", "raw_interactions", "raw_queries", "raw_qrels")
ROW = 2**32  # raw_interactions.seq = seq * 2^32 + row in the file

# Each user's items in (timestamp, seq, file row) order, as docs/logs-schema.md explains them.
ORDER = {
    "u1": ["p1", "p2", "p3", "p1", "p8", "p6"],
    "u2": ["p5", "p4", "p6", "p2", "p7", "p1"],  # p5 and p4 share 09:00:00; seq 0 < 1
    "u3": ["p7", "p8", "p2", "p3", "p5", "p7"],  # p7 and p8 share timestamp and seq; file order decides
    "u4": ["p5", "p3", "p6", "p1", "p2", "p8"],  # three at one timestamp, written in reverse seq order
}


def load(path: Path = FIXTURE, con: duckdb.DuckDBPyConnection | None = None, **params: str):
    con = con or duckdb.connect()
    result = LOGS.load(con, SourceContext(data_dir=Path("/nonexistent"), params=params, path=path))
    return con, result


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {t: rows(con, f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


@pytest.fixture(scope="module")
def loaded():
    return load()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A writable copy of the fixture."""
    folder = tmp_path / "logs"
    shutil.copytree(FIXTURE, folder)
    return folder


def replace_line(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def csv_to_parquet(folder: Path, name: str, types: dict[str, pa.DataType] | None = None) -> None:
    """Rewrite <name>.csv as <name>.parquet, casting the named columns."""
    table = pa_csv.read_csv(folder / f"{name}.csv", convert_options=pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in ("user_id", "item_id", "query_id", "timestamp", "seq", "text")},
        strings_can_be_null=False))
    for column, dtype in (types or {}).items():
        table = table.set_column(table.schema.get_field_index(column), column, table[column].cast(dtype))
    pq.write_table(table, folder / f"{name}.parquet")
    (folder / f"{name}.csv").unlink()


# --- the raw tables ----------------------------------------------------------------------------------


def test_registered_under_its_name():
    assert SOURCES.load("logs") is LOGS
    assert LOGS.headline_k == 30


def test_counts(loaded):
    con, result = loaded
    counts = {t: rows(con, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}
    assert counts == {"raw_items": 8, "raw_interactions": 24, "raw_queries": 10, "raw_qrels": 13}
    assert result.notes == {"rows": {"interactions": 24, "items": 8, "qrels": 13, "queries": 10}, "items_file": True}
    assert result.params == {}


def test_interactions_first_middle_last(loaded):
    con, _ = loaded
    table = rows(con, "SELECT * FROM raw_interactions ORDER BY user_key, ts, seq")
    assert table[0] == ("u1", "p1", 1688212800, 1)  # file row 1 (line 3)
    assert table[12] == ("u3", "p7", 1688300000, 5)
    assert table[-1] == ("u4", "p8", 1688430000, 22)


def test_each_user_is_ordered_by_timestamp_seq_then_file_row(loaded):
    con, _ = loaded
    got: dict[str, list[str]] = {}
    for user, item in rows(con, "SELECT user_key, item_key FROM raw_interactions ORDER BY user_key, ts, seq"):
        got.setdefault(user, []).append(item)
    assert got == ORDER


def test_timestamps_and_seq(loaded):
    con, _ = loaded
    got = {(u, i, t): s for u, i, t, s in rows(con, "SELECT * FROM raw_interactions")}
    assert got[("u1", "p3", 1688220000)] == 7  # '2023-07-01T14:00:00Z'
    assert got[("u2", "p5", 1688288400)] == 3  # '2023-07-02 09:00:00' (naive: UTC), seq 0, row 3
    assert got[("u2", "p4", 1688288400)] == 1 * ROW + 0  # seq 1, row 0
    assert got[("u2", "p2", 1688293800)] == 12  # '2023-07-02T12:30:00+02:00' is 10:30 UTC
    assert got[("u4", "p6", 1688400000)] == 2 * ROW + 2


def test_timestamps_do_not_depend_on_the_connection_time_zone(loaded):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    load(con=con)
    assert snapshot(con) == snapshot(loaded[0])
    assert rows(con, "SELECT current_setting('TimeZone')") == [("America/New_York",)]


def test_tables_do_not_depend_on_thread_count(loaded, logs: Path):
    csv_to_parquet(logs, "interactions")  # the Parquet path too (DuckDB's parallel scan)
    for folder in (FIXTURE, logs):
        con = duckdb.connect()
        con.execute("SET threads = 1")
        assert snapshot(load(folder, con=con)[0]) == snapshot(loaded[0])


def test_queries_and_qrels(loaded):
    con, _ = loaded
    queries = rows(con, "SELECT * FROM raw_queries ORDER BY CAST(substr(query_key, 2) AS INTEGER)")
    assert queries[0] == ("q1", "space podcasts", "train")
    assert queries[3] == ("q4", "football analysis", "test")
    assert queries[-1] == ("q10", "astronomy", "train")
    assert [q[2] for q in queries] == ["train", "train", "valid", "test", "train", "test"] + ["train"] * 4
    qrels = rows(con, "SELECT * FROM raw_qrels ORDER BY ALL")
    assert qrels.count(("q3", "p1")) == 2  # duplicates are the compiler's to remove
    assert qrels[0] == ("q1", "p2") and qrels[-1] == ("q9", "p6")


def test_items(loaded):
    con, _ = loaded
    items = {i[0]: i[1:] for i in rows(con, "SELECT * FROM raw_items")}
    assert sorted(items) == [f"p{i}" for i in range(1, 9)]
    assert items["p1"] == ("The Daily Brief", "News, politics and the day's top stories", None)
    assert items["p5"] == ("True Crime Weekly", "True Crime Weekly", None)  # empty text: the title
    assert items["p7"] == ("Football Talk", 'Match analysis, transfers and "hot takes"', None)


def test_files(loaded):
    _, result = loaded
    assert [f["name"] for f in result.files] == ["interactions.csv", "items.csv", "qrels.csv", "queries.csv"]
    for entry in result.files:
        data = (FIXTURE / entry["name"]).read_bytes()
        assert (entry["md5"], entry["bytes"]) == (hashlib.md5(data).hexdigest(), len(data))


def test_no_helper_tables_or_views_are_left(loaded):
    con, _ = loaded
    assert sorted(r[0] for r in rows(con, "SELECT table_name FROM duckdb_tables()")) == sorted(TABLES)
    assert rows(con, "SELECT view_name FROM duckdb_views() WHERE NOT internal") == []


# --- Parquet, optional columns and files ---------------------------------------------------------------


def test_parquet_with_string_columns_gives_the_same_tables(logs: Path, loaded):
    for name in ("interactions", "queries", "qrels", "items"):
        csv_to_parquet(logs, name)
    con, result = load(logs)
    assert snapshot(con) == snapshot(loaded[0])
    assert [f["name"] for f in result.files] == ["interactions.parquet", "items.parquet", "qrels.parquet", "queries.parquet"]


def test_parquet_with_typed_columns(tmp_path: Path):
    """Integer ids become their decimal text; a timestamp column becomes epoch seconds."""
    folder = tmp_path / "typed"
    folder.mkdir()
    pq.write_table(pa.table({
        "user_id": pa.array([7, 7, 7, 8], pa.int64()),
        "item_id": pa.array([1, 2, 1, 2], pa.int32()),
        "timestamp": pa.array([1_688_212_800_000, 1_688_212_800_500, 1_688_212_799_000, 0], pa.timestamp("ms", "UTC")),
        "seq": pa.array([0, 0, 0, 0], pa.int16()),
        "extra": ["ignored"] * 4,
    }), folder / "interactions.parquet")
    pq.write_table(pa.table({"query_id": pa.array([5], pa.int64()), "text": ["q"]}), folder / "queries.parquet")
    pq.write_table(pa.table({"query_id": pa.array([5], pa.int64()), "item_id": pa.array([2], pa.int64())}),
                   folder / "qrels.parquet")
    pq.write_table(pa.table({"item_id": pa.array([1, 2], pa.int64()),
                             "title": pa.array(["a", "b"]).dictionary_encode()}), folder / "items.parquet")
    con, _ = load(folder)
    # Integer ids in every file that holds them stay integers in the raw tables (fast joins and sorts); the
    # compiler turns them into their decimal text (test_integer_ids_compile_as_text)
    assert rows(con, "SELECT * FROM raw_interactions ORDER BY user_key, ts, seq") == [
        (7, 1, 1688212799, 2), (7, 1, 1688212800, 0), (7, 2, 1688212800, 1), (8, 2, 0, 3)
    ]
    assert rows(con, "SELECT * FROM raw_queries") == [(5, "q", None)]
    assert rows(con, "SELECT * FROM raw_qrels") == [(5, 2)]
    assert rows(con, "SELECT * FROM raw_items ORDER BY item_key") == [(1, "a", "a", None), (2, "b", "b", None)]


def test_integer_ids_compile_as_text(tmp_path: Path):
    """A folder with integer ids and the same folder with those ids written as text compile to the same tables:
    keys are their decimal digits and dense ids follow the text order ('10' before '9'), whether the raw tables
    hold integers (every file's ids are integers) or text (one file's are text)."""
    from harness.data.compile import compile_dataset

    n_users, n_items, n_queries = 12, 11, 6
    inter = {"user_id": [u for u in range(n_users) for _ in range(7)],
             "item_id": [(u * 3 + k) % n_items for u in range(n_users) for k in range(7)],
             "timestamp": [1_000 + (k * 5) % 7 for _ in range(n_users) for k in range(7)]}
    qrels = {"query_id": [q for q in range(n_queries) for _ in range(3)],
             "item_id": [(q * 2 + k) % n_items for q in range(n_queries) for k in range(3)]}
    queries = {"query_id": list(range(n_queries)), "text": [f"query {q}" for q in range(n_queries)]}
    items = {"item_id": list(range(n_items)), "title": [f"item {i}" for i in range(n_items)]}

    def write(name: str, text_ids: set[str]) -> dict[str, list[tuple]]:
        folder = tmp_path / name
        folder.mkdir()
        for table, data in (("interactions", inter), ("qrels", qrels), ("queries", queries), ("items", items)):
            columns = {c: pa.array([str(v) for v in values]) if f"{table}.{c}" in text_ids
                       else pa.array(values, pa.int64()) if c.endswith("_id") or c == "timestamp" else pa.array(values)
                       for c, values in data.items()}
            pq.write_table(pa.table(columns), folder / f"{table}.parquet")
        dest = tmp_path / f"{name}.duckdb"
        compile_dataset("logs", path=folder, dest=dest, force=True)
        with duckdb.connect(str(dest), read_only=True) as con:
            return {t: rows(con, f"SELECT * FROM {t} ORDER BY ALL")
                    for t in ("items", "users", "sequences", "rec_examples", "queries", "qrels")}

    as_int = write("ints", set())
    as_text = write("text", {"interactions.user_id", "interactions.item_id", "qrels.query_id", "qrels.item_id",
                             "queries.query_id", "items.item_id"})
    mixed = write("mixed", {"items.item_id", "queries.query_id"})  # items and queries keys stay text everywhere
    assert as_int == as_text == mixed
    assert [key for _, key, _ in as_int["users"]][:3] == ["0", "1", "10"]  # text order
    assert as_int["items"][2][1] == "10" and as_int["queries"][0][1] == "0"


def test_optional_file_and_columns(logs: Path):
    """No items file: the ids used, without text. No split: NULL. No seq: the file row. No item text: the title."""
    (logs / "items.csv").unlink()
    for name, keep in (("interactions.csv", 3), ("queries.csv", 2)):
        lines = (logs / name).read_text(encoding="utf-8").splitlines()
        (logs / name).write_text("\n".join(",".join(line.split(",")[:keep]) for line in lines) + "\n", encoding="utf-8")
    con, result = load(logs)
    assert rows(con, "SELECT * FROM raw_items ORDER BY item_key")[0] == ("p1", None, None, None)
    assert rows(con, "SELECT count(*) FROM raw_items") == [(8,)]
    assert rows(con, "SELECT DISTINCT split FROM raw_queries") == [(None,)]
    assert rows(con, "SELECT seq FROM raw_interactions WHERE user_key = 'u2' AND item_key = 'p4'") == [(0,)]
    assert rows(con, "SELECT max(seq) FROM raw_interactions") == [(23,)]
    assert result.notes["items_file"] is False
    assert [f["name"] for f in result.files] == ["interactions.csv", "qrels.csv", "queries.csv"]

    (logs / "items.csv").write_text("item_id,title\n" + "".join(f"p{i},Show {i}\n" for i in range(1, 9)))
    con, _ = load(logs)
    assert rows(con, "SELECT * FROM raw_items WHERE item_key = 'p3'") == [("p3", "Show 3", "Show 3", None)]


def test_crlf_line_ends_and_a_byte_order_mark_change_nothing(logs: Path, loaded):
    for path in logs.glob("*.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert snapshot(load(logs)[0]) == snapshot(loaded[0])


def test_default_folder_is_data_dir_logs(tmp_path: Path):
    shutil.copytree(FIXTURE, tmp_path / "logs")
    con = duckdb.connect()
    LOGS.load(con, SourceContext(data_dir=tmp_path, params={}))
    assert rows(con, "SELECT count(*) FROM raw_interactions") == [(24,)]


# --- bad input ---------------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path):
    with pytest.raises(HarnessError, match=r"logs: the dataset path .*nowhere is not a folder; it must hold "
                                            r"interactions\.parquet or interactions\.csv with columns"):
        load(tmp_path / "nowhere")
    with pytest.raises(HarnessError, match=r"no dataset path was given, and the default .*logs is not a folder"):
        LOGS.load(duckdb.connect(), SourceContext(data_dir=tmp_path, params={}))


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("interactions", r"user_id, item_id, timestamp, \[seq\]"),
        ("queries", r"query_id, text, \[split\]"),
        ("qrels", r"query_id, item_id"),
    ],
)
def test_missing_file_says_which_file_with_which_columns(logs: Path, name: str, columns: str):
    (logs / f"{name}.csv").unlink()
    with pytest.raises(HarnessError, match=rf"missing {name}\.parquet or {name}\.csv with columns {columns}"):
        load(logs)


def test_both_formats_of_one_table(logs: Path):
    shutil.copy(logs / "qrels.csv", logs / "qrels.parquet")
    with pytest.raises(HarnessError, match=r"holds both qrels\.parquet and qrels\.csv; keep one"):
        load(logs)


def test_csv_missing_a_column(logs: Path):
    replace_line(logs / "interactions.csv", 1, "user_id,item_id,time,seq")
    with pytest.raises(HarnessError, match=r"interactions\.csv: missing column 'timestamp' \(expected .*; "
                                            r"found user_id, item_id, time, seq\)"):
        load(logs)


def test_parquet_missing_a_column(logs: Path):
    csv_to_parquet(logs, "qrels")
    table = pq.read_table(logs / "qrels.parquet").drop_columns(["item_id"])
    pq.write_table(table, logs / "qrels.parquet")
    with pytest.raises(HarnessError, match=r"qrels\.parquet: missing column 'item_id'"):
        load(logs)


def test_csv_line_with_too_few_fields(logs: Path):
    replace_line(logs / "interactions.csv", 6, "u3,p7")
    with pytest.raises(HarnessError, match=r"interactions\.csv line 6: malformed CSV \(Expected 4 columns, got 2: u3,p7\)"):
        load(logs)


def test_csv_that_is_not_utf8(logs: Path):
    (logs / "items.csv").write_bytes("item_id,title\np1,Caf\u00e9 Talk\n".encode("latin-1"))
    with pytest.raises(HarnessError, match=r"items\.csv: malformed CSV \(.*UTF8"):
        load(logs)


def test_item_text_may_span_lines(logs: Path):
    replace_line(logs / "items.csv", 3, 'p2,Deep Space Hour,"Astronomy\nand space"')
    con, _ = load(logs)
    assert rows(con, "SELECT text FROM raw_items WHERE item_key = 'p2'") == [("Astronomy\nand space",)]


def test_empty_csv(logs: Path):
    (logs / "queries.csv").write_text("")
    with pytest.raises(HarnessError, match=r"queries\.csv is empty; line 1 must be a header"):
        load(logs)


def test_duplicate_header_column(logs: Path):
    replace_line(logs / "qrels.csv", 1, "query_id,item_id,item_id")
    with pytest.raises(HarnessError, match=r"qrels\.csv line 1: column 'item_id' appears twice"):
        load(logs)


def test_unreadable_parquet(logs: Path):
    (logs / "interactions.csv").unlink()
    (logs / "interactions.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(HarnessError, match=r"interactions\.parquet: not a readable Parquet file"):
        load(logs)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("u1,p2,yesterday,0", r"interactions\.csv line 5: timestamp is 'yesterday'; expected integer epoch seconds"),
        ("u1,p2,1688216400000,0", r"interactions\.csv line 5: timestamp is '1688216400000'; .*milliseconds"),
        ("u1,p2,2023-13-01,0", r"line 5: timestamp is '2023-13-01'"),
        ("u1,p2,,0", r"line 5: timestamp is an empty value"),
        (",p2,1688216400,0", r"interactions\.csv line 5: user_id is an empty value; expected a non-empty id"),
        ("u1,p 2,1688216400,0", r"line 5: item_id is 'p 2'; expected a non-empty id without spaces"),
        ("u1,p2,1688216400,-1", r"line 5: seq is '-1'; expected an integer from 0 to 2147483647"),
        ("u1,p2,1688216400,1.5", r"line 5: seq is '1.5'; expected an integer"),
        ("u1,p2,1688216400,", r"line 5: seq is an empty value"),
    ],
)
def test_bad_interaction_values_name_file_line_and_value(logs: Path, line: str, message: str):
    replace_line(logs / "interactions.csv", 5, line)
    with pytest.raises(HarnessError, match=message):
        load(logs)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("q3,news today,validation", r"queries\.csv line 4: split is 'validation'; expected one of train, valid, test"),
        ("q3,news today,", r"queries\.csv line 4: split is an empty value; expected one of train, valid, test"),
        ("q3,  ,valid", r"queries\.csv line 4: text is '  '; expected a non-empty text"),
        ("q1,news today,valid", r"queries\.csv line 4: query_id 'q1' appears again \(first at line 2\)"),
    ],
)
def test_bad_query_values(logs: Path, line: str, message: str):
    replace_line(logs / "queries.csv", 4, line)
    with pytest.raises(HarnessError, match=message):
        load(logs)


def test_qrel_of_an_unknown_query(logs: Path):
    replace_line(logs / "qrels.csv", 7, "q99,p5")
    with pytest.raises(HarnessError, match=r"qrels\.csv line 7: query_id 'q99' is not in queries\.csv"):
        load(logs)


def test_duplicate_item(logs: Path):
    replace_line(logs / "items.csv", 5, "p2,Another Space Show,")
    with pytest.raises(HarnessError, match=r"items\.csv line 5: item_id 'p2' appears again \(first at line 3\)"):
        load(logs)


def test_item_missing_from_the_catalogue(logs: Path):
    replace_line(logs / "interactions.csv", 11, "u4,p05,1688400000,0")
    with pytest.raises(HarnessError, match=r"interactions\.csv line 11: item_id 'p05' is not in items\.csv"):
        load(logs)
    replace_line(logs / "interactions.csv", 11, "u4,p5,1688400000,0")
    replace_line(logs / "qrels.csv", 3, "q1,p9")
    with pytest.raises(HarnessError, match=r"qrels\.csv line 3: item_id 'p9' is not in items\.csv"):
        load(logs)


def test_item_without_title(logs: Path):
    replace_line(logs / "items.csv", 2, "p1,,Daily news")
    with pytest.raises(HarnessError, match=r"items\.csv line 2: title is an empty value"):
        load(logs)


def test_parquet_errors_name_the_row(logs: Path):
    csv_to_parquet(logs, "interactions")
    table = pq.read_table(logs / "interactions.parquet")
    ts = table["timestamp"].to_pylist()
    ts[9] = None
    pq.write_table(table.set_column(2, "timestamp", pa.array(ts, pa.string())), logs / "interactions.parquet")
    with pytest.raises(HarnessError, match=r"interactions\.parquet row 10: timestamp is an empty value"):
        load(logs)


@pytest.mark.parametrize(
    ("column", "dtype", "message"),
    [
        ("item_id", pa.float64(), r"column 'item_id' has type double; it must hold integers or strings"),
        ("timestamp", pa.float64(), r"column 'timestamp' has type double; it must hold integer epoch seconds"),
        ("seq", pa.float32(), r"column 'seq' has type float; it must hold integers"),
    ],
)
def test_parquet_column_of_the_wrong_type(tmp_path: Path, column: str, dtype: pa.DataType, message: str):
    folder = tmp_path / "typed"
    shutil.copytree(FIXTURE, folder)
    values = {"user_id": [1, 1], "item_id": [1, 2], "timestamp": [10, 20], "seq": [0, 1]}
    columns = {k: pa.array(v, dtype if k == column else pa.int64()) for k, v in values.items()}
    pq.write_table(pa.table(columns), folder / "interactions.parquet")
    (folder / "interactions.csv").unlink()
    with pytest.raises(HarnessError, match=rf"interactions\.parquet: {message}"):
        load(folder)


def test_unknown_parameter():
    with pytest.raises(HarnessError, match=r"logs: unknown parameter 'format' \(logs takes no parameters\)"):
        load(format="csv")


# --- end to end through the compiler -----------------------------------------------------------------


def test_compiles_end_to_end(tmp_path: Path):
    """Counts derived by hand from the fixture under the compiler's defaults (docs/logs-schema.md):
    p4 has no relevant query, so it and its one interaction go; every user keeps >= 5 interactions.
    Recommendation training targets (positions 3..t-2): u1 p3 p1, u2 p2, u3 p2 p3, u4 p6 p1 = 7 examples
    over {p1, p2, p3, p6}; valid targets (t-1) p8 p7 p5 p2 keep only u4's; test targets (t) p6 p1 p7 p8
    keep u1's and u2's. Search keeps the file's splits; the duplicate q3 -> p1 pair counts once."""
    compile_module = pytest.importorskip("harness.data.compile")
    outcome = compile_module.compile_dataset("logs", path=FIXTURE, cache_dir=tmp_path)
    counts = outcome.manifest["counts"]
    assert (counts["items"], counts["users"], counts["sequences"], counts["queries"], counts["qrels"]) == (
        7, 4, 23, 10, 12
    )
    assert counts["rec_examples"] == {"train": 7, "valid": 1, "test": 2}
    assert counts["queries_by_split"] == {"train": 7, "valid": 1, "test": 2}
    assert counts["qrels_by_split"] == {"train": 9, "valid": 1, "test": 2}
    assert outcome.manifest["dropped"]["items_only_in_recommendation"] == 1
    assert outcome.manifest["dropped"]["qrels_duplicate_rows"] == 1
    again = compile_module.compile_dataset("logs", path=FIXTURE, cache_dir=tmp_path / "again")
    assert again.fingerprint == outcome.fingerprint
