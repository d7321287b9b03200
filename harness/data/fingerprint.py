"""The fingerprint of a compiled dataset: one SHA-256 over its canonical inputs and table contents.

    fingerprint = "sha256:" + sha256(
        "jsr-harness-dataset-fingerprint\\n"
        + canonical_json(header)                       # format version, dataset, params, split params, files
        + for each table in FINGERPRINT_TABLES, for each column in order:
              table name, column name, encoding, sha256 of the column's bytes
    )

A column's bytes are its values in ascending key order (the keys in FINGERPRINT_TABLES):
INTEGER as int32 little-endian, BIGINT as int64 little-endian, BOOLEAN as one byte (0/1), VARCHAR as the
int64 little-endian byte lengths of all values followed (in a second digest) by their UTF-8 bytes.
Each column gets its own running digest, so the batch size used to stream rows out of DuckDB never
changes the result. Nothing time- or machine-dependent goes in: same inputs -> same fingerprint anywhere.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.io import canonical_json

# The compiled format's version, in every manifest; a file of another version is refused (data/store.py) and
# rebuilt. Here, beside the fingerprint, because changing how a fingerprint is computed is the commonest reason to
# bump it; compile.py writes it and store.py checks it (neither imports the other for it).
FORMAT_VERSION = 1

# (table, columns, key columns): rows are hashed in ascending key order (keys are unique). The column list
# and the order are part of the format: changing either changes every fingerprint, so bump FORMAT_VERSION
# when you do.
FINGERPRINT_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("items", ("item_id", "item_key", "title", "text", "coalesce(cluster, -1) AS cluster", "pop_rec", "pop_search",
               "head_rec", "head_search"), ("item_id",)),
    ("users", ("user_id", "user_key", "length"), ("user_id",)),
    ("sequences", ("user_id", "pos", "item_id", "ts"), ("user_id", "pos")),
    ("rec_examples", ("split", "user_id", "target_pos"), ("split", "user_id", "target_pos")),
    ("queries", ("query_id", "query_key", "text", "split"), ("query_id",)),
    ("qrels", ("query_id", "item_id"), ("query_id", "item_id")),
)


def canonical_query(table: str, ordered: bool = True) -> str:
    """The table's fingerprint columns, in key order (or in stored order, for the fast path)."""
    columns, keys = next((c, k) for t, c, k in FINGERPRINT_TABLES if t == table)[0:2]
    sql = f"SELECT {', '.join(columns)} FROM {table}"
    return sql + f" ORDER BY {', '.join(keys)}" if ordered else sql


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
            if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
                array = pc.cast(array, pa.large_string())  # string_view has no offsets buffer
            width = "<i4" if pa.types.is_string(array.type) else "<i8"
            offsets = np.frombuffer(array.buffers()[1], dtype=width)[array.offset : array.offset + len(array) + 1]
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


class _KeyOrder:
    """Checks, batch by batch, that rows arrive in strictly ascending key order."""

    def __init__(self, key_index: list[int]) -> None:
        self.key_index = key_index
        self.last: tuple | None = None
        self.ok = True

    def update(self, batch: pa.RecordBatch) -> None:
        if not self.ok or batch.num_rows == 0:
            return
        keys = [_comparable(batch.column(i)) for i in self.key_index]
        first = tuple(_item(k, 0) for k in keys)
        if self.last is not None and not self.last < first:  # across the batch boundary
            self.ok = False
            return
        self.last = tuple(_item(k, batch.num_rows - 1) for k in keys)
        self.ok = batch.num_rows < 2 or bool(np.all(_strictly_ascending(keys)))


def _comparable(array: pa.Array) -> np.ndarray | pa.Array:
    """Integer keys as numpy (fast comparisons), strings stay Arrow (compared by code point, like DuckDB)."""
    return array.to_numpy(zero_copy_only=False) if pa.types.is_integer(array.type) else array


def _item(key: np.ndarray | pa.Array, i: int):
    return key[i].as_py() if isinstance(key, pa.Array) else int(key[i])


def _strictly_ascending(keys: list) -> np.ndarray:
    """For consecutive rows a, b: (a.k1, a.k2, ...) < (b.k1, b.k2, ...) lexicographically."""
    result = None
    for key in reversed(keys):
        if isinstance(key, np.ndarray):
            before, after = key[:-1], key[1:]
            greater, equal = after > before, after == before
        else:
            before, after = key.slice(0, len(key) - 1), key.slice(1)
            greater = pc.greater(after, before).to_numpy(zero_copy_only=False)
            equal = pc.equal(after, before).to_numpy(zero_copy_only=False)
        result = greater if result is None else greater | (equal & result)
    return result


def table_digests(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str, str]]:
    """[(column, encoding, digest)] of one table in ascending key order.

    Tables are written in key order, so they are streamed as stored (no sort) while checking the order;
    if a row is out of order, the table is hashed again through ORDER BY. The result is the same either way."""
    keys = next(k for t, _, k in FINGERPRINT_TABLES if t == table)
    digests = _stream_digests(con, table, canonical_query(table, ordered=False), check_keys=keys)
    if digests is None:
        digests = _stream_digests(con, table, canonical_query(table, ordered=True), check_keys=None)
    return digests


def _stream_digests(con, table: str, query: str, check_keys: tuple[str, ...] | None):
    reader = con.sql(query).to_arrow_reader(_BATCH_ROWS)
    names = [field.name for field in reader.schema]
    columns = [_ColumnDigest(f"{table}.{field.name}", field.type) for field in reader.schema]
    order = _KeyOrder([names.index(k) for k in check_keys]) if check_keys else None
    # hashlib releases the GIL on large buffers: the columns of a batch are hashed side by side
    with ThreadPoolExecutor(max_workers=min(len(columns), os.cpu_count() or 1)) as pool:
        for batch in reader:
            if order is not None:
                order.update(batch)
                if not order.ok:
                    reader.close()
                    return None
            list(pool.map(_ColumnDigest.update, columns, batch.columns))
    return [(c.name, c.encoding, c.digest()) for c in columns]


def compute_fingerprint(con: duckdb.DuckDBPyConnection, header: dict[str, Any]) -> str:
    """The dataset fingerprint over `header` (JSON-able, machine-independent) and the canonical tables."""
    outer = hashlib.sha256(b"jsr-harness-dataset-fingerprint\n")
    outer.update(canonical_json(header).encode("utf-8"))
    for table, _, _ in FINGERPRINT_TABLES:
        for name, encoding, digest in table_digests(con, table):
            outer.update(f"{name}\t{encoding}\t{digest}\n".encode("utf-8"))
    return "sha256:" + outer.hexdigest()
