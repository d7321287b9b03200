"""The fingerprint of a compiled dataset: one SHA-256 over its canonical inputs and table contents.

    fingerprint = "sha256:" + sha256(
        "jsr-harness-dataset-fingerprint\\n"
        + canonical_json(header)                       # format version, dataset, params, split params, files
        + for each table in FINGERPRINT_TABLES, for each column in order:
              table name, column name, encoding, sha256 of the column's bytes
    )

A column's bytes are its values in the table's canonical row order (the ORDER BY below):
INTEGER as int32 little-endian, BIGINT as int64 little-endian, BOOLEAN as one byte (0/1), VARCHAR as the
int64 little-endian byte lengths of all values followed (in a second digest) by their UTF-8 bytes.
Each column gets its own running digest, so the batch size used to stream rows out of DuckDB never
changes the result. Nothing time- or machine-dependent goes in: same inputs -> same fingerprint anywhere.
"""

from __future__ import annotations

import hashlib
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.io import canonical_json

# (table, canonical query). The column list and the row order are part of the format: changing either
# changes every fingerprint, so bump FORMAT_VERSION in compile.py when you do.
FINGERPRINT_TABLES: tuple[tuple[str, str], ...] = (
    (
        "items",
        "SELECT item_id, item_key, title, text, coalesce(cluster, -1) AS cluster, pop_rec, pop_search,"
        " head_rec, head_search FROM items ORDER BY item_id",
    ),
    ("users", "SELECT user_id, user_key, length FROM users ORDER BY user_id"),
    ("sequences", "SELECT user_id, pos, item_id, ts FROM sequences ORDER BY user_id, pos"),
    ("rec_examples", "SELECT split, user_id, target_pos FROM rec_examples ORDER BY split, user_id, target_pos"),
    ("queries", "SELECT query_id, query_key, text, split FROM queries ORDER BY query_id"),
    ("qrels", "SELECT query_id, item_id FROM qrels ORDER BY query_id, item_id"),
)

_BATCH_ROWS = 1 << 20
_INT_DTYPES = {pa.int32(): "<i4", pa.int64(): "<i8", pa.bool_(): "u1"}


class _ColumnDigest:
    """Running digests of one column: values (or UTF-8 bytes) and, for strings, the value lengths."""

    def __init__(self, name: str, arrow_type: pa.DataType) -> None:
        self.name = name
        self.is_string = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or (
            hasattr(pa.types, "is_string_view") and pa.types.is_string_view(arrow_type)
        )
        if not self.is_string and arrow_type not in _INT_DTYPES:
            raise TypeError(f"column {name!r} has type {arrow_type}, which the fingerprint does not encode")
        self.encoding = "utf8" if self.is_string else _INT_DTYPES[arrow_type]
        self.values = hashlib.sha256()
        self.lengths = hashlib.sha256()

    def update(self, array: pa.Array) -> None:
        if array.null_count:
            raise ValueError(f"column {self.name!r} holds NULLs; the compiler must fill them before hashing")
        if self.is_string:
            array = pc.cast(array, pa.large_string())
            offsets = np.frombuffer(array.buffers()[1], dtype="<i8")[array.offset : array.offset + len(array) + 1]
            self.lengths.update(np.diff(offsets).astype("<i8").tobytes())
            data = array.buffers()[2]
            if data is not None and len(array):
                self.values.update(memoryview(data)[offsets[0] : offsets[-1]])
        else:
            values = array.to_numpy(zero_copy_only=False).astype(self.encoding, copy=False)
            self.values.update(np.ascontiguousarray(values).tobytes())

    def digest(self) -> str:
        if self.is_string:
            return self.lengths.hexdigest() + ":" + self.values.hexdigest()
        return self.values.hexdigest()


def table_digests(con: duckdb.DuckDBPyConnection, table: str, query: str) -> list[tuple[str, str, str]]:
    """[(column, encoding, digest)] of one table streamed in its canonical order."""
    reader = con.sql(query).to_arrow_reader(_BATCH_ROWS)
    columns = [_ColumnDigest(f"{table}.{field.name}", field.type) for field in reader.schema]
    for batch in reader:
        for column, array in zip(columns, batch.columns):
            column.update(array)
    return [(c.name, c.encoding, c.digest()) for c in columns]


def compute_fingerprint(con: duckdb.DuckDBPyConnection, header: dict[str, Any]) -> str:
    """The dataset fingerprint over `header` (JSON-able, machine-independent) and the canonical tables."""
    outer = hashlib.sha256(b"jsr-harness-dataset-fingerprint\n")
    outer.update(canonical_json(header).encode("utf-8"))
    for table, query in FINGERPRINT_TABLES:
        for name, encoding, digest in table_digests(con, table, query):
            outer.update(f"{name}\t{encoding}\t{digest}\n".encode("utf-8"))
    return "sha256:" + outer.hexdigest()
