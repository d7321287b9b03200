"""Per-query values of result records, and every aggregation the harness makes of them, in polars.

A record's per-query values are, in the long form,

    dataset  submission  task  seed  query  metric     segment  value
    sim1     sasrec      rec   0     u17    R@10/head  head     0.5        (null: u17 has no head target)

(`long_table`), and every number the harness derives from them is one polars query here:

    seed_means(values)       mean over a segment's queries, per seed           a record's metrics[task][m].per_seed
    query_means(values)      each query's value averaged over the seeds        what the paired tests compare
    metric_means(values)     the mean of those over queries, and n             a record's metrics[task][m].mean, .n
    metrics_blocks(values)   the three as a record's `metrics`                 the record writer and the verifier
    aligned(values, ref)     the reference's query means in the order of ours  the significance tests, the gate
    over_seeds(frame, by)    mean and sample sd over seeds of per-seed numbers leaderboard spread, tools/seed_table.py

The record writer, the verifier, the significance tests, the gate, the leaderboard and tools/seed_table.py all call
these: one definition of each number, so the verifier recomputes a record exactly as it was written.

`values` is the long table pivoted on the metric, as per_query.parquet stores it (`per_query_frame`: dataset,
submission, task, seed, query, then one column per metric). The aggregations group its rows, one per (task, seed,
query), with one expression per metric column, rather than the long table's rows, one per value: the same groups,
a few dozen times fewer rows to hash (a record's metrics at 163k queries, 5 seeds and 36 metrics: about 1 s and
0.9 GB instead of 15 s and 4.7 GB). Their results are long: one row per metric, with its segment.

Floats, bit for bit. Records store full-precision means, and a rerun must write the very same numbers
(tests/test_per_query.py compares every official record exactly), so where polars would add in another order than
the records were written with, the order is pinned:
- a query's mean over seeds is `list.mean` of its values in seed order: polars adds a list's values one after the
  other, as numpy's mean over the seed axis does. (group_by(...).agg(mean) is not used: it sums parts of a group in
  parallel, and its last bits change from one run to the next; nor `sum / 5`: polars multiplies by 1/5 instead.)
- a mean over queries is numpy's, called on each group's values in the file's query order: numpy sums pairwise,
  polars in other blocks, and the two differ in the last bits for about a fifth of the official records' means.
  Grouping, ordering, counting and pairing stay in polars; only that sum is numpy's.
- a mean over seeds of per-seed numbers, which tables show rounded, is exact (over_seeds).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import polars as pl

from harness.errors import HarnessError
from harness.metrics.measures import SEGMENTS, Metric
from harness.records.files import KEY_COLUMNS, read_per_query, read_record_folder
from harness.records.record import ResultRecord

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow

COLUMNS = ("dataset", "submission", "task", "seed", "query", "metric", "segment", "value")  # the long table's
SEGMENT = pl.Enum(list(SEGMENTS))
RECORD = ["dataset", "submission"]
ROW_KEYS = [*RECORD, "task", "seed", "query"]  # a per-query frame's rows; its other columns are metrics


# --- the values ----------------------------------------------------------------------------------------------------


def per_query_frame(per_query: "pyarrow.Table | pl.DataFrame", *, dataset: str = "", submission: str = "",
                    metrics: Iterable[Metric | str] | None = None) -> pl.DataFrame:
    """A per-query table (harness.records.files) as the frame every aggregation here reads: ROW_KEYS, then one float
    column per metric (`metrics`: only these, those the table has), null outside the metric's segment; rows in the
    table's order with each task's seeds ascending."""
    wide = per_query if isinstance(per_query, pl.DataFrame) else pl.from_arrow(per_query)
    names = [name for name in wide.columns if name not in KEY_COLUMNS]
    if metrics is not None:
        wanted = {str(m) for m in metrics}
        names = [name for name in names if name in wanted]
    # Seeds ascending within each task: the order a query's values are added in (module docstring). Stable, so each
    # seed keeps the table's query order; the writer's tables are in this order already.
    return wide.sort("task", "seed", maintain_order=True).select(
        pl.lit(dataset, pl.String).alias("dataset"), pl.lit(submission, pl.String).alias("submission"),
        pl.col("task").cast(pl.String), pl.col("seed").cast(pl.Int64), pl.col("qid").cast(pl.String).alias("query"),
        *(pl.col(name).cast(pl.Float64).fill_nan(None) for name in names),  # a NaN is outside the segment too
    )


def record_values(folder: "str | Path", record: ResultRecord | None = None,
                  metrics: Iterable[Metric | str] | None = None) -> pl.DataFrame:
    """The per-query frame of the record in `folder` (`record`: its record, when already read), labelled with its
    dataset and submission; no rows when the record has no per-query values."""
    record = record if record is not None else read_record_folder(folder)
    if record.files.per_query is None:
        return pl.DataFrame(schema={**dict.fromkeys(ROW_KEYS, pl.String), "seed": pl.Int64})
    return per_query_frame(read_per_query(folder), dataset=record.dataset.name, submission=record.submission.name,
                           metrics=metrics)


def metric_names(values: pl.DataFrame) -> list[str]:
    """The metric columns of a per-query frame (or of query_means)."""
    return [name for name in values.columns if name not in ROW_KEYS]


def long_table(values: pl.DataFrame) -> pl.DataFrame:
    """The long form (COLUMNS) of a per-query frame: one row per value, metric by metric, each in the frame's order."""
    names = metric_names(values)
    keys = [name for name in ROW_KEYS if name in values.columns]
    parts = [values.select(*keys, pl.lit(name).alias("metric"), _segment(name), pl.col(name).alias("value"))
             for name in names]
    empty = pl.DataFrame(schema={**dict.fromkeys(COLUMNS, pl.String), "seed": pl.Int64, "segment": SEGMENT,
                                 "value": pl.Float64})
    return pl.concat(parts, rechunk=False) if parts else empty  # the key columns' buffers are shared by every part


