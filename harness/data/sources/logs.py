"""A platform's own logs in the canonical schema (the paper's Podcasts case: data no one can share).
docs/logs-schema.md is the user-facing definition; this module implements exactly that.

The folder (ctx.path, else <data_dir>/logs) holds one file per table, each `<table>.parquet` or
`<table>.csv` (UTF-8, comma-separated, header row):

    interactions  user_id, item_id, timestamp [, seq]      required
    queries       query_id, text [, split]                 required
    qrels         query_id, item_id                        required
    items         item_id, title [, text]                  optional

Ids (integers or strings) become keys: VARCHAR, or BIGINT where every file holding that id has integers
(the compiler uses their decimal text wherever text matters: same compiled tables, faster; _integer_keys).
`timestamp` is integer epoch seconds or an ISO 8601 timestamp (naive ones are UTC). A user's interactions are ordered by (timestamp, seq, row in the file);
that order is folded into raw_interactions.seq as seq * 2^32 + row, so it never depends on how the file
was read. Extra columns are ignored. Every check names the file and the line (CSV) or row (Parquet).

How: each file becomes a DuckDB view with a 0-based `_row` (Parquet: read_parquet's file_row_number;
CSV: pyarrow's multi-threaded reader, as DuckDB's CSV reader has no row numbers to report lines with).
One pass per file converts it into its raw table, a value that cannot be read becoming NULL; the checks
then scan the raw tables and name the first bad row; `_row` is dropped last. No Python loop touches a row.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from harness.data.fetch import file_record, line_ending_problem
from harness.data.params import unknown_parameters
from harness.data.sources.base import SourceContext, SourceResult
from harness.errors import HarnessError

SPLITS = ("train", "valid", "test")
FORMATS = ("parquet", "csv")
# Larger integer timestamps are taken for milliseconds or microseconds (epoch seconds reach it in year 5138).
MAX_EPOCH_SECONDS = 100_000_000_000
MAX_SEQ = 2**31  # seq occupies the high bits of the stored tie-breaker: seq * 2^32 + row
_ROW_BITS = 32


@dataclass(frozen=True)
class Column:
    name: str  # in the input file
    kind: str  # "id", "text", "timestamp", "seq" or "split"
    raw: str  # the raw-table column it becomes (harness.data.sources.base)
    required: bool = True


@dataclass(frozen=True)
class TableSchema:
    name: str
    raw: str  # the raw table it becomes
    columns: tuple[Column, ...]
    required: bool = True  # whether the file itself must be there

    def describe(self) -> str:
        cols = [c.name if c.required else f"[{c.name}]" for c in self.columns]
        return f"{self.name}.parquet or {self.name}.csv with columns {', '.join(cols)}"


SCHEMA: tuple[TableSchema, ...] = (
    TableSchema("interactions", "raw_interactions", (
        Column("user_id", "id", "user_key"), Column("item_id", "id", "item_key"),
        Column("timestamp", "timestamp", "ts"), Column("seq", "seq", "seq", required=False))),
    TableSchema("queries", "raw_queries", (
        Column("query_id", "id", "query_key"), Column("text", "text", "text"),
        Column("split", "split", "split", required=False))),
    TableSchema("qrels", "raw_qrels", (
        Column("query_id", "id", "query_key"), Column("item_id", "id", "item_key"))),
    TableSchema("items", "raw_items", (
        Column("item_id", "id", "item_key"), Column("title", "text", "title"),
        Column("text", "text", "text", required=False)), required=False),
)


@dataclass(frozen=True)
class InputTable:
    """One input file as a DuckDB view `view` with its present columns and a 0-based `_row`."""

    schema: TableSchema
    path: Path
    view: str
    types: dict[str, pa.DataType]  # the present schema columns and their Arrow types
    integer_keys: frozenset[str] = frozenset()  # raw key columns kept as BIGINT (see _integer_keys)

    @property
    def is_csv(self) -> bool:
        return self.path.suffix == ".csv"

    def position(self, row: int) -> str:
        """'line 7' of a CSV (the header is line 1) or 'row 6' of a Parquet file (1-based)."""
        return f"line {row + 2}" if self.is_csv else f"row {row + 1}"

    def where(self, row: int) -> str:
        return f"{self.path.name} {self.position(row)}"

    def has(self, column: str) -> bool:
        return column in self.types


@dataclass(frozen=True)
class LogsSource:
    name: str = "logs"
    description: str = "a platform's own logs in the canonical schema (Parquet/CSV; docs/logs-schema.md)"
    headline_k: int = 30
    params = ()  # not a field: logs take no parameters of their own (harness.data.params)

    def load(self, con: duckdb.DuckDBPyConnection, ctx: SourceContext) -> SourceResult:
        unknown_parameters("logs", "logs", ctx.params, self.params)
        folder = find_folder(ctx)
        paths = {schema.name: find_table_file(folder, schema) for schema in SCHEMA}
        with _opened(con, paths) as tables:
            integer = _integer_keys(tables)
            tables = {name: dataclasses.replace(t, integer_keys=integer) for name, t in tables.items()}
            with _utc(con):
                for table in tables.values():
                    _create_raw(con, table)
            for table in tables.values():
                _check_values(con, table)
            _check_unique(con, tables["queries"])
            _check_queries_known(con, tables["qrels"], tables["queries"])
            if "items" in tables:
                _check_unique(con, tables["items"])
                _fill_item_text(con)
                _check_items_known(con, tables["interactions"], tables["items"])
                _check_items_known(con, tables["qrels"], tables["items"])
            else:
                _create_items_from_ids(con)
            for table in tables.values():
                con.execute(f"ALTER TABLE {table.schema.raw} DROP COLUMN _row")
            notes = {
                "rows": {name: _count(con, table.schema.raw) for name, table in sorted(tables.items())},
                "items_file": "items" in tables,
            }
        files = [file_record(p) for p in sorted((p for p in paths.values() if p), key=lambda p: p.name)]
        return SourceResult(files=files, params={}, notes=notes)


LOGS = LogsSource()


# --- finding and opening the files -------------------------------------------------------------------


def find_folder(ctx: SourceContext) -> Path:
    folder = Path(ctx.path) if ctx.path is not None else Path(ctx.data_dir) / "logs"
    if not folder.is_dir():
        how = "the dataset path" if ctx.path is not None else "no dataset path was given, and the default"
        raise HarnessError(
            f"logs: {how} {folder} is not a folder; it must hold "
            + "; ".join(s.describe() + ("" if s.required else " (optional)") for s in SCHEMA)
            + " (docs/logs-schema.md)"
        )
    return folder


def find_table_file(folder: Path, schema: TableSchema) -> Path | None:
    found = [folder / f"{schema.name}.{fmt}" for fmt in FORMATS if (folder / f"{schema.name}.{fmt}").is_file()]
    if len(found) > 1:
        raise HarnessError(f"logs: {folder} holds both {found[0].name} and {found[1].name}; keep one")
    if not found:
        if schema.required:
            raise HarnessError(f"logs: {folder}: missing {schema.describe()} (docs/logs-schema.md)")
        return None
    return found[0]


@contextlib.contextmanager
def _opened(con: duckdb.DuckDBPyConnection, paths: dict[str, Path | None]) -> Iterator[dict[str, InputTable]]:
    """Open every present file as a view; drop the views (and registered CSVs) afterwards."""
    tables: dict[str, InputTable] = {}
    try:
        for schema in SCHEMA:
            path = paths[schema.name]
            if path is not None:
                tables[schema.name] = _open_table(con, schema, path)
        yield tables
    finally:
        for table in tables.values():
            _close(con, table)


def _open_table(con: duckdb.DuckDBPyConnection, schema: TableSchema, path: Path) -> InputTable:
    header = _read_header(path) if path.suffix == ".csv" else _parquet_schema(path)
    missing = [c.name for c in schema.columns if c.required and c.name not in header]
    if missing:
        raise HarnessError(
            f"logs: {path.name}: missing column {missing[0]!r} (expected {schema.describe()}; "
            f"found {', '.join(header) or 'no columns'})"
        )
    types = {c.name: header[c.name] for c in schema.columns if c.name in header}
    for column in schema.columns:
        if column.name in types:
            _check_type(path, column, types[column.name])
    view = f"_logs_{schema.name}"
    if path.suffix == ".csv":
        has_text = any(c.kind == "text" for c in schema.columns)
        data = _read_csv(path, list(types), newlines_in_values=has_text)
        n_rows = data.num_rows
        con.register(view, data)
    else:
        n_rows = pq.ParquetFile(path).metadata.num_rows
        columns = ", ".join(f'"{name}"' for name in types)
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {columns}, file_row_number AS _row"
            f" FROM read_parquet({_sql_string(str(path))}, file_row_number = true)"
        )
    table = InputTable(schema, path, view, types)
    if n_rows >= 2**_ROW_BITS:  # the row is the low 32 bits of raw_interactions.seq
        _close(con, table)
        raise HarnessError(f"logs: {path.name}: {n_rows} rows; at most {2**_ROW_BITS - 1} fit, split the logs")
    return table


def _close(con: duckdb.DuckDBPyConnection, table: InputTable) -> None:
    if table.is_csv:
        con.unregister(table.view)
    else:
        con.execute(f"DROP VIEW IF EXISTS {table.view}")


def _read_header(path: Path) -> dict[str, pa.DataType]:
    """The column names on line 1 (only that line is decoded: a bad byte further down is reported by
    the CSV reader with its line)."""
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        names = next(csv.reader([first.decode("utf-8-sig")]), None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise HarnessError(f"logs: {path.name} line 1: cannot read the header ({exc})") from exc
    if not names:
        raise HarnessError(f"logs: {path.name} is empty; line 1 must be a header naming the columns")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise HarnessError(f"logs: {path.name} line 1: column {duplicates[0]!r} appears twice")
    return {name: pa.string() for name in names}


def _read_csv(path: Path, columns: list[str], newlines_in_values: bool) -> pa.Table:
    """The CSV as strings (ids stay exactly as written) plus `_row`; malformed lines name their number.
    Quoted values may span lines only where `newlines_in_values` (text files: slower to split)."""

    def read(use_threads: bool) -> pa.Table:
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=use_threads),
            parse_options=pa_csv.ParseOptions(
                ignore_empty_lines=False,  # keeps line numbers exact
                newlines_in_values=newlines_in_values,
            ),
            convert_options=pa_csv.ConvertOptions(
                include_columns=columns, column_types={c: pa.string() for c in columns},
                strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )

    try:
        table = read(use_threads=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        try:  # the single-threaded reader knows the line number of a bad row; rerun only to report it
            read(use_threads=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as detailed:
            exc = detailed
        message = str(exc).removeprefix("CSV parse error: ")
        located = re.match(r"Row #(\d+): (.*)", message, re.DOTALL)
        where = f"{path.name} line {located.group(1)}" if located else path.name
        ending = line_ending_problem(path)  # any of LF, CRLF and CR ends a line; said in case it is the cause
        hint = (f"; it mixes line endings ({ending[1]}): convert it to one kind (e.g. `dos2unix {path.name}`)"
                if ending else "")
        raise HarnessError(f"logs: {where}: malformed CSV ({located.group(2) if located else message}){hint}") from exc
    return table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))


def _parquet_schema(path: Path) -> dict[str, pa.DataType]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise HarnessError(f"logs: {path.name}: not a readable Parquet file ({exc})") from exc
    return {field.name: field.type for field in schema}


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- column types and values -------------------------------------------------------------------------


def _is_string(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_string(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


_ACCEPTED = {  # kind -> (type test, what the column must hold)
    "id": (lambda t: _is_string(t) or pa.types.is_integer(t), "integers or strings"),
    "text": (_is_string, "strings"),
    "split": (_is_string, "strings (train, valid or test)"),
    "seq": (lambda t: _is_string(t) or pa.types.is_integer(t), "integers"),
    "timestamp": (
        lambda t: _is_string(t) or pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t),
        "integer epoch seconds, ISO 8601 strings, or a timestamp/date type",
    ),
}


def _check_type(path: Path, column: Column, t: pa.DataType) -> None:
    accepts, wanted = _ACCEPTED[column.kind]
    if not accepts(t):
        raise HarnessError(f"logs: {path.name}: column {column.name!r} has type {t}; it must hold {wanted}")


def _integer_keys(tables: dict[str, InputTable]) -> frozenset[str]:
    """The raw key columns (user_key, item_key, query_key) that every file holding them stores as integers: those
    are kept as BIGINT in the raw tables, so the compiler joins, groups and sorts millions of interactions by
    integers. The compiler turns a key into its text (the decimal digits, as a VARCHAR key would hold) only where
    the text matters: the dense ids follow the keys' text order and the compiled tables store the text, so the
    compiled file and its fingerprint are the same either way. A key that is text in any file (or an unsigned
    64-bit integer) stays VARCHAR everywhere, so keys of two files always compare as text."""
    kinds: dict[str, list[pa.DataType]] = {}
    for table in tables.values():
        for column in table.schema.columns:
            if column.kind == "id" and table.has(column.name):
                kinds.setdefault(column.raw, []).append(table.types[column.name])
    return frozenset(raw for raw, types in kinds.items()
                     if all(pa.types.is_integer(t) and t != pa.uint64() for t in types))


def _value_sql(table: InputTable, column: Column) -> str:
    """The column's typed value: NULL where it cannot be read (the checks then report that row)."""
    col = f'"{column.name}"'
    t = table.types[column.name]
    if column.kind == "id":
        return f"CAST({col} AS {'BIGINT' if column.raw in table.integer_keys else 'VARCHAR'})"
    if column.kind in ("text", "split"):
        return col
    if column.kind == "seq":
        value = col if pa.types.is_integer(t) else _integer_text_sql(col)
        return f"CASE WHEN {value} >= 0 AND {value} < {MAX_SEQ} THEN {value} END"
    # timestamp -> epoch seconds, floored (sub-second differences fall to the seq and row tie-break)
    if pa.types.is_integer(t):
        return f"CAST({col} AS BIGINT)"
    if pa.types.is_date(t):
        return f"CAST(epoch_ms(CAST({col} AS TIMESTAMP)) // 1000 AS BIGINT)"
    if pa.types.is_timestamp(t):
        return f"CAST(floor(epoch_ms({col}) / 1000) AS BIGINT)"
    iso = f"CAST(floor(epoch_ms(TRY_CAST(trim({col}) AS TIMESTAMPTZ)) / 1000) AS BIGINT)"
    return f"coalesce({_integer_text_sql(col)}, {iso})"


