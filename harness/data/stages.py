"""The compiler's SQL stages (steps 2-6 of harness.data.compile's pipeline): the raw tables' checks, the filtering
pass, the recommendation and search splits, popularity and the head flags, and the table counts they lead to.
Separate from harness.data.compile, which runs them in order and writes the file: these hold the dataset rules
(docs/datasets.md), the orchestration holds none.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import duckdb
import numpy as np
import pyarrow as pa

from harness.data.sequence_sort import can_pack, positions, sequence_order
from harness.data.spec import DatasetSpec
from harness.errors import HarnessError

RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw_items": ("item_key", "title", "text", "cluster"),
    "raw_interactions": ("user_key", "item_key", "ts", "seq"),
    "raw_queries": ("query_key", "text", "split"),
    "raw_qrels": ("query_key", "item_key"),
}
SPLITS = ("train", "valid", "test")


def check_raw_tables(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> None:
    for table, columns in RAW_COLUMNS.items():
        try:
            have = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        except duckdb.CatalogException as exc:
            raise HarnessError(f"dataset {spec}: the source did not create table {table}") from exc
        missing = [c for c in columns if c not in have]
        if missing:
            raise HarnessError(f"dataset {spec}: source table {table} lacks column(s) {', '.join(missing)}")


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    return con.execute(sql, params or []).fetchall()[0][0]  # fetchall: leaves no open result


def _first_duplicate(con: duckdb.DuckDBPyConnection, table: str, key: str) -> str | None:
    row = con.execute(
        f"SELECT {key} FROM {table} WHERE {key} IS NOT NULL GROUP BY {key} HAVING count(*) > 1"
        f" ORDER BY {key} LIMIT 1"
    ).fetchall()
    return row[0][0] if row else None


def _stage_queries_and_qrels(con, spec, split, dropped) -> None:
    duplicate = _first_duplicate(con, "raw_queries", "query_key")
    if duplicate is not None:
        raise HarnessError(f"dataset {spec}: raw_queries has query_key {duplicate!r} more than once")
    bad = con.execute(
        "SELECT query_key, split FROM raw_queries WHERE split IS NOT NULL AND split NOT IN ('train','valid','test')"
        " ORDER BY query_key LIMIT 1"
    ).fetchall()
    if bad:
        key, value = bad[0]
        raise HarnessError(f"dataset {spec}: query {key!r} has split {value!r}; expected train, valid, test or NULL")
    con.execute(
        "CREATE TEMP TABLE c_queries AS SELECT query_key, coalesce(text, '') AS text, split"
        " FROM raw_queries WHERE query_key IS NOT NULL"
    )
    dropped["queries_null_key"] = scalar(con, "SELECT count(*) FROM raw_queries WHERE query_key IS NULL")
    con.execute(
        "CREATE TEMP TABLE c_qrels AS SELECT DISTINCT r.query_key, r.item_key FROM raw_qrels r"
        " SEMI JOIN c_queries q ON q.query_key = r.query_key WHERE r.item_key IS NOT NULL"
    )
    raw = scalar(con, "SELECT count(*) FROM (SELECT DISTINCT query_key, item_key FROM raw_qrels)")
    dropped["qrels_duplicate_rows"] = scalar(con, "SELECT count(*) FROM raw_qrels") - raw
    dropped["qrels_unknown_query_or_null"] = raw - scalar(con, "SELECT count(*) FROM c_qrels")


def _stage_catalogue(con, spec, split, dropped) -> None:
    """Items present in both tasks, with dense ids in item_key order."""
    duplicate = _first_duplicate(con, "raw_items", "item_key")
    if duplicate is not None:
        raise HarnessError(f"dataset {spec}: raw_items has item_key {duplicate!r} more than once")
    # One scan of the interactions gives the distinct items and the row / NULL counts.
    con.execute(
        """
        CREATE TEMP TABLE rec_item_counts AS
        SELECT item_key, count(*) AS n, count(*) FILTER (WHERE user_key IS NULL OR ts IS NULL) AS n_null
        FROM raw_interactions GROUP BY item_key
        """
    )
    con.execute("CREATE TEMP TABLE rec_item_keys AS SELECT item_key FROM rec_item_counts WHERE item_key IS NOT NULL")
    con.execute("CREATE TEMP TABLE search_item_keys AS SELECT DISTINCT item_key FROM c_qrels")
    con.execute(
        """
        CREATE TEMP TABLE c_items AS
        WITH both_tasks AS (SELECT item_key FROM rec_item_keys INTERSECT SELECT item_key FROM search_item_keys)
        SELECT (row_number() OVER (ORDER BY CAST(b.item_key AS VARCHAR)) - 1)::INTEGER AS item_id, b.item_key,
               coalesce(r.title, '') AS title, coalesce(r.text, '') AS text, r.cluster::INTEGER AS cluster,
               r.item_key IS NULL AS no_metadata
        FROM both_tasks b LEFT JOIN raw_items r ON r.item_key = b.item_key
        """
    )
    n_items = scalar(con, "SELECT count(*) FROM c_items")
    n_rec = scalar(con, "SELECT count(*) FROM rec_item_keys")
    n_search = scalar(con, "SELECT count(*) FROM search_item_keys")
    dropped["items_only_in_recommendation"] = n_rec - n_items
    dropped["items_only_in_search"] = n_search - n_items
    dropped["items_without_interactions_or_qrels"] = scalar(
        con,
        "SELECT count(*) FROM raw_items r WHERE r.item_key NOT IN (SELECT item_key FROM rec_item_keys)"
        " AND r.item_key NOT IN (SELECT item_key FROM search_item_keys)",
    )
    dropped["items_kept_without_metadata"] = scalar(con, "SELECT count(*) FROM c_items WHERE no_metadata")
    if n_items == 0:
        raise HarnessError(
            f"dataset {spec} is empty after filtering: no item appears in both tasks "
            f"({n_rec} items have interactions, {n_search} have relevant queries)"
        )


def _stage_users_and_sequences(con, spec, split, dropped) -> None:
    """Interactions on kept items; users with at least min_user_interactions; positions by (ts, seq, item).

    Users get their dense ids (user_key order) from a count per user first, so the one sort of the kept
    interactions is by integers, (user_id, ts, seq, item_id), not by the text key: the same order, as user ids
    follow user_key order. The sort and the positions are done in numpy (_create_sequences), or in SQL
    (SEQUENCES_SQL) for keys numpy's packed sort cannot take; both check every user's row count against its
    length, so a misalignment is an error, never a silent shift."""
    con.execute(
        """
        CREATE TEMP TABLE user_counts AS
        SELECT i.user_key, count(*)::INTEGER AS n
        FROM raw_interactions i SEMI JOIN c_items c ON c.item_key = i.item_key
        WHERE i.user_key IS NOT NULL AND i.ts IS NOT NULL GROUP BY i.user_key
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE c_users AS
        SELECT (row_number() OVER (ORDER BY CAST(user_key AS VARCHAR)) - 1)::INTEGER AS user_id, user_key, n AS length
        FROM user_counts WHERE n >= {int(split.min_user_interactions)}
        """
    )
    n_raw, n_null = con.execute(
        "SELECT sum(n), sum(CASE WHEN item_key IS NULL THEN n ELSE n_null END) FROM rec_item_counts"
    ).fetchall()[0]
    n_kept_items = int(scalar(con, "SELECT sum(n) FROM user_counts") or 0)
    n_users = scalar(con, "SELECT count(*) FROM c_users")
    dropped["interactions_null_fields"] = int(n_null or 0)
    dropped["interactions_on_dropped_items"] = int(n_raw or 0) - int(n_null or 0) - n_kept_items
    dropped["users_below_min_interactions"] = scalar(con, "SELECT count(*) FROM user_counts") - n_users
    dropped["interactions_of_dropped_users"] = n_kept_items - int(scalar(con, "SELECT sum(length) FROM c_users") or 0)
    if n_users == 0:
        raise HarnessError(
            f"dataset {spec} is empty after filtering: no user has at least "
            f"{split.min_user_interactions} interactions with items present in both tasks"
        )
    con.execute("CREATE TABLE users AS SELECT user_id, CAST(user_key AS VARCHAR) AS user_key, length FROM c_users"
                " ORDER BY user_id")
    _create_sequences(con)


# The SQL way to the sequences table, for keys harness.data.sequence_sort cannot pack (and the reference its
# result is tested against): the same rows in the same order.
SEQUENCES_SQL = """
    CREATE TABLE sequences AS
    SELECT s.user_id, p.pos, s.item_id, s.ts
    FROM (SELECT u.user_id, c.item_id, i.ts::BIGINT AS ts
          FROM raw_interactions i JOIN c_items c ON c.item_key = i.item_key
               JOIN c_users u ON u.user_key = i.user_key
          WHERE i.ts IS NOT NULL
          ORDER BY u.user_id, i.ts, i.seq, c.item_id) s
         POSITIONAL JOIN
         (SELECT user_id, unnest(generate_series(1, length))::INTEGER AS pos FROM users) p
    WHERE CASE WHEN s.user_id = p.user_id THEN true
               ELSE error('internal error: sorted interactions and positions are misaligned') END