# --- aggregations ------------------------------------------------------------------------------------------------


def query_means(values: pl.DataFrame) -> pl.DataFrame:
    """The per-query frame averaged over seeds: one row per (dataset, submission, task, query), in the frame's query
    order, with each metric's value averaged over the seeds (null outside the segment)."""
    names = metric_names(values)
    by_query = values.group_by([*RECORD, "task", "query"], maintain_order=True)  # a group keeps the rows' seed order
    return by_query.agg(*map(pl.col, names)).with_columns(pl.col(name).list.mean() for name in names)


def seed_means(values: pl.DataFrame) -> pl.DataFrame:
    """Long: dataset, submission, task, seed, metric, segment, then `mean` over the segment's queries (null when
    none is in it) and `n`, how many."""
    keys = [*RECORD, "task", "seed"]
    by_seed = values.group_by(keys, maintain_order=True).agg(pl.col(name).drop_nulls() for name in metric_names(values))
    return _per_metric(by_seed, keys, _mean, pl.col("values").list.len())


def metric_means(values: pl.DataFrame) -> pl.DataFrame:
    """Long: dataset, submission, task, metric, segment, then `mean` over the segment's queries of their
    seed-averaged values (null when none is in it) and `n`, how many queries are in the segment."""
    keys = [*RECORD, "task"]
    by_task = query_means(values).group_by(keys, maintain_order=True).agg(*map(pl.col, metric_names(values)))
    return _per_metric(by_task, keys, _nanmean, pl.col("values").list.drop_nulls().list.len())


def metrics_blocks(values: pl.DataFrame) -> dict[str, dict[str, dict]]:
    """A record's `metrics` from its per-query frame: {task: {"R@10": {"mean", "n", "per_seed": {"0": ...}}}}.

    "mean" is the mean over the segment's queries of the seed-averaged values (what the tests compare), which is the
    mean of the per-seed means because every seed scores the same queries in the same segments; "n" the number of
    queries in the segment."""
    blocks: dict[str, dict[str, dict]] = {}
    for row in metric_means(values).iter_rows(named=True):
        blocks.setdefault(row["task"], {})[row["metric"]] = {"mean": row["mean"], "n": row["n"], "per_seed": {}}
    for row in seed_means(values).sort("seed", maintain_order=True).iter_rows(named=True):
        blocks[row["task"]][row["metric"]]["per_seed"][str(row["seed"])] = row["mean"]
    return {task: {name: block[name] for name in sorted(block, key=Metric.parse)} for task, block in blocks.items()}