def _integer_text_sql(col: str) -> str:
    """Decimal digits (an optional minus, surrounding spaces allowed) as BIGINT, else NULL. A regex,
    because TRY_CAST also takes '1.5' (rounded), '1e3', '0x10' and '1_000'."""
    return f"CASE WHEN regexp_full_match(trim({col}), '-?[0-9]{{1,18}}') THEN CAST(trim({col}) AS BIGINT) END"


def _raw_select(table: InputTable, column: Column) -> str:
    """The raw-table column for one schema column, with the defaults for absent optional ones."""
    if column.kind == "seq":  # the (seq, row) tie-break in one BIGINT; NULL when seq is unreadable
        if not table.has(column.name):
            return "_row AS seq"
        return f"CAST({_value_sql(table, column)} * {2**_ROW_BITS} + _row AS BIGINT) AS seq"
    if not table.has(column.name):
        return f"CAST(NULL AS VARCHAR) AS {column.raw}"  # split: the compiler assigns; item text: title
    return f"{_value_sql(table, column)} AS {column.raw}"


def _create_raw(con: duckdb.DuckDBPyConnection, table: InputTable) -> None:
    """One pass over the file: the raw table with typed values and the `_row` the checks report."""
    columns = [_raw_select(table, c) for c in table.schema.columns]
    if table.schema.raw == "raw_items":
        columns.append("CAST(NULL AS INTEGER) AS cluster")
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table.schema.raw} AS"
            f" SELECT {', '.join(columns)}, _row FROM {table.view}"
        )
    except duckdb.Error as exc:
        raise HarnessError(f"logs: {table.path.name}: cannot read it ({str(exc).splitlines()[0]})") from exc


