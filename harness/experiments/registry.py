"""The experiments `python -m harness experiment run NAME` knows, each a function of (Context, options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from harness.experiments import cap, ids, projection
from harness.experiments.cap import DEFAULT_CAPS, run_cap
from harness.experiments.projection import run_projection
from harness.experiments.sweeps import DEFAULT_SAMPLES, SWEEPS, run_sweep


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str  # one line for `experiment list`
    paper: str
    run: Callable  # (ctx, args, command) -> Summary


def _sweep(name: str):
    def run(ctx, args, command):
        return run_sweep(SWEEPS[name], ctx, levels=args.levels, samples=args.samples or DEFAULT_SAMPLES,
                         command=command)

    return run


def _cap(ctx, args, command):
    return run_cap(ctx, dataset=args.dataset or cap.DEFAULT_DATASET, caps=args.caps or DEFAULT_CAPS,
                   tasks=args.tasks or ("rec", "search"), command=command)


def _ids(ctx, args, command):
    datasets = args.datasets or ([args.dataset] if args.dataset else list(ids.DEFAULT_DATASETS))
    return ids.run_ids(ctx, datasets=datasets, sources=args.sources or ids.DEFAULT_SOURCES, codes=args.codes or (),
                       atomic=not args.no_atomic, command=command)


def _projection(ctx, args, command):
    return run_projection(ctx, dataset=args.dataset or projection.DEFAULT_DATASET, method=args.method, command=command)


EXPERIMENTS: dict[str, Experiment] = {
    "sim1": Experiment("sim1", "SIM1 over its shuffle levels, R@10 against KL(S||R), full and 65% sample",
                       "Figure 2 (H1)", _sweep("sim1")),
    "sim2": Experiment("sim2", "SIM2 over % of query match, Gen_R+S vs Gen_R on recommendation, full and 65% sample",
                       "Table 4 left (H2, S->R)", _sweep("sim2")),
    "sim3": Experiment("sim3", "SIM3 over % of pairs in qrels, Gen_R+S vs Gen_S on search, full and 65% sample",
                       "Table 4 right (H2, R->S)", _sweep("sim3")),
    "cap": Experiment("cap", "cap on training instances per item from the added task (default caps 5 10 50 500, sim1)",
                      "Figure 4 (H1)", _cap),
    "ids": Experiment("ids", "joint vs task-specific for atomic and semantic item IDs (RQ-k-means over content, "
                      "collaborative, concat, multitask vectors), default sim1-3", "§8; Penha et al. RecSys'25", _ids),
    "projection": Experiment("projection", "item ID embeddings in 2-D by popularity and cluster (default sim2)",
                             "Figures 1 and 3", _projection),
}
