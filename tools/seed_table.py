"""Mean ± sd over seeds of each record's headline Recall@K, as the markdown table in docs/baselines.md.

    python -m harness run submissions/sasrec --seeds 0 1 2 3 4 --out /tmp/seeds      # for each submission
    python tools/seed_table.py /tmp/seeds [--compare /tmp/threads2]

Reads every `<dataset>/<submission>/record.json` under the folder. Values are recomputed from the record's
per-seed numbers (record.metrics[task][R@K(/segment)].per_seed), not taken from its mean. The sd is the
sample standard deviation over seeds (n - 1; 0 for one seed). With --compare, a second results folder of the
same submissions run another way (e.g. `threads = 2`, another machine) is matched by dataset, submission and
seed, and the largest absolute difference of R@K over the matched seeds is printed beside the spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SEGMENTS = ("", "/head", "/torso")


def load(folder: Path) -> dict[tuple[str, str], dict]:
    records = {}
    for path in sorted(folder.glob("*/*/record.json")):
        record = json.loads(path.read_text())
        records[(record["dataset"]["name"], record["submission"]["name"])] = record
    return records


def per_seed(record: dict, task: str, segment: str) -> dict[str, float]:
    k = record["dataset"]["headline_k"]
    return record["metrics"][task][f"R@{k}{segment}"]["per_seed"]


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--compare", type=Path, default=None, help="a second results folder, same submissions")
    args = ap.parse_args(argv)
    records = load(args.results)
    other = load(args.compare) if args.compare else {}
    head = "| dataset | submission | task | seeds | R@K all | head | torso |"
    if args.compare:
        head += " max abs diff of R@K vs --compare (seeds) |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for (dataset, name), record in sorted(records.items()):
        k = record["dataset"]["headline_k"]
        for task in sorted(record["metrics"]):
            seeds = sorted(per_seed(record, task, ""), key=int)
            cells = [fmt([per_seed(record, task, seg)[s] for s in seeds if s in per_seed(record, task, seg)])
                     for seg in SEGMENTS]
            row = f"| {dataset} | {record['submission']['name']} | {task} (R@{k}) | {len(seeds)} | " + " | ".join(cells) + " |"
            if args.compare:
                twin = other.get((dataset, name))
                if twin is None or task not in twin["metrics"]:
                    row += " not run |"
                else:
                    mine, theirs = per_seed(record, task, ""), per_seed(twin, task, "")
                    common = sorted(set(mine) & set(theirs), key=int)
                    diff = max((abs(mine[s] - theirs[s]) for s in common), default=float("nan"))
                    row += f" {diff:.3f} ({', '.join(common)}) |"
            print(row)


if __name__ == "__main__":
    main()
