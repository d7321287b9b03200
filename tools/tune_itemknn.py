"""Item-kNN's parameter sweep on a dataset's validation split: `python tools/tune_itemknn.py ml-small [first|second]`.

Each configuration is fitted on the training view and ranks `rec_valid` (predict item t-1 from 1..t-2); the table
prints validation Recall@K (K: the dataset's headline cutoff), best first. The test split is never touched. The
grids are the two recorded in docs/baselines.md ("Item-kNN"); the shipped defaults are the second grid's best.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from harness.baselines.itemknn import ItemKNNAdapter
from harness.data.store import CompiledDataset
from harness.metrics.measures import Metric
from harness.metrics.scoring import recall_at_k

GRIDS = {
    "first": dict(history=[1, 2, 3, 5, 10], decay=[1.0, 0.7], neighbours=[50, 100, 0], similarity=["cosine", "count"]),
    "second": dict(history=[5, 10, 20, 50], decay=[0.5, 0.7, 0.85], neighbours=[0], similarity=["cosine"]),
}


def validation_recall(train, params: dict, k: int) -> float:
    knn = ItemKNNAdapter(params=params, seed=0, workdir=Path("."), tasks=frozenset({"rec"}), submission_dir=Path("."))
    knn.fit(train)
    valid = train.rec_valid
    ranked = knn.retrieve("rec", valid.without_targets(), k)
    rankings = np.full((len(ranked), k), -1, np.int64)
    for i, row in enumerate(ranked):
        rankings[i, : len(row)] = row
    offsets = np.arange(len(valid) + 1, dtype=np.int64)
    no_head = np.zeros(len(train.catalogue), bool)  # all targets: the segment does not matter for choosing
    return float(recall_at_k(rankings, offsets, valid.target.astype(np.int64), no_head, [k])[Metric("R", k)].mean())


def main(dataset: str, grid: str = "second") -> None:
    with CompiledDataset.open(dataset) as ds:
        train, k = ds.train_view(), ds.headline_k
    results = []
    for values in itertools.product(*GRIDS[grid].values()):
        params = dict(zip(GRIDS[grid], values))
        results.append((validation_recall(train, params, k), params))
    for recall, params in sorted(results, key=lambda row: -row[0]):
        print(f"R@{k} {recall:.4f}  {params}")


if __name__ == "__main__":
    main(*sys.argv[1:])