def check_same_queries_every_seed(values: pl.DataFrame) -> None:
    """HarnessError unless, within each task, every seed scores the same queries, once each, in the same segments
    (what makes a record's mean the mean of its per-seed means)."""
    names = metric_names(values)
    seeds = values.group_by("task").agg(pl.col("seed").n_unique().alias("seeds"))
    counts = values.group_by("task", "query", maintain_order=True).agg(
        pl.len().alias("rows"), pl.col("seed").n_unique().alias("distinct"),
        *(pl.col(name).null_count().alias(name) for name in names))
    rows = pl.col("rows")
    bad = counts.with_row_index("position").join(seeds, on="task").sort("position").filter(
        (rows != pl.col("seeds")) | (pl.col("distinct") != rows)
        | pl.any_horizontal(False, *((pl.col(name) != 0) & (pl.col(name) != rows) for name in names)))
    if bad.is_empty():
        return
    task, query = bad.select("task", "query").row(0)
    all_seeds = sorted(values.filter(task=task).get_column("seed").unique())
    scored = values.filter(task=task, query=query)
    found = scored.get_column("seed").to_list()
    if sorted(found) != all_seeds:
        other = next(seed for seed in all_seeds if found.count(seed) != 1)
        raise HarnessError(f"{task}: seed {other} and seed {all_seeds[0]} do not score the same queries "
                           f"(query {query!r} {found.count(other)} time(s) in seed {other})")
    for name in names:
        outside = dict(zip(found, scored.get_column(name).is_null()))
        other = next((seed for seed in all_seeds if outside[seed] != outside[all_seeds[0]]), None)
        if other is not None:
            raise HarnessError(f"{task}: seed {other} and seed {all_seeds[0]} do not score the same queries for "
                               f"{name} (query {query!r} is in the segment for one of them only)")


def aligned(values: pl.DataFrame, reference: pl.DataFrame, *, source: str, reference_source: str) -> pl.DataFrame:
    """`reference`'s rows (query_means of one task) in the order of the queries of `values` (the same, of the same
    task); HarnessError naming both sides unless they score the same queries."""
    mine, theirs = set(values.get_column("query")), set(reference.get_column("query"))
    if mine != theirs or len(mine) != values.height or len(theirs) != reference.height:
        raise HarnessError(
            f"{source} and {reference_source}: they score different queries ({values.height} vs {reference.height}; "
            f"only in the first: {sorted(mine - theirs)[:3]}, only in the second: {sorted(theirs - mine)[:3]})"
        )
    order = values.select("query").with_row_index("position")
    return order.join(reference, on="query", how="left").sort("position").drop("position")


def over_seeds(per_seed: pl.DataFrame, by: Sequence[str], *, mean: bool = True) -> pl.DataFrame:
    """`by`, then `seeds` (how many per-seed values), their `mean` (unless mean=False) and `sd`, the sample standard
    deviation (n - 1; null under two seeds), per group of `by` over the per-seed numbers in `value` (column `seed`;
    nulls skipped, a group with none left out)."""
    values = (per_seed.drop_nulls("value").sort("seed", maintain_order=True)
              .group_by(by, maintain_order=True).agg(pl.col("value")))
    seeds = pl.col("value").list.len()
    columns = [seeds.alias("seeds")]
    if mean:
        # Exact (statistics.mean), as tools/seed_table.py always had it: the mean is shown rounded, and per-seed means
        # over a few hundred queries often average to a decimal tie (0.2465) where a float sum's last bit picks the
        # digit shown (with list.mean, 5 of the official records' averages over seeds would show another digit). The
        # sd is a square root, off any tie: list.std shows what statistics.stdev does on every official and synthetic
        # record (tests/test_per_query.py).
        columns.append(pl.Series("mean", [statistics.mean(group) for group in values.get_column("value").to_list()],
                                 pl.Float64))
    columns.append(pl.when(seeds >= 2).then(pl.col("value").list.std(ddof=1)).alias("sd"))
    return values.select(*by, *columns)


# --- helpers -----------------------------------------------------------------------------------------------------


def _segment(name: str) -> pl.Expr:
    return pl.lit(Metric.parse(name).segment, SEGMENT).alias("segment")


def _per_metric(grouped: pl.DataFrame, keys: list[str], reduce: Callable[[np.ndarray], float | None],
                counted: pl.Expr) -> pl.DataFrame:
    """Long: `keys`, metric, segment, then `mean`, `reduce` (numpy: module docstring) of each group's values of the
    metric, in their order, and `n`, the expression `counted` of them (`values`)."""
    names = metric_names(grouped)
    if not names:
        return pl.DataFrame(schema={**{key: grouped.schema[key] for key in keys}, "metric": pl.String,
                                    "segment": SEGMENT, "mean": pl.Float64, "n": pl.UInt32})
    long = grouped.unpivot(on=names, index=keys, variable_name="metric", value_name="values")
    means = pl.Series("mean", [reduce(group.to_numpy()) for group in long.get_column("values")], pl.Float64)
    segments = {name: Metric.parse(name).segment for name in names}
    segment = pl.col("metric").replace_strict(segments, return_dtype=SEGMENT)
    return long.select(*keys, "metric", segment.alias("segment"), means, counted.cast(pl.UInt32).alias("n"))


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _nanmean(values: np.ndarray) -> float | None:
    """numpy's nanmean: the NaNs (queries outside the segment) count as zeros in the pairwise sum, not at all in n."""
    return float(np.nanmean(values)) if np.isfinite(values).any() else None
