"""The contract between a raw source and the compiler.

A Source's `load` creates four tables in the DuckDB connection it is given (temporary tables or views),
with exactly these columns; the compiler (harness.data.compile) does everything else: filtering, the
paper's splits, popularity and head flags, statistics, fingerprint and the atomic write.

    raw_items(item_key VARCHAR, title VARCHAR, text VARCHAR, cluster INTEGER)
        one row per item the source knows; `text` is what BM25 / bi-encoders index;
        `cluster` is the simulated cluster or topic, NULL for real data.
    raw_interactions(user_key VARCHAR, item_key VARCHAR, ts BIGINT, seq BIGINT)
        one row per interaction; a user's sequence is ordered by (ts, seq); `seq` is a deterministic
        tie-breaker the source defines (row order in the file, position in a playlist, ...).
    raw_queries(query_key VARCHAR, text VARCHAR, split VARCHAR)
        one row per distinct query; `split` is 'train'/'valid'/'test' when the source fixes it (SIM3),
        NULL to let the compiler assign it deterministically.
    raw_qrels(query_key VARCHAR, item_key VARCHAR)
        the relevant items of each query (duplicates are removed by the compiler).

A key column may instead be BIGINT when all of that key's columns are (user_key; item_key in raw_items,
raw_interactions and raw_qrels; query_key in raw_queries and raw_qrels): the compiler joins, groups and sorts
by the integers and uses a key's text, CAST(key AS VARCHAR), wherever text matters (the dense ids follow the keys'
text order, the compiled tables store the text), so the compiled tables are the same as with VARCHAR keys holding
the decimal digits. The logs source does this for integer ids (much faster on millions of interactions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb


@dataclass(frozen=True)
class SourceContext:
    data_dir: Path  # where raw archives are looked for
    params: dict[str, str]  # from the dataset name (`sim2:q_match=0.5`), as strings
    allow_download: bool = True  # False: never touch the network
    path: Path | None = None  # an explicit input path given on the command line (mpd, logs)
    temp_dir: Path | None = None  # where temporary files go (the compile's scratch folder; None: the system's)


@dataclass
class SourceResult:
    files: list[dict[str, Any]]  # [{"name": ..., "md5": ..., "bytes": ...}] of every raw input read
    params: dict[str, Any]  # the resolved, typed parameters (defaults filled in): part of the fingerprint
    notes: dict[str, Any] = field(default_factory=dict)  # derived facts to record (e.g. SIM1's achieved KL)


class Source(Protocol):
    name: str
    description: str
    headline_k: int  # the paper's headline cutoff and retrieval depth: 10 for simulations, 30 for real data

    def load(self, con: duckdb.DuckDBPyConnection, ctx: SourceContext) -> SourceResult: ...
