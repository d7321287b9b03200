"""The compile's one big sort in numpy (harness.data.sequence_sort) gives exactly the order SQL gives.

Unit checks against np.lexsort on tie-heavy random keys, then whole compiles: the numpy path and the SQL path
(SEQUENCES_SQL, forced by making can_pack refuse) must write the same tables and the same fingerprint.
"""

from __future__ import annotations

import random

import duckdb
import numpy as np
import pytest

import harness.data.stages as stages
from harness.data.compile import compile_dataset
from harness.data.sequence_sort import can_pack, positions, sequence_order
from test_data_compile import ToySource


def _reference(user, ts, seq, item) -> list[tuple]:
    keys = (item, ts, user) if seq is None else (item, seq, ts, user)
    order = np.lexsort(keys)
    return list(zip(user[order].tolist(), ts[order].tolist(),
                    ([None] * len(order)) if seq is None else seq[order].tolist(), item[order].tolist()))


def _sorted_by(order, user, ts, seq, item) -> list[tuple]:
    return list(zip(user[order].tolist(), ts[order].tolist(),
                    ([None] * len(order)) if seq is None else seq[order].tolist(), item[order].tolist()))


@pytest.mark.parametrize("case", range(12))
def test_same_order_as_lexsort_on_tie_heavy_keys(case: int):
    rng = np.random.default_rng(case)
    n = int(rng.integers(1, 3000))
    user = rng.integers(0, int(rng.integers(1, 60)), n).astype(np.int32)
    ts_low, ts_span = [(0, 3), (-50, 10), (10**9, 10**6), (-(2**40), 2**41)][case % 4]
    ts = rng.integers(ts_low, ts_low + ts_span + 1, n).astype(np.int64)
    seq = None if case % 3 == 0 else rng.integers(0, 3, n).astype(np.int64) * 2**32 + rng.integers(0, 4, n)
    item = rng.integers(0, 20, n).astype(np.int32)
    order = sequence_order(user, ts, seq, item)
    assert sorted(order.tolist()) == list(range(n))  # a permutation
    assert _sorted_by(order, user, ts, seq, item) == _reference(user, ts, seq, item)


def test_keys_that_do_not_fit_one_uint64_are_refused():
    user = np.array([0, 2**20], np.int32)
    assert can_pack(user, np.array([0, 2**43 - 1], np.int64))  # 21 + 43 bits
    assert not can_pack(user, np.array([0, 2**43], np.int64))  # 21 + 44 bits
    assert not can_pack(user, np.array([-(2**62), 2**62], np.int64))
    with pytest.raises(ValueError, match="sort in SQL"):
        sequence_order(user, np.array([-(2**62), 2**62], np.int64), None, np.array([0, 1], np.int32))
    assert can_pack(np.array([], np.int32), np.array([], np.int64))
    assert len(sequence_order(np.array([], np.int32), np.array([], np.int64), None, np.array([], np.int32))) == 0


def test_positions_count_within_each_user_and_refuse_a_mismatch():
    user_sorted = np.array([0, 0, 0, 2, 2, 3], np.int32)
    assert positions(user_sorted, np.array([3, 0, 2, 1])).tolist() == [1, 2, 3, 1, 2, 1]
    with pytest.raises(RuntimeError, match="disagree"):
        positions(user_sorted, np.array([2, 1, 2, 1]))
    with pytest.raises(RuntimeError, match="disagree"):
        positions(user_sorted, np.array([3, 0, 2]))  # a user the lengths do not know


def _tie_heavy_source(seed: int, *, ts_span: int = 4, null_seq: bool = False, ts_low: int = 100) -> ToySource:
    rnd = random.Random(seed)
    items = [f"i{k}" for k in range(25)]
    interactions = []
    for u in range(40):
        for _ in range(rnd.randint(3, 14)):
            seq = None if null_seq and rnd.random() < 0.2 else rnd.randint(0, 2)
            interactions.append((f"u{u:02d}", rnd.choice(items), ts_low + rnd.randint(0, ts_span), seq))
    rnd.shuffle(interactions)
    qrels = [(f"q{q:02d}", items[k]) for q in range(60) for k in {q % 25, (7 * q) % 25}]
    return ToySource(interactions, qrels)


def _tables(path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("users", "sequences", "rec_examples", "items", "queries", "qrels")}
    finally:
        con.close()


def _build_both(tmp_path, source, monkeypatch):
    calls = []
    real = stages.sequence_order

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(stages, "sequence_order", counting)
    fast = compile_dataset("toy", source=source, dest=tmp_path / "numpy.duckdb")
    used_numpy = bool(calls)
    monkeypatch.setattr(stages, "can_pack", lambda user, ts: False)
    slow = compile_dataset("toy", source=source, dest=tmp_path / "sql.duckdb")
    return fast, slow, used_numpy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_and_sql_sorts_compile_the_same_dataset(tmp_path, monkeypatch, seed: int):
    fast, slow, used_numpy = _build_both(tmp_path, _tie_heavy_source(seed), monkeypatch)
    assert used_numpy
    assert fast.fingerprint == slow.fingerprint
    assert _tables(fast.path) == _tables(slow.path)
    ties = duckdb.connect(str(fast.path), read_only=True).execute(
        "SELECT count(*) FROM (SELECT user_id, ts FROM sequences GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
    assert ties > 10  # the case is about ties


def test_null_seq_and_unpackable_timestamps_take_the_sql_sort(tmp_path, monkeypatch):
    for name, source in (("nulls", _tie_heavy_source(3, null_seq=True)),
                         ("wide", _tie_heavy_source(4, ts_low=-(2**62), ts_span=2**62))):
        calls = []
        monkeypatch.setattr(stages, "sequence_order", lambda *a: calls.append(1))
        built = compile_dataset("toy", source=source, dest=tmp_path / f"{name}.duckdb")
        assert not calls, name
        n = duckdb.connect(str(built.path), read_only=True).execute("SELECT count(*) FROM sequences").fetchall()
        assert n[0][0] > 0
