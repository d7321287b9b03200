"""The compiler's rules on tiny hand-made sources (harness.data.compile), checked by hand.

A ToySource creates the four raw tables from literal rows, so every expected value below can be worked
out on paper from the rows next to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from harness.data.compile import compile_dataset
from harness.data.fingerprint import FINGERPRINT_TABLES, canonical_query, compute_fingerprint
from harness.data.sources.base import SourceResult
from harness.data.split_params import SplitParams
from harness.data.store import CompiledDataset
from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ToySource:
    """A Source from literal rows. interactions: (user, item, ts, seq); qrels: (query, item);
    queries: (query, text, split or None); items: (item, title, text, cluster)."""

    interactions: list[tuple]
    qrels: list[tuple]
    queries: list[tuple] | None = None  # default: one row per query in qrels, split NULL
    items: list[tuple] | None = None  # default: one row per item mentioned anywhere
    params: dict = field(default_factory=dict)
    name: str = "toy"
    description: str = "hand-made rows"
    headline_k: int = 10
    skip_tables: tuple[str, ...] = ()

    def load(self, con, ctx):
        keys = sorted({r[1] for r in self.interactions} | {r[1] for r in self.qrels})
        items = self.items if self.items is not None else [(k, f"title {k}", f"text {k}", None) for k in keys]
        queries = self.queries
        if queries is None:
            queries = [(q, f"query {q}", None) for q in sorted({r[0] for r in self.qrels})]
        tables = {
            "raw_items": ("item_key VARCHAR, title VARCHAR, text VARCHAR, cluster INTEGER", items),
            "raw_interactions": ("user_key VARCHAR, item_key VARCHAR, ts BIGINT, seq BIGINT", self.interactions),
            "raw_queries": ("query_key VARCHAR, text VARCHAR, split VARCHAR", queries),
            "raw_qrels": ("query_key VARCHAR, item_key VARCHAR", self.qrels),
        }
        for name, (schema, rows) in tables.items():
            if name in self.skip_tables:
                continue
            con.execute(f"CREATE TEMP TABLE {name} ({schema})")
            if rows:
                con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        return SourceResult(files=[], params=dict(self.params), notes={"rows": len(self.interactions)})


def seq(user: str, items: list[str], start_ts: int = 100) -> list[tuple]:
    """A user's interactions with strictly increasing timestamps, in the given order."""
    return [(user, item, start_ts + i, 0) for i, item in enumerate(items)]


def build(tmp_path: Path, source: ToySource, spec: str = "toy", name: str = "toy.duckdb", **kw):
    return compile_dataset(spec, source=source, dest=tmp_path / name, **kw)


