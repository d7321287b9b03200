"""Mean ± sd over seeds of each record's headline Recall@K, as the markdown table in docs/baselines.md.

    python -m harness run submissions/sasrec --seeds 0 1 2 3 4 --out /tmp/seeds      # for each submission
    python tools/seed_table.py /tmp/seeds [--compare /tmp/threads2]

Reads every `<dataset>/<submission>/record.json` under the folder. Values are recomputed from the record's
per-seed numbers (record.metrics[task][R@K(/segment)].per_seed), not taken from its mean, with the leaderboard's
own aggregation (harness.records.per_query.over_seeds). The sd is the sample standard deviation over seeds (n - 1;
0 for one seed). With --compare, a second results folder of the same submissions run another way (e.g.
`threads = 2`, another machine) is matched by dataset, submission and seed, and the largest absolute difference of
R@K over the matched seeds is printed beside the spread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

from harness.records.per_query import over_seeds

SEGMENTS = ("all", "head", "torso")
ROW = ["dataset", "submission", "task"]  # one table row: a record's task
_SCHEMA = {"dataset": pl.String, "submission": pl.String, "task": pl.String, "k": pl.Int64, "segment": pl.String,
           "seed": pl.Int64, "value": pl.Float64}


def load(folder: Path) -> pl.DataFrame:
    """The per-seed headline R@K (all / head / torso) of every record under `folder`: one row per (dataset,
    submission, task, segment, seed); of two records of one submission on one dataset, the later path's."""
    records = {}
    for path in sorted(folder.glob("*/*/record.json")):
        record = json.loads(path.read_text())
        records[(record["dataset"]["name"], record["submission"]["name"])] = record
    rows = []
    for (dataset, name), record in records.items():
        k = record["dataset"]["headline_k"]
        for task, block in record["metrics"].items():
            for segment in SEGMENTS:
                per_seed = block[f"R@{k}" if segment == "all" else f"R@{k}/{segment}"]["per_seed"]
                rows.extend((dataset, name, task, k, segment, int(seed), value) for seed, value in per_seed.items())
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row")


def largest_differences(mine: pl.DataFrame, theirs: pl.DataFrame) -> dict[tuple, str]:
    """{row: " 0.003 (0, 1) |"}: the largest absolute difference of R@K over the seeds both folders ran."""
    ran = {tuple(key) for key in theirs.select(ROW).unique().iter_rows()}
    matched = (mine.filter(pl.col("segment") == "all")
               .join(theirs.filter(pl.col("segment") == "all"), on=[*ROW, "seed"], how="left", suffix="_other")
               .filter(pl.col("value_other").is_not_null())
               .sort("seed")
               .group_by(ROW, maintain_order=True)
               .agg(diff=(pl.col("value") - pl.col("value_other")).abs().max(), seeds=pl.col("seed").cast(pl.String)))
    cells = {key: " not run |" if key not in ran else " nan () |"
             for key in mine.select(ROW).unique().iter_rows()}
    for *key, diff, seeds in matched.iter_rows():
        cells[tuple(key)] = f" {diff:.3f} ({', '.join(seeds)}) |"
    return cells


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--compare", type=Path, default=None, help="a second results folder, same submissions")
    args = ap.parse_args(argv)
    per_seed = load(args.results)
    spread = {(*key, segment): f"{mean:.3f} ± {sd or 0.0:.3f}"
              for *key, segment, _, mean, sd in over_seeds(per_seed, [*ROW, "segment"]).iter_rows()}
    rows = (per_seed.filter(pl.col("segment") == "all").group_by(*ROW, "k").agg(seeds=pl.len()).sort(ROW)
            .iter_rows())
    compared = largest_differences(per_seed, load(args.compare)) if args.compare else {}
    head = "| dataset | submission | task | seeds | R@K all | head | torso |"
    if args.compare:
        head += " max abs diff of R@K vs --compare (seeds) |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for dataset, name, task, k, seeds in rows:
        cells = [spread.get((dataset, name, task, segment), "n/a") for segment in SEGMENTS]
        row = f"| {dataset} | {name} | {task} (R@{k}) | {seeds} | " + " | ".join(cells) + " |"
        print(row + compared.get((dataset, name, task), ""))


if __name__ == "__main__":
    main()
