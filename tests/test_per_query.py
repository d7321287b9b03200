"""harness.records.per_query: the long table of per-query values and every aggregation of it, checked on small tables
and, bit for bit, on the committed official records (leaderboard/official).

On the official records the polars results are compared twice: exactly with what the records store (the numbers a
rerun must write again: their means, sizes, per-seed means and paired tests), and with an independent, plain Python
computation (math.fsum, correctly rounded), within 1e-12 where only the order of a float sum differs. The spreads over
seeds that tables show rounded (tools/seed_table.py, the leaderboard) are compared as shown, exactly.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from harness.errors import HarnessError
from harness.evaluation.comparison import paired_tests
from harness.leaderboard.collect import find_record_folders
from harness.metrics import Metric
from harness.metrics.significance import compare
from harness.records.files import per_query_table, read_per_query
from harness.records.per_query import (
    COLUMNS,
    aligned,
    check_same_queries_every_seed,
    long_table,
    metric_means,
    metrics_blocks,
    over_seeds,
    per_query_frame,
    query_means,
    record_values,
    seed_means,
)
from harness.records.provenance import results_folder
from harness.records.record import ResultRecord

OFFICIAL = Path(__file__).resolve().parents[1] / "leaderboard" / "official"
FLOAT_ORDER = 1e-12  # what adding the same numbers in another order may change, relative to metric values <= 1

M, H = Metric("R", 1), Metric("R", 1, "head")


def _table(per_seed: dict[int, dict[Metric, list[float]]], task: str = "rec") -> pa.Table:
    """The per-query table of {seed: {metric: values of queries q0, q1, ...}}, seeds in the order given."""
    parts = []
    for seed, values in per_seed.items():
        queries = [f"q{i}" for i in range(len(next(iter(values.values()))))]
        parts.append(per_query_table(task, seed, queries, {m: np.array(v, np.float64) for m, v in values.items()}))
    return pa.concat_tables(parts)


# --- small tables ------------------------------------------------------------------------------------------------


def test_the_long_table_has_one_row_per_value_in_the_files_order_with_seeds_ascending():
    table = _table({1: {M: [1.0, 0.0], H: [np.nan, 1.0]}, 0: {M: [0.0, 0.5], H: [np.nan, 0.0]}})
    values = per_query_frame(table, dataset="sim1", submission="sasrec")
    assert values.columns == ["dataset", "submission", "task", "seed", "query", "R@1", "R@1/head"]
    long = long_table(values)
    assert tuple(long.columns) == COLUMNS and long.height == 8
    assert long.filter(metric="R@1/head").select("seed", "query", "segment", "value").rows() == [
        (0, "q0", "head", None), (0, "q1", "head", 0.0), (1, "q0", "head", None), (1, "q1", "head", 1.0)]
    assert set(long.get_column("dataset")) == {"sim1"} and set(long.get_column("submission")) == {"sasrec"}
    assert per_query_frame(table, metrics=[H]).columns[-1] == "R@1/head" and "R@1" not in per_query_frame(
        table, metrics=[H]).columns


def test_metrics_blocks_over_seeds():
    table = _table({1: {M: [1.0, 0.0, 0.5], H: [np.nan, 0.0, 1.0]}, 0: {M: [0.0, 0.0, 0.5], H: [np.nan, 1.0, 1.0]}})
    values = per_query_frame(table)
    block = metrics_blocks(values)["rec"]
    assert list(block) == ["R@1", "R@1/head"]
    assert block["R@1"] == {"mean": pytest.approx((1.5 / 3 + 0.5 / 3) / 2), "n": 3,
                            "per_seed": {"0": pytest.approx(0.5 / 3), "1": pytest.approx(0.5)}}
    assert list(block["R@1"]["per_seed"]) == ["0", "1"]
    assert block["R@1/head"] == {"mean": 0.75, "n": 2, "per_seed": {"0": 1.0, "1": 0.5}}
    assert query_means(values).get_column("R@1/head").to_list() == [None, 0.5, 1.0]
    assert seed_means(values).filter(metric="R@1/head").select("seed", "segment", "mean", "n").rows() == [
        (0, "head", 1.0, 2), (1, "head", 0.5, 2)]
    assert metric_means(values).select("metric", "segment", "n").rows() == [("R@1", "all", 3), ("R@1/head", "head", 2)]


def test_an_empty_segment_has_a_null_mean_and_no_values_give_no_block():
    t = Metric("R", 1, "torso")
    assert metrics_blocks(per_query_frame(_table({0: {t: [np.nan, np.nan]}}))) == {
        "rec": {"R@1/torso": {"mean": None, "n": 0, "per_seed": {"0": None}}}}
    assert metrics_blocks(per_query_frame(_table({0: {t: [np.nan]}}).slice(0, 0))) == {}


def test_seeds_that_scored_different_queries_are_refused():
    check_same_queries_every_seed(per_query_frame(_table({0: {H: [np.nan, 1.0]}, 1: {H: [np.nan, 0.0]}})))
    with pytest.raises(HarnessError, match="seed 1 and seed 0 do not score the same queries for R@1/head"):
        check_same_queries_every_seed(per_query_frame(_table({0: {H: [np.nan, 1.0]}, 1: {H: [1.0, 1.0]}})))
    with pytest.raises(HarnessError, match="seed 1 and seed 0 do not score the same queries"):
        check_same_queries_every_seed(per_query_frame(_table({0: {H: [0.0, 1.0]}, 1: {H: [1.0]}})))


def test_seed_averages_add_in_seed_order_every_time():
    """numpy's mean over the seed axis, bit for bit, on values whose sum depends on the order; and the same bits on
    every run (polars' group_by mean sums a group's parts in parallel: its last bits vary)."""
    rng = np.random.default_rng(7)
    per_seed = {seed: {M: rng.random(3000) * rng.choice([1e-3, 1.0, 1e3], 3000)} for seed in range(7)}
    expected = np.stack([per_seed[s][M] for s in range(7)]).mean(axis=0)
    table = _table(dict(reversed(per_seed.items())))  # files list seeds in any order
    for _ in range(3):
        assert np.array_equal(query_means(per_query_frame(table)).get_column("R@1").to_numpy(), expected)


def test_aligned_puts_the_reference_in_our_query_order_and_refuses_other_queries():
    mine = query_means(per_query_frame(_table({0: {M: [0.1, 0.2, 0.3]}})))
    theirs = query_means(per_query_frame(_table({0: {M: [1.0, 2.0, 3.0]}}))).reverse()
    assert aligned(mine, theirs, source="a", reference_source="b").select("query", "R@1").rows() == [
        ("q0", 1.0), ("q1", 2.0), ("q2", 3.0)]
    with pytest.raises(HarnessError, match=r"a and b: they score different queries \(3 vs 2"):
        aligned(mine, theirs.head(2), source="a", reference_source="b")


def test_over_seeds_skips_nulls_and_has_no_sd_under_two_seeds():
    per_seed = pl.DataFrame({"key": ["a", "a", "a", "b", "c"], "seed": [2, 0, 1, 0, 0],
                             "value": [0.3, 0.1, None, 0.5, None]})
    rows = over_seeds(per_seed, ["key"]).rows()
    assert rows == [("a", 2, pytest.approx(0.2), pytest.approx(statistics.stdev([0.1, 0.3]))), ("b", 1, 0.5, None)]


# --- the official records ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official() -> list[tuple[Path, ResultRecord]]:
    folders = find_record_folders(OFFICIAL)
    assert folders, f"no records under {OFFICIAL}"
    return [(folder, ResultRecord.read(folder / "record.json")) for folder in folders]


def test_official_metrics_are_what_the_records_store_bit_for_bit(official):
    for folder, record in official:
        stored = {task: {name: {"mean": v.mean, "n": v.n, "per_seed": {str(s): x for s, x in v.per_seed.items()}}
                         for name, v in block.items()} for task, block in record.metrics.items()}
        assert metrics_blocks(record_values(folder, record)) == stored, folder  # == on floats: every bit


def test_official_metrics_agree_with_a_plain_python_computation(official):
    """Per seed: fsum of the segment's values / n. Over seeds: each query's values added in seed order / seeds, then
    fsum / n. polars (with numpy's pairwise sums) may differ only as float order does."""
    for folder, record in official:
        recomputed = metrics_blocks(record_values(folder, record))
        for task, block in _plain_metrics(read_per_query(folder)).items():
            for name, plain in block.items():
                ours = recomputed[task][name]
                assert ours["n"] == plain["n"], (folder, task, name)
                assert _close(ours["mean"], plain["mean"]), (folder, task, name)
                assert ours["per_seed"].keys() == plain["per_seed"].keys()
                for seed, value in plain["per_seed"].items():
                    assert _close(ours["per_seed"][seed], value), (folder, task, name, seed)


def test_official_paired_tests_are_what_the_records_store_bit_for_bit(official):
    """Every significance row recomputed from the per-query files of the record and its reference, Holm across the
    record's rows, as the writer does."""
    tested = 0
    for folder, record in official:
        if not record.significance:
            continue
        fresh = []
        for task in sorted(record.significance):
            rows = record.significance[task]
            metrics = [Metric.parse(row.metric) for row in rows]
            ref_folder = results_folder(OFFICIAL, record.dataset.name, rows[0].reference, record.params.decoding)
            values, reference = (query_means(record_values(f, metrics=metrics).filter(task=task))
                                 for f in (folder, ref_folder))
            tests, missing = paired_tests(values, reference, metrics, alpha=rows[0].alpha, source=str(folder),
                                          reference_source=str(ref_folder))
            assert not missing
            fresh.extend(tests)
        stored = [row for task in sorted(record.significance) for row in record.significance[task]]
        for row, test in zip(stored, compare(fresh, alpha=stored[0].alpha), strict=True):
            expected = test.to_dict()
            for name in ("n", "mean", "reference_mean", "diff", "ci_low", "ci_high", "t", "p", "p_holm", "significant"):
                assert getattr(row, name) == expected[name], (folder, row.metric, name)
            tested += 1
    assert tested > 0


def test_official_spreads_over_seeds_show_as_statistics_computes_them(official):
    """tools/seed_table.py and the leaderboard show mean ± sd over seeds rounded (3 and 4 decimals); statistics
    computes them exactly. The mean is statistics' own; the sd polars', shown the same."""
    rows = [(str(folder), task, name, seed, x) for folder, record in official for task, block in record.metrics.items()
            for name, value in block.items() for seed, x in value.per_seed.items()]
    per_seed = pl.DataFrame(rows, schema=["record", "task", "metric", "seed", "value"], orient="row")
    spreads = over_seeds(per_seed, ["record", "task", "metric"])
    assert spreads.height > 1000
    plain: dict[tuple, list[float]] = {}
    for key, seed, x in sorted(((r[:3], r[3], r[4]) for r in rows), key=lambda r: r[1]):
        if x is not None:
            plain.setdefault(key, []).append(x)
    for *key, seeds, mean, sd in spreads.iter_rows():
        values = plain[tuple(key)]
        assert seeds == len(values)
        assert mean == statistics.mean(values)
        if seeds >= 2:
            exact = statistics.stdev(values)
            assert f"{sd:.3f}" == f"{exact:.3f}" and f"{sd:.4f}" == f"{exact:.4f}" and _close(sd, exact), key
        else:
            assert sd is None


def test_the_long_table_of_every_official_record(official):
    long = pl.concat([long_table(record_values(folder, record)) for folder, record in official])
    assert tuple(long.columns) == COLUMNS
    assert long.select("dataset", "submission").unique().height == len(official)
    assert set(long.get_column("segment")) == {"all", "head", "torso"}
    assert long.height == sum(read_per_query(folder).num_rows * (read_per_query(folder).num_columns - 3)
                              for folder, _ in official)


# --- the plain computation ---------------------------------------------------------------------------------------


def _plain_metrics(table: pa.Table) -> dict[str, dict[str, dict]]:
    columns = table.to_pydict()
    names = [name for name in table.column_names if name not in ("task", "seed", "qid")]
    out: dict[str, dict[str, dict]] = {}
    for task in sorted(set(columns["task"])):
        rows = [i for i, t in enumerate(columns["task"]) if t == task]
        seeds = sorted({columns["seed"][i] for i in rows})
        for name in names:
            by_seed = {seed: {columns["qid"][i]: columns[name][i] for i in rows if columns["seed"][i] == seed}
                       for seed in seeds}
            per_seed = {str(s): _fmean([x for x in by_seed[s].values() if x is not None]) for s in seeds}
            averaged = []
            for query in by_seed[seeds[0]]:
                values = [by_seed[s][query] for s in seeds]
                if values[0] is not None:
                    total = 0.0
                    for x in values:
                        total += x
                    averaged.append(total / len(values))
            out.setdefault(task, {})[name] = {"mean": _fmean(averaged), "n": len(averaged), "per_seed": per_seed}
    return out


def _fmean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= FLOAT_ORDER * max(1.0, abs(a), abs(b))