def rows(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def item_ids(path: Path) -> dict[str, int]:
    return dict(rows(path, "SELECT item_key, item_id FROM items"))


# Users of t = 5, 6 and 4 interactions whose every evaluation target is also some training target:
#   A = i0 i1 i2 i3 i4      train targets: pos 3 (i2)          valid: pos 4 (i3)  test: pos 5 (i4)
#   B = i5 i6 i3 i4 i2 i3   train targets: pos 3, 4 (i3, i4)   valid: pos 5 (i2)  test: pos 6 (i3)
#   C = i0 i1 i2 i4         no training instance (3..2 empty)  valid: pos 3 (i2)  test: pos 4 (i4)
SEQUENCES = {
    "A": ["i0", "i1", "i2", "i3", "i4"],
    "B": ["i5", "i6", "i3", "i4", "i2", "i3"],
    "C": ["i0", "i1", "i2", "i4"],
}
ALL_ITEMS = ["i0", "i1", "i2", "i3", "i4", "i5", "i6"]


def hand_source(**kw) -> ToySource:
    interactions = [r for user, items in SEQUENCES.items() for r in seq(user, items)]
    # q_all (train by fixed split) makes every item searchable; q_test's item is a training item.
    qrels = [("q_all", i) for i in ALL_ITEMS] + [("q_test", "i2")]
    queries = [("q_all", "all", "train"), ("q_test", "test query", "test")]
    return ToySource(interactions, qrels, queries, **kw)


# ---------------------------------------------------------------------------------------------------
# Recommendation splits


def test_training_expansion_and_held_out_positions(tmp_path):
    out = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    users = dict(rows(out.path, "SELECT user_key, user_id FROM users"))
    assert rows(out.path, "SELECT user_key, length FROM users ORDER BY user_id") == [("A", 5), ("B", 6), ("C", 4)]
    examples = rows(out.path, "SELECT split, user_id, target_pos FROM rec_examples ORDER BY split, user_id, target_pos")
    a, b, c = users["A"], users["B"], users["C"]
    assert examples == [
        ("test", a, 5), ("test", b, 6), ("test", c, 4),
        ("train", a, 3), ("train", b, 3), ("train", b, 4),
        ("valid", a, 4), ("valid", b, 5), ("valid", c, 3),
    ]
    assert out.manifest["counts"]["rec_examples"] == {"train": 3, "valid": 3, "test": 3}
    assert out.manifest["dropped"]["rec_test_target_not_in_training"] == 0


def test_reader_views_cut_sequences_before_held_out_items(tmp_path):
    out = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    ids = item_ids(out.path)

    def keys(arr):
        inverse = {v: k for k, v in ids.items()}
        return [inverse[int(i)] for i in arr]

    with CompiledDataset.open(out.path) as ds:
        view = ds.train_view()
        # users are A, B, C in user_id order; training arrays hold positions 1..t-2 only
        assert list(view.rec_train.offsets) == [0, 3, 7, 9]
        assert keys(view.rec_train.items) == ["i0", "i1", "i2", "i5", "i6", "i3", "i4", "i0", "i1"]
        assert list(view.rec_train.user_key) == ["A", "B", "C"]
        # training instances: (user, history, target)
        got = [(int(u), keys(view.rec_train.history(i)), keys([t])[0])
               for i, (u, t) in enumerate(zip(view.rec_train.user, view.rec_train.target))]
        assert got == [(0, ["i0", "i1"], "i2"), (1, ["i5", "i6"], "i3"), (1, ["i5", "i6", "i3"], "i4")]
        # validation: history 1..t-2, target t-1
        assert keys(view.rec_valid.target) == ["i3", "i2", "i2"]
        assert [keys(h) for h in view.rec_valid.histories()] == [
            ["i0", "i1", "i2"], ["i5", "i6", "i3", "i4"], ["i0", "i1"]]
        # test requests: history 1..t-1, no targets in the request
        requests = ds.rec_requests("test")
        assert requests.target is None
        assert [keys(h) for h in requests.histories()] == [
            ["i0", "i1", "i2", "i3"], ["i5", "i6", "i3", "i4", "i2"], ["i0", "i1", "i2"]]
        assert keys(ds.rec_targets("test")) == ["i4", "i3", "i4"]
        assert keys(requests.items).count("i4") == 1  # only B's position 4; A's and C's test item i4 is hidden
        valid = ds.rec_requests("valid")
        assert [len(h) for h in valid.histories()] == [3, 4, 2]
        assert keys(ds.rec_targets("valid")) == ["i3", "i2", "i2"]
        with pytest.raises(HarnessError, match="split 'train'"):
            ds.rec_requests("train")


def test_evaluation_targets_must_be_training_targets(tmp_path):
    # D = i0 i1 i2 i5 i6: train target i2; valid target i5 and test target i6 are nobody's training target
    # (i5, i6 only ever sit at B's positions 1-2, which are history, never targets)
    source = hand_source()
    source.interactions += seq("D", ["i0", "i1", "i2", "i5", "i6"])
    out = build(tmp_path, source, "toy:min_user_interactions=4")
    d = dict(rows(out.path, "SELECT user_key, user_id FROM users"))["D"]
    assert rows(out.path, f"SELECT split, target_pos FROM rec_examples WHERE user_id = {d} ORDER BY split") == [
        ("train", 3)]
    assert out.manifest["dropped"]["rec_valid_target_not_in_training"] == 1
    assert out.manifest["dropped"]["rec_test_target_not_in_training"] == 1
    assert out.manifest["counts"]["rec_examples"] == {"train": 4, "valid": 3, "test": 3}


def test_sequence_order_is_timestamp_then_seq(tmp_path):
    # E's rows arrive shuffled; ts ties are broken by seq, then (for identical ts and seq) by item key
    source = hand_source()
    source.interactions += [("E", "i4", 300, 0), ("E", "i2", 200, 9), ("E", "i0", 200, 1),
                            ("E", "i3", 300, 0), ("E", "i1", 200, 5)]
    out = build(tmp_path, source, "toy:min_user_interactions=4")
    got = rows(out.path, """SELECT i.item_key, s.ts FROM sequences s JOIN users u USING (user_id)
                            JOIN items i USING (item_id) WHERE u.user_key = 'E' ORDER BY s.pos""")
    assert got == [("i0", 200), ("i1", 200), ("i2", 200), ("i3", 300), ("i4", 300)]


# ---------------------------------------------------------------------------------------------------
# Filtering


def test_items_in_both_tasks_and_users_filtered_once(tmp_path):
    source = hand_source()
    source.interactions += seq("A", ["rec_only"], start_ts=50)  # interactions only: dropped item
    source.qrels += [("q_all", "search_only")]  # qrels only: dropped item
    source.qrels += [("q_all", "no_meta")]
    source.interactions += seq("C", ["no_meta"], start_ts=500)  # both tasks, no raw_items row
    source.items = [(k, f"title {k}", f"text {k}", None) for k in ALL_ITEMS + ["rec_only", "search_only", "unused"]]
    source.interactions += seq("F", ["i0", "i1", "rec_only", "rec_only", "rec_only"])  # 2 kept items: dropped user
    out = build(tmp_path, source, "toy:min_user_interactions=4")
    keys = [k for k, in rows(out.path, "SELECT item_key FROM items ORDER BY item_id")]
    assert keys == sorted(ALL_ITEMS + ["no_meta"])  # dense ids in item_key order
    assert rows(out.path, "SELECT title, text FROM items WHERE item_key = 'no_meta'") == [("", "")]
    d = out.manifest["dropped"]
    assert d["items_only_in_recommendation"] == 1
    assert d["items_only_in_search"] == 1
    assert d["items_without_interactions_or_qrels"] == 1
    assert d["items_kept_without_metadata"] == 1
    assert d["interactions_on_dropped_items"] == 4  # A's rec_only + F's three
    assert d["users_below_min_interactions"] == 1
    assert d["interactions_of_dropped_users"] == 2
    assert [u for u, in rows(out.path, "SELECT user_key FROM users ORDER BY user_id")] == ["A", "B", "C"]
    # C now has 5 kept interactions (no_meta last): a training instance appears, and the test target no_meta
    # is nobody's training target
    assert rows(out.path, "SELECT length FROM users WHERE user_key = 'C'") == [(5,)]


def test_queries_without_kept_items_are_dropped(tmp_path):
    source = hand_source()
    source.qrels += [("q_gone", "search_only")]
    source.queries += [("q_gone", "nothing left", None)]
    out = build(tmp_path, source, "toy:min_user_interactions=4")
    assert [q for q, in rows(out.path, "SELECT query_key FROM queries ORDER BY query_id")] == ["q_all", "q_test"]
    assert out.manifest["dropped"]["queries_without_kept_items"] == 1


def test_search_eval_qrels_need_training_items(tmp_path):
    # i7/i8 are in both tasks but only relevant to evaluation queries: those qrels go, then empty queries
    source = hand_source()
    source.interactions += seq("G", ["i0", "i1", "i7", "i8", "i2"])
    source.qrels = [("q_all", i) for i in ALL_ITEMS] + [("q_test", "i2"), ("q_test", "i7"),
                                                          ("q_valid", "i8"), ("q_test2", "i8")]
    source.queries = [("q_all", "all", "train"), ("q_test", "t", "test"), ("q_valid", "v", "valid"),
                      ("q_test2", "t2", "test")]
    out = build(tmp_path, source, "toy:min_user_interactions=4")
    got = rows(out.path, """SELECT q.query_key, q.split, i.item_key FROM qrels r JOIN queries q USING (query_id)
                            JOIN items i USING (item_id) WHERE q.split <> 'train' ORDER BY 1, 3""")
    assert got == [("q_test", "test", "i2")]
    d = out.manifest["dropped"]
    assert d["search_test_qrels_item_not_in_training"] == 2
    assert d["search_valid_qrels_item_not_in_training"] == 1
    assert d["search_test_queries_left_empty"] == 1
    assert d["search_valid_queries_left_empty"] == 1
    assert out.manifest["counts"]["queries_by_split"] == {"train": 1, "valid": 0, "test": 1}  # empty valid is fine


def _expected_assignment(keys: list[str], seed: int, n_valid: int, n_test: int) -> dict[str, str]:
    order = sorted(keys, key=lambda k: (hashlib.md5(f"{seed}:{k}".encode()).hexdigest(), k))
    return {k: "test" if i < n_test else "valid" if i < n_test + n_valid else "train" for i, k in enumerate(order)}


def test_search_split_assignment_by_md5(tmp_path):
    # 35 unassigned queries, each relevant to i0 (a training item for sure): 0.1 * 35 = 3.5 rounds up to 4
    keys = [f"q{i:02d}" for i in range(35)]
    source = hand_source()
    source.qrels = [("q_all", i) for i in ALL_ITEMS] + [(k, "i0") for k in keys]
    source.queries = [("q_all", "all", "train")] + [(k, k, None) for k in keys]
    for seed in (0, 7):
        out = build(tmp_path, source, f"toy:min_user_interactions=4,split_seed={seed}", name=f"s{seed}.duckdb")
        got = dict(rows(out.path, "SELECT query_key, split FROM queries WHERE query_key <> 'q_all'"))
        assert got == _expected_assignment(keys, seed, n_valid=4, n_test=4)
        assert out.manifest["counts"]["queries_by_split"] == {"train": 28, "valid": 4, "test": 4}


@pytest.mark.parametrize("n, valid_frac, test_frac, expected", [
    (35, 0.1, 0.1, (4, 4)), (34, 0.1, 0.1, (3, 3)), (10, 0.1, 0.1, (1, 1)), (4, 0.1, 0.1, (0, 0)),
    (5, 0.1, 0.1, (1, 1)), (0, 0.1, 0.1, (0, 0)), (3, 0.5, 0.5, (1, 2)), (700, 0.0, 0.2, (0, 140)),
])
def test_eval_query_counts_round_half_up(n, valid_frac, test_frac, expected):
    if valid_frac + test_frac >= 1:
        params = SplitParams.__new__(SplitParams)
        object.__setattr__(params, "valid_frac", valid_frac)
        object.__setattr__(params, "test_frac", test_frac)
    else:
        params = SplitParams(valid_frac=valid_frac, test_frac=test_frac)
    assert params.eval_query_counts(n) == expected


# ---------------------------------------------------------------------------------------------------
# Popularity and head


def test_popularity_and_head_flags(tmp_path):
    out = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    got = {k: (pr, ps) for k, pr, ps in rows(out.path, "SELECT item_key, pop_rec, pop_search FROM items")}
    # training parts (positions 1..t-2): A = i0 i1 i2, B = i5 i6 i3 i4, C = i0 i1
    assert got == {"i0": (2, 1), "i1": (2, 1), "i2": (1, 1), "i3": (1, 1), "i4": (1, 1), "i5": (1, 1),
                   "i6": (1, 1)}
    # 7 items, head_fraction 0.01 -> max(1, ceil(0.07)) = 1 item; ties by item_id: i0 for both tasks
    head = rows(out.path, "SELECT item_key FROM items WHERE head_rec")
    assert head == [("i0",)]
    assert rows(out.path, "SELECT item_key FROM items WHERE head_search") == [("i0",)]
    out = build(tmp_path, hand_source(), "toy:head_fraction=0.3,min_user_interactions=4", name="h.duckdb")
    # ceil(0.3 * 7) = 3: rec i0, i1 (2 each) then i2 by id; search all tie: i0, i1, i2
    assert rows(out.path, "SELECT item_key FROM items WHERE head_rec ORDER BY item_id") == [("i0",), ("i1",), ("i2",)]
    assert SplitParams(head_fraction=0.01).head_size(700) == 7  # exact: 0.01 * 700 is not 7.000000000000001


# ---------------------------------------------------------------------------------------------------
# Fingerprint and determinism


def table_bytes(path: Path) -> dict[str, list]:
    return {t: rows(path, canonical_query(t)) for t, _, _ in FINGERPRINT_TABLES}


def test_build_twice_same_fingerprint_and_tables(tmp_path):
    first = build(tmp_path, hand_source(), "toy:min_user_interactions=4", name="a.duckdb")
    second = build(tmp_path, hand_source(), "toy:min_user_interactions=4", name="b.duckdb")
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint.startswith("sha256:") and len(first.fingerprint) == 7 + 64
    assert table_bytes(first.path) == table_bytes(second.path)
    manifest = "SELECT * FROM manifest ORDER BY key"
    assert rows(first.path, manifest) == rows(second.path, manifest)


def test_fingerprint_independent_of_threads_and_row_order(tmp_path, monkeypatch):
    first = build(tmp_path, hand_source(), "toy:min_user_interactions=4", name="a.duckdb")
    shuffled = hand_source()
    shuffled.interactions = shuffled.interactions[::-1]
    shuffled.qrels = shuffled.qrels[::-1]
    monkeypatch.setenv("HARNESS_DUCKDB_THREADS", "1")
    second = build(tmp_path, shuffled, "toy:min_user_interactions=4", name="b.duckdb")
    assert first.fingerprint == second.fingerprint


def test_changed_parameter_or_row_changes_fingerprint(tmp_path):
    base = build(tmp_path, hand_source(), "toy:min_user_interactions=4", name="a.duckdb").fingerprint
    seed = build(tmp_path, hand_source(), "toy:min_user_interactions=4,split_seed=1", name="b.duckdb").fingerprint
    source_param = build(tmp_path, hand_source(params={"x": 1}), "toy:min_user_interactions=4", name="c.duckdb")
    changed = hand_source()
    changed.interactions[0] = ("A", "i0", 99, 0)  # one timestamp differs, same order
    row = build(tmp_path, changed, "toy:min_user_interactions=4", name="d.duckdb").fingerprint
    assert len({base, seed, source_param.fingerprint, row}) == 4


def test_fingerprint_of_a_known_build_is_pinned(tmp_path):
    """The fingerprint algorithm itself is part of the format: a change here needs a FORMAT_VERSION bump."""
    out = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    assert out.fingerprint == PINNED_TOY_FINGERPRINT


def test_fingerprint_matches_its_documented_formula(tmp_path):
    """Recompute the fingerprint row by row with struct (no numpy/arrow), as harness.data.fingerprint documents."""
    import struct

    from harness.io import canonical_json

    out = build(tmp_path, hand_source(params={"alpha": 0.5}), "toy:min_user_interactions=4")
    m = out.manifest
    header = {k: m[k] for k in ("format_version", "dataset", "source", "params", "split_params", "files")}
    outer = hashlib.sha256(b"jsr-harness-dataset-fingerprint\n" + canonical_json(header).encode())
    con = duckdb.connect(str(out.path), read_only=True)
    for table, _, _ in FINGERPRINT_TABLES:
        cur = con.execute(canonical_query(table))
        names = [d[0] for d in cur.description]
        types = [str(t) for t in (d[1] for d in cur.description)]
        data = cur.fetchall()
        for j, (name, typ) in enumerate(zip(names, types)):
            values = [r[j] for r in data]
            if typ in ("VARCHAR", "STRING"):
                lengths = b"".join(struct.pack("<q", len(v.encode())) for v in values)
                digest = hashlib.sha256(lengths).hexdigest() + ":" + hashlib.sha256(
                    "".join(values).encode()).hexdigest()
                enc = "utf8"
            else:
                fmt, enc = {"INTEGER": ("<i", "<i4"), "BIGINT": ("<q", "<i8"), "BOOLEAN": ("<B", "u1")}[typ]
                digest = hashlib.sha256(b"".join(struct.pack(fmt, int(v)) for v in values)).hexdigest()
            outer.update(f"{table}.{name}\t{enc}\t{digest}\n".encode())
    con.close()
    assert out.fingerprint == "sha256:" + outer.hexdigest()


def test_fingerprint_does_not_depend_on_stored_row_order(tmp_path):
    """Tables are hashed in key order whatever order they are stored in (the shuffled copy takes the
    ORDER BY fallback, the original the streaming fast path)."""
    out = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    header = {k: out.manifest[k] for k in ("format_version", "dataset", "source", "params", "split_params", "files")}
    con = duckdb.connect(str(out.path))
    assert compute_fingerprint(con, header) == out.fingerprint
    for table, _, _ in FINGERPRINT_TABLES:
        con.execute(f"CREATE TABLE shuffled AS SELECT * FROM {table} ORDER BY md5(CAST(rowid AS VARCHAR)) DESC")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE shuffled RENAME TO {table}")
    assert rows_differ_from_key_order(con)
    assert compute_fingerprint(con, header) == out.fingerprint
    con.close()


def rows_differ_from_key_order(con) -> bool:
    stored = con.execute("SELECT user_id, pos FROM sequences").fetchall()
    return stored != sorted(stored)


PINNED_TOY_FINGERPRINT = "sha256:29f4d0ee1ed6cc298f1ee8e01d73915a794a8c75e8d02ab77c1449557c1fcaf6"


# ---------------------------------------------------------------------------------------------------
# The manifest and the skip of up-to-date builds


def test_manifest_contents(tmp_path):
    out = build(tmp_path, hand_source(params={"alpha": 0.5}), "toy:min_user_interactions=4")
    m = dict((k, json.loads(v)) for k, v in rows(out.path, "SELECT key, value FROM manifest"))
    assert m["format_version"] == 1
    assert m["dataset"] == "toy:min_user_interactions=4"
    assert m["source"] == "toy"
    assert m["params"] == {"alpha": 0.5}
    assert m["split_params"] == {"split_seed": 0, "valid_frac": 0.1, "test_frac": 0.1, "min_user_interactions": 4,
                                 "head_fraction": 0.01}
    assert m["headline_k"] == 10
    assert m["fingerprint"] == out.fingerprint
    assert m["notes"] == {"rows": 15}
    assert m["files"] == []
    assert m["counts"]["users"] == 3 and m["counts"]["sequences"] == 15
    assert set(m) >= {"dropped", "harness_version", "stats"}


def test_up_to_date_build_is_skipped(tmp_path):
    first = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    mtime = first.path.stat().st_mtime_ns
    again = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    assert again.skipped and again.fingerprint == first.fingerprint and first.path.stat().st_mtime_ns == mtime
    forced = build(tmp_path, hand_source(), "toy:min_user_interactions=4", force=True)
    assert not forced.skipped and forced.fingerprint == first.fingerprint
    other = build(tmp_path, hand_source(), "toy:min_user_interactions=4,split_seed=3")
    assert not other.skipped


# ---------------------------------------------------------------------------------------------------
# Bad input


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_empty_after_filtering_is_an_error_and_leaves_nothing(tmp_path):
    disjoint = ToySource(interactions=seq("A", ["a", "b", "c", "d", "e"]), qrels=[("q", "x")])
    with pytest.raises(HarnessError, match=r"empty after filtering: no item appears in both tasks"):
        build(tmp_path, disjoint)
    too_short = ToySource(interactions=seq("A", ["a", "b", "c"]), qrels=[("q", "a"), ("q", "b"), ("q", "c")])
    with pytest.raises(HarnessError, match=r"no user has at least 5 interactions"):
        build(tmp_path, too_short)
    no_test_queries = hand_source()
    no_test_queries.queries = [("q_all", "all", "train"), ("q_test", "t", "train")]
    with pytest.raises(HarnessError, match=r"no search test queries"):
        build(tmp_path, no_test_queries, "toy:min_user_interactions=4")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("change, message", [
    (lambda s: setattr(s, "skip_tables", ("raw_qrels",)), "did not create table raw_qrels"),
    (lambda s: s.queries.append(("q_all", "again", None)), "query_key 'q_all' more than once"),
    (lambda s: s.queries.append(("q_x", "x", "dev")), "query 'q_x' has split 'dev'"),
    (lambda s: setattr(s, "items", [("i0", "a", "b", None), ("i0", "c", "d", None)]), "item_key 'i0' more than once"),
])
def test_bad_raw_tables(tmp_path, change, message):
    source = hand_source()
    change(source)
    with pytest.raises(HarnessError, match=message):
        build(tmp_path, source, "toy:min_user_interactions=4")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("spec, message", [
    ("toy:min_user_interactions=2", "must be at least 3"),
    ("toy:valid_frac=0.6,test_frac=0.5", "sum below 1"),
    ("toy:split_seed=abc", "split_seed='abc' is not a valid int"),
    ("toy:head_fraction=0", "head_fraction=0.0 must be in"),
])
def test_bad_split_parameters(tmp_path, spec, message):
    with pytest.raises(HarnessError, match=message):
        build(tmp_path, hand_source(), spec)


def test_missing_compiled_dataset_names_the_build_command(tmp_path):
    with pytest.raises(HarnessError, match=r"`python -m harness data build ml-small`"):
        CompiledDataset.open("ml-small", cache_dir=tmp_path)
    with pytest.raises(HarnessError, match=r"unknown dataset 'ml-smal'.*Did you mean 'ml-small'"):
        CompiledDataset.open("ml-smal", cache_dir=tmp_path)


def test_old_format_version_is_refused(tmp_path):
    out = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    con = duckdb.connect(str(out.path))
    con.execute("UPDATE manifest SET value = '99' WHERE key = 'format_version'")
    con.close()
    with pytest.raises(HarnessError, match="format version 99.*--force"):
        CompiledDataset.open(out.path)


# ---------------------------------------------------------------------------------------------------
# A killed build leaves the previous good build usable

KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_data_compile import hand_source
    from harness.data.compile import compile_dataset

    class Slow:
        name, description, headline_k = "toy", "slow", 10
        def load(self, con, ctx):
            result = hand_source().load(con, ctx)
            Path({marker!r}).write_text("loading")
            time.sleep(120)
            return result

    compile_dataset("toy:min_user_interactions=4", source=Slow(), dest=Path({dest!r}), force=True)
    """
)


def test_sigkill_mid_build_keeps_previous_build(tmp_path):
    good = build(tmp_path, hand_source(), "toy:min_user_interactions=4")
    marker = tmp_path / "marker"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), marker=str(marker), dest=str(good.path))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert proc.poll() is None, "the build subprocess exited early"
            assert time.time() < deadline, "the build subprocess never started loading"
            time.sleep(0.05)
        assert any(p.name.startswith(".toy.duckdb.") for p in tmp_path.iterdir())  # building beside it
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with CompiledDataset.open(good.path) as ds:
        assert ds.fingerprint == good.fingerprint
        assert len(ds.rec_targets("test")) == 3


# ---------------------------------------------------------------------------------------------------
# At a size spanning many DuckDB row groups and threads: positions and the stored order


class GeneratedSource:
    """300k interactions from arithmetic (no randomness), with ts ties, dropped users and items."""

    name, description, headline_k = "generated", "arithmetic rows", 10

    def load(self, con, ctx):
        con.execute("""CREATE TEMP TABLE raw_interactions AS
            SELECT 'u' || (i % 7001) AS user_key, 'm' || ((i * 7919 + i // 97) % 3001) AS item_key,
                   (i // 7001) % 40 AS ts, (i * 31) % 5 AS seq FROM range(300000) t(i)
            WHERE NOT (i % 7001 < 40 AND i > 7001 * 3)""")  # users u0..u39 keep 4 rows: dropped
        con.execute("""CREATE TEMP TABLE raw_items AS SELECT 'm' || i AS item_key, 'title' AS title,
                       'text' AS text, NULL::INTEGER AS cluster FROM range(3001) t(i)""")
        con.execute("""CREATE TEMP TABLE raw_queries AS SELECT 'q' || j AS query_key, 'query' AS text,
                       NULL::VARCHAR AS split FROM range(2000) t(j)""")
        con.execute("""CREATE TEMP TABLE raw_qrels AS SELECT 'q' || j AS query_key, 'm' || ((j * 7 + k * 101) % 2990)
                       AS item_key FROM range(2000) t(j), range(5) r(k)""")
        return SourceResult(files=[], params={})


def test_positions_and_stored_order_at_scale(tmp_path, monkeypatch):
    from harness.data import fingerprint

    monkeypatch.setenv("HARNESS_DUCKDB_THREADS", "4")
    out = compile_dataset("generated", source=GeneratedSource(), dest=tmp_path / "g.duckdb")
    assert out.manifest["dropped"]["users_below_min_interactions"] > 0
    assert out.manifest["counts"]["sequences"] > 250_000
    con = duckdb.connect(str(out.path), read_only=True)
    # stored order is key order for every table: the fingerprint's fast path holds (no fallback sort)
    for table, _, keys in FINGERPRINT_TABLES:
        assert fingerprint._stream_digests(con, table, canonical_query(table, ordered=False), keys) is not None, table
    con.close()
    # positions against a plain window-function computation over the same raw rows
    ref = duckdb.connect()
    GeneratedSource().load(ref, None)
    ref.execute(f"ATTACH '{out.path}' AS c (READ_ONLY)")
    mismatches = ref.execute("""
        WITH r AS (SELECT user_key, item_key, ts, row_number() OVER (PARTITION BY user_key
                   ORDER BY ts, seq, item_key) AS pos FROM raw_interactions
                   WHERE item_key IN (SELECT item_key FROM c.items)
                   AND user_key IN (SELECT user_key FROM c.users))
        SELECT count(*) FROM c.sequences s JOIN c.users u USING (user_id) JOIN c.items i USING (item_id)
        FULL JOIN r ON r.user_key = u.user_key AND r.pos = s.pos
        WHERE r.item_key IS DISTINCT FROM i.item_key OR r.ts IS DISTINCT FROM s.ts""").fetchall()[0][0]
    ref.close()
    assert mismatches == 0