"""


def _create_sequences(con: duckdb.DuckDBPyConnection) -> None:
    """The kept interactions, joined to their dense ids in SQL, sorted in numpy (harness.data.sequence_sort says
    why), positions 1..length per user, written as the sequences table."""
    rows = con.sql(
        "SELECT u.user_id, c.item_id, i.ts::BIGINT AS ts, i.seq FROM raw_interactions i"
        " JOIN c_items c ON c.item_key = i.item_key JOIN c_users u ON u.user_key = i.user_key"
        " WHERE i.ts IS NOT NULL"
    ).fetchnumpy()  # plain arrays; a column holding a NULL comes as a masked array
    user, item, ts, seq = (rows.pop(c) for c in ("user_id", "item_id", "ts", "seq"))
    if (np.ma.isMaskedArray(seq) and seq.mask.any()) or not can_pack(user, ts):
        del user, item, ts, seq
        con.execute(SEQUENCES_SQL)
        return
    # Nothing reads the raw interactions after this: free DuckDB's copy before sorting (a source's view instead
    # of a temporary table is left alone; this only saves memory).
    with contextlib.suppress(duckdb.Error):
        con.execute("DROP TABLE IF EXISTS temp.raw_interactions")
    order = sequence_order(user, ts, np.asarray(seq), item)
    del seq
    user = user[order]
    lengths = con.sql("SELECT length FROM users ORDER BY user_id").fetchnumpy()["length"]
    sorted_rows = pa.table({"user_id": pa.array(user, pa.int32()), "pos": positions(user, lengths),
                            "item_id": pa.array(item[order], pa.int32()), "ts": pa.array(ts[order], pa.int64())})
    del user, order, item, ts
    con.register("sorted_interactions", sorted_rows)
    try:
        con.execute("CREATE TABLE sequences AS SELECT user_id, pos, item_id, ts FROM sorted_interactions")
    finally:
        con.unregister("sorted_interactions")


def _stage_rec_examples(con, spec, split, dropped) -> None:
    """test = t, valid = t-1, train = t-2 down to 3; evaluation targets must be training targets.

    Written split by split in (split, user_id, target_pos) order, so no sort of the training rows is needed."""
    # One pass over the sequences: per item, its training popularity (positions 1..t-2) and whether it
    # is some training instance's target (positions 3..t-2).
    con.execute(
        """
        CREATE TEMP TABLE item_rec AS
        SELECT s.item_id, count(*) FILTER (WHERE s.pos <= u.length - 2) AS pop_rec,
               bool_or(s.pos >= 3 AND s.pos <= u.length - 2) AS train_target
        FROM sequences s JOIN users u ON u.user_id = s.user_id GROUP BY s.item_id
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE rec_eval AS
        SELECT CASE WHEN s.pos = u.length THEN 'test' ELSE 'valid' END AS split, s.user_id,
               s.pos AS target_pos, coalesce(r.train_target, false) AS seen
        FROM sequences s JOIN users u ON u.user_id = s.user_id LEFT JOIN item_rec r ON r.item_id = s.item_id
        WHERE s.pos >= u.length - 1
        """
    )
    for name in ("valid", "test"):
        dropped[f"rec_{name}_target_not_in_training"] = scalar(
            con, "SELECT count(*) FROM rec_eval WHERE split = ? AND NOT seen", [name]
        )
    con.execute(
        "CREATE TABLE rec_examples AS SELECT split, user_id, target_pos::INTEGER AS target_pos FROM rec_eval"
        " WHERE seen AND split = 'test' ORDER BY user_id"
    )
    con.execute(
        "INSERT INTO rec_examples SELECT 'train', user_id, unnest(generate_series(3, length - 2))::INTEGER"
        " FROM users"
    )
    con.execute(
        "INSERT INTO rec_examples SELECT split, user_id, target_pos FROM rec_eval"
        " WHERE seen AND split = 'valid' ORDER BY user_id"
    )


def _stage_search_splits(con, spec, split, dropped) -> None:
    """Queries with a kept relevant item; deterministic split for unassigned ones; eval qrels filtered."""
    con.execute(
        """
        CREATE TEMP TABLE k_qrels AS
        SELECT r.query_key, c.item_id FROM c_qrels r JOIN c_items c ON c.item_key = r.item_key
        """
    )
    con.execute("CREATE TEMP TABLE k_queries AS SELECT * FROM c_queries SEMI JOIN k_qrels USING (query_key)")
    dropped["queries_without_kept_items"] = scalar(con, "SELECT count(*) FROM c_queries") - scalar(
        con, "SELECT count(*) FROM k_queries"
    )
    n_unassigned = scalar(con, "SELECT count(*) FROM k_queries WHERE split IS NULL")
    n_valid, n_test = split.eval_query_counts(n_unassigned)
    con.execute(
        """
        CREATE TEMP TABLE s_queries AS
        SELECT query_key, text, coalesce(split, CASE WHEN rank <= $n_test THEN 'test'
                                                     WHEN rank <= $n_test + $n_valid THEN 'valid'
                                                     ELSE 'train' END) AS split
        FROM (SELECT *, row_number() OVER (ORDER BY split IS NOT NULL, md5($seed || ':' || CAST(query_key AS VARCHAR)),
                                           CAST(query_key AS VARCHAR))
                        AS rank FROM k_queries)
        """,
        {"n_test": n_test, "n_valid": n_valid, "seed": str(split.split_seed)},
    )
    con.execute(
        """
        CREATE TEMP TABLE search_train_items AS
        SELECT DISTINCT r.item_id FROM k_qrels r JOIN s_queries q ON q.query_key = r.query_key WHERE q.split = 'train'
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE s_qrels AS
        SELECT r.query_key, r.item_id, q.split FROM k_qrels r JOIN s_queries q ON q.query_key = r.query_key
        WHERE q.split = 'train' OR r.item_id IN (SELECT item_id FROM search_train_items)
        """
    )
    for name in ("valid", "test"):
        dropped[f"search_{name}_qrels_item_not_in_training"] = scalar(
            con,
            "SELECT count(*) FROM k_qrels r JOIN s_queries q ON q.query_key = r.query_key WHERE q.split = ?"
            " AND r.item_id NOT IN (SELECT item_id FROM search_train_items)",
            [name],
        )
        dropped[f"search_{name}_queries_left_empty"] = scalar(
            con,
            "SELECT count(*) FROM s_queries q WHERE q.split = ?"
            " AND q.query_key NOT IN (SELECT query_key FROM s_qrels)",
            [name],
        )
    # Dense query ids in the text order of the keys; raw_key (the raw table's type, e.g. BIGINT for integer ids
    # of a logs folder) joins the qrels without casting them.
    con.execute(
        """
        CREATE TEMP TABLE q_ids AS
        SELECT (row_number() OVER (ORDER BY CAST(s.query_key AS VARCHAR)) - 1)::INTEGER AS query_id,
               s.query_key AS raw_key, CAST(s.query_key AS VARCHAR) AS query_key, s.text, s.split
        FROM s_queries s WHERE s.query_key IN (SELECT query_key FROM s_qrels)
        """
    )
    con.execute("CREATE TABLE queries AS SELECT query_id, query_key, text, split FROM q_ids ORDER BY query_id")
    con.execute(
        """
        CREATE TABLE qrels AS
        SELECT q.query_id, r.item_id FROM s_qrels r JOIN q_ids q ON q.raw_key = r.query_key
        ORDER BY q.query_id, r.item_id
        """
    )


def _stage_items(con, spec, split, dropped) -> None:
    """Training popularity per task and the head flags (ties broken by item_id)."""
    n_items = scalar(con, "SELECT count(*) FROM c_items")
    head = split.head_size(n_items)
    con.execute(
        f"""
        CREATE TABLE items AS
        WITH pr AS (SELECT item_id, pop_rec AS n FROM item_rec),
             ps AS (SELECT r.item_id, count(*) AS n FROM qrels r JOIN queries q ON q.query_id = r.query_id
                    WHERE q.split = 'train' GROUP BY r.item_id),
             pop AS (SELECT c.*, coalesce(pr.n, 0)::BIGINT AS pop_rec, coalesce(ps.n, 0)::BIGINT AS pop_search
                     FROM c_items c LEFT JOIN pr ON pr.item_id = c.item_id LEFT JOIN ps ON ps.item_id = c.item_id)
        SELECT item_id, CAST(item_key AS VARCHAR) AS item_key, title, text, cluster, pop_rec, pop_search,
               row_number() OVER (ORDER BY pop_rec DESC, item_id) <= {head} AS head_rec,
               row_number() OVER (ORDER BY pop_search DESC, item_id) <= {head} AS head_search
        FROM pop ORDER BY item_id
        """
    )


# The stages in the order they run; each is called as stage(con, spec, split, dropped).
STAGES: tuple[Callable[..., None], ...] = (
    _stage_queries_and_qrels,
    _stage_catalogue,
    _stage_users_and_sequences,
    _stage_rec_examples,
    _stage_search_splits,
    _stage_items,
)


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    counts: dict[str, Any] = {
        t: scalar(con, f"SELECT count(*) FROM {t}") for t in ("items", "users", "sequences", "queries", "qrels")
    }
    counts["rec_examples"] = dict(con.execute("SELECT split, count(*) FROM rec_examples GROUP BY split").fetchall())
    counts["queries_by_split"] = dict(con.execute("SELECT split, count(*) FROM queries GROUP BY split").fetchall())
    counts["qrels_by_split"] = dict(
        con.execute(
            "SELECT q.split, count(*) FROM qrels r JOIN queries q ON q.query_id = r.query_id GROUP BY q.split"
        ).fetchall()
    )
    for key in ("rec_examples", "queries_by_split", "qrels_by_split"):
        counts[key] = {s: int(counts[key].get(s, 0)) for s in SPLITS}
    return counts


def check_not_empty(spec: DatasetSpec, counts: dict[str, Any]) -> None:
    """Validation may be empty (a source may fix the split); training and test may not."""
    needed = {
        "recommendation training examples": counts["rec_examples"]["train"],
        "recommendation test examples": counts["rec_examples"]["test"],
        "search training queries": counts["queries_by_split"]["train"],
        "search test queries": counts["queries_by_split"]["test"],
    }
    empty = [name for name, n in needed.items() if n == 0]
    if empty:
        raise HarnessError(
            f"dataset {spec} is empty after filtering: no {', no '.join(empty)} "
            f"(items {counts['items']}, users {counts['users']}, queries {counts['queries']})"
        )
