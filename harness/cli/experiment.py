"""`python -m harness experiment list|run NAME [...]`: the paper's analyses as resumable experiments."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from harness.protocol.decodings import DECODINGS, DEFAULT as DEFAULT_DECODING

DEFAULT_ROOT = Path("experiments")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the experiments and what of the paper each reproduces")
    run = sub.add_parser("run", help="run (or resume) an experiment and write its records, table and figures")
    run.add_argument("name", help="an experiment from `experiment list`")
    run.add_argument("--out", type=Path, help=f"experiment folder (default: {DEFAULT_ROOT}/NAME)")
    run.add_argument("--submissions", type=Path, default=Path("submissions"),
                     help="folder holding the joint submission and its references (default: submissions)")
    run.add_argument("--joint", default="joint_t5", help="the joint submission's folder name (default: joint_t5)")
    run.add_argument("--seeds", type=int, nargs="+", metavar="N", help="seeds instead of each submission's own")
    run.add_argument("--levels", type=float, nargs="+", metavar="X", help="sweeps: levels of the sweep parameter in [0, 1]")
    run.add_argument("--samples", type=float, nargs="+", metavar="S", help="sweeps: target-task samples (default 1 0.65)")
    run.add_argument("--caps", type=int, nargs="+", metavar="N", help="cap: caps per item (default 5 10 50 500)")
    run.add_argument("--tasks", nargs="+", choices=("rec", "search"), help="cap: target tasks (default both)")
    run.add_argument("--dataset", "-d", help="cap, projection: the dataset spec (defaults: sim1, sim2)")
    run.add_argument("--datasets", nargs="+", metavar="SPEC", help="ids: dataset specs (default sim1 sim2 sim3)")
    run.add_argument("--sources", nargs="+", metavar="SOURCE",
                     help="ids: item-vector sources of the semantic IDs (default: content collaborative concat multitask)")
    run.add_argument("--codes", type=int, nargs="+", metavar="C",
                     help="ids: codes per level, one scheme per value (default: 8; ml-small 32 over 3 levels)")
    run.add_argument("--no-atomic", action="store_true", help="ids: leave out the atomic-ID rows")
    run.add_argument("--method", choices=("auto", "tsne", "pca"), default="auto", help="projection: 2-D method")
    run.add_argument("--cache-dir", type=Path, help="compiled datasets and work folders (default: $HARNESS_CACHE_DIR)")
    run.add_argument("--progress", action="store_true", help="progress bars while retrieving")
    run.add_argument("--no-site", action="store_true", help="do not build the experiment's leaderboard site")
    run.add_argument("--dataset-param", action="append", default=[], metavar="KEY=VALUE",
                     help="add a parameter to every dataset the experiment builds, e.g. test_queries=10 for SIM3's "
                     "larger test set (repeatable; docs/experiments.md)")
    run.add_argument("--decoding", choices=list(DECODINGS), default=DEFAULT_DECODING,
                     help="'diverse-beam' (the paper's, default) or 'distinct' (K distinct items); default folder "
                     f"{DEFAULT_ROOT}/NAME-distinct for the latter, whose runs reuse the first's training")


def run(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.experiments import EXPERIMENTS

    if args.action == "list":
        for exp in EXPERIMENTS.values():
            print(f"{exp.name:<11} {exp.paper:<26} {exp.summary}")
        print(f"\nrun one: python -m harness experiment run NAME  (folder: {DEFAULT_ROOT}/NAME; resumable)")
        return 0
    if args.name not in EXPERIMENTS:
        raise HarnessError(f"experiment {args.name!r} is unknown; known: {', '.join(EXPERIMENTS)}")
    from harness.experiments.context import Context

    suffix = "" if args.decoding == DEFAULT_DECODING else f"-{args.decoding}"
    out = args.out or DEFAULT_ROOT / f"{args.name}{suffix}"
    dataset_params = {}
    for item in args.dataset_param:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise HarnessError(f"--dataset-param {item!r}: give KEY=VALUE, e.g. test_queries=10")
        dataset_params[key.strip()] = value.strip()
    ctx = Context(out=out, submissions_dir=args.submissions, joint=args.joint, seeds=args.seeds,
                  cache_dir=args.cache_dir, progress=args.progress, decoding=args.decoding,
                  dataset_params=dataset_params)
    argv = sys.argv[1:]
    command = "python -m harness " + " ".join(shlex.quote(a) for a in argv) if argv[:2] == ["experiment", "run"] \
        else f"python -m harness experiment run {args.name}"
    summary = EXPERIMENTS[args.name].run(ctx, args, command)
    path = summary.write(out)
    print(summary.markdown())
    print(f"Summary: {path}\nTable:   {out / 'table.md'}\nRecords: {ctx.results}")
    for figure in summary.figures:
        print(f"Figure:  {out / figure['file']}")
    if not args.no_site:
        from harness.leaderboard import build_site

        site = out / "site"
        report = build_site(out, site)
        for line in report.lines():
            print(f"  {line}")
        print(f"Leaderboard: {site / 'index.html'}")
    return 0