def _bad_value_sql(table: InputTable, column: Column) -> tuple[str, str] | None:
    """(condition on the raw table marking a bad row, what the value should have been), or None."""
    raw = column.raw
    if not table.has(column.name):
        return None
    if column.kind == "id":
        if pa.types.is_integer(table.types[column.name]):
            return f"{raw} IS NULL", "an id"
        # TREC run and qrels files separate fields by whitespace, so ids must not hold any.
        spaces = " OR ".join(f"contains({raw}, {ch})" for ch in ("' '", "chr(9)", "chr(10)", "chr(13)"))
        return f"{raw} IS NULL OR {raw} = '' OR {spaces}", "a non-empty id without spaces or tabs"
    if column.kind == "text":
        return (f"{raw} IS NULL OR trim({raw}) = ''", "a non-empty text") if column.required else None
    if column.kind == "split":
        return f"{raw} IS NULL OR {raw} NOT IN {SPLITS}", "one of train, valid, test"
    if column.kind == "seq":
        return f"{raw} IS NULL", f"an integer from 0 to {MAX_SEQ - 1}"
    return (f"{raw} IS NULL OR {raw} >= {MAX_EPOCH_SECONDS}",
            "integer epoch seconds or an ISO 8601 timestamp (milliseconds are not seconds)")


