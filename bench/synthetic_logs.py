"""A synthetic platform log the size of ML-25M, written as a `logs` folder (docs/logs-schema.md) for the compile
benchmark (bench/bench_data.py) and the pandas reference (bench/pandas_compile.py).

    PYTHONPATH=. python bench/synthetic_logs.py FOLDER [SCALE]      # SCALE 1.0 = 25M interactions (default 0.1)

Full size: 25,000,095 interactions of 162,541 users on 59,047 items (integer ids, integer epoch-second
timestamps, users interleaved in the file as in a raw event log), 50,000 queries with 7 relevant items each
(some repeated: qrels are deduplicated), and an items file with a title and a text per item. Popularity is
Zipf-like (item = n_items * u^3 for interactions, u^2 for qrels), so some items appear in one task only and
the compiler's filters all have something to drop. Deterministic for a given scale (DuckDB setseed); the files
are written with DuckDB and not timed by the benchmark.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

FULL = {"interactions": 25_000_095, "users": 162_541, "items": 59_047, "queries": 50_000, "rel_per_query": 7}


def synthetic_sizes(scale: float) -> dict[str, int]:
    sizes = {k: max(1, round(v * scale)) for k, v in FULL.items()}
    sizes["rel_per_query"] = FULL["rel_per_query"]
    return sizes


def generate_logs(folder: Path, scale: float) -> Path:
    """Write interactions/queries/qrels/items.parquet for `scale` into `folder` (once: reused when complete)."""
    import duckdb

    folder = Path(folder)
    if (folder / "_complete").exists():
        return folder
    s = synthetic_sizes(scale)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SELECT setseed(0.5)")

    def copy(sql: str, name: str) -> None:
        con.execute(f"COPY ({sql}) TO '{tmp / name}' (FORMAT parquet, COMPRESSION zstd)")

    copy(f"""SELECT i AS item_id, 'Movie ' || i AS title, 'Movie ' || i || ' | Drama' AS text
             FROM range({s['items']}) t(i)""", "items.parquet")
    # users take turns (a raw event log), so each user has ~154 interactions at full size
    copy(f"""SELECT (i % {s['users']})::BIGINT AS user_id,
                    least(floor({s['items']} * pow(random(), 3))::BIGINT, {s['items'] - 1}) AS item_id,
                    (1000000000 + i // {s['users']} * 3600 + floor(random() * 3600))::BIGINT AS timestamp
             FROM range({s['interactions']}) t(i)""", "interactions.parquet")
    copy(f"SELECT j AS query_id, 'query ' || j AS text FROM range({s['queries']}) t(j)", "queries.parquet")
    copy(f"""SELECT j AS query_id,
                    least(floor({s['items']} * pow(random(), 2))::BIGINT, {s['items'] - 1}) AS item_id
             FROM range({s['queries']}) t(j), range({s['rel_per_query']}) r(k)""", "qrels.parquet")
    con.close()
    (tmp / "_complete").write_text(f"scale {scale}\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


if __name__ == "__main__":
    generate_logs(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