def _check_values(con: duckdb.DuckDBPyConnection, table: InputTable) -> None:
    """One scan of the raw table checks every column; the first bad row (in file order) is reported
    with the value as the file holds it."""
    checks = [(c, *bad) for c in table.schema.columns if (bad := _bad_value_sql(table, c))]
    selects = ", ".join(f"min(_row) FILTER (WHERE {condition})" for _, condition, _ in checks)
    first_bad = _first_row(con, f"SELECT {selects} FROM {table.schema.raw}")
    for (column, _, wanted), row in zip(checks, first_bad):
        if row is not None:
            value = _first_row(
                con, f'SELECT CAST("{column.name}" AS VARCHAR) FROM {table.view} WHERE _row = ?', [row]
            )[0]
            shown = "an empty value" if value is None or value == "" else repr(value)
            raise HarnessError(f"logs: {table.where(row)}: {column.name} is {shown}; expected {wanted}")


@contextlib.contextmanager
def _utc(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Read naive ISO timestamps as UTC whatever the connection's time zone; restore it afterwards."""
    before = _first_row(con, "SELECT current_setting('TimeZone')")[0]
    con.execute("SET TimeZone = 'UTC'")
    try:
        yield
    finally:
        con.execute(f"SET TimeZone = {_sql_string(before)}")


# --- checks across rows and files --------------------------------------------------------------------


def _check_unique(con: duckdb.DuckDBPyConnection, table: InputTable) -> None:
    """Queries and items: each id once (a qrel or interaction could not tell two apart)."""
    key = table.schema.columns[0]
    row = _first_row(
        con,
        f"SELECT CAST({key.raw} AS VARCHAR), min(_row), max(_row) FROM {table.schema.raw} GROUP BY {key.raw}"
        f" HAVING count(*) > 1 ORDER BY min(_row) LIMIT 1",
    )
    if row is not None:
        raise HarnessError(
            f"logs: {table.where(row[2])}: {key.name} {row[0]!r} appears again (first at "
            f"{table.position(row[1])}); each {key.name} must appear once"
        )


def _check_queries_known(con: duckdb.DuckDBPyConnection, qrels: InputTable, queries: InputTable) -> None:
    row = _first_row(
        con, "SELECT min(_row) FROM raw_qrels ANTI JOIN raw_queries USING (query_key)"
    )[0]
    if row is not None:
        key = _first_row(con, "SELECT CAST(query_key AS VARCHAR) FROM raw_qrels WHERE _row = ?", [row])[0]
        raise HarnessError(f"logs: {qrels.where(row)}: query_id {key!r} is not in {queries.path.name}")


def _check_items_known(con: duckdb.DuckDBPyConnection, table: InputTable, items: InputTable) -> None:
    """An id in the interactions or qrels that the catalogue lacks is almost always an id-format slip
    ('007' vs 7) that would silently shrink the dataset, so it is an error rather than a drop."""
    raw = table.schema.raw
    unknown = _first_row(
        con, f"SELECT count(*) FROM (SELECT DISTINCT item_key FROM {raw}) ANTI JOIN raw_items USING (item_key)"
    )[0]
    if not unknown:
        return
    row, key = _first_row(
        con, f"SELECT _row, CAST(item_key AS VARCHAR) FROM {raw} ANTI JOIN raw_items USING (item_key)"
             " ORDER BY _row LIMIT 1"
    )
    raise HarnessError(
        f"logs: {table.where(row)}: item_id {key!r} is not in {items.path.name}"
        f" ({unknown} unknown item ids in {table.path.name})"
    )


def _fill_item_text(con: duckdb.DuckDBPyConnection) -> None:
    """An item without a text (no column, or an empty value) is indexed by its title."""
    con.execute("UPDATE raw_items SET text = title WHERE text IS NULL OR trim(text) = ''")


def _create_items_from_ids(con: duckdb.DuckDBPyConnection) -> None:
    """No items file: the catalogue is the ids used, with no title or text."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE raw_items AS
        SELECT item_key, CAST(NULL AS VARCHAR) AS title, CAST(NULL AS VARCHAR) AS text,
               CAST(NULL AS INTEGER) AS cluster
        FROM (SELECT item_key FROM raw_interactions UNION SELECT item_key FROM raw_qrels)
        """
    )


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return _first_row(con, f"SELECT count(*) FROM {table}")[0]


def _first_row(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple | None:
    """The first row of a query, or None; fetches everything so no unfinished result holds the connection."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None
