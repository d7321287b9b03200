"""`python -m harness run SUBMISSION_DIR [--dataset NAME ...] [--seeds N ...] [--out DIR]`"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path("leaderboard") / "results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", type=Path, help="a submission folder holding config.toml")
    parser.add_argument(
        "--dataset", "-d", action="append", dest="datasets", metavar="NAME",
        help="run on this dataset instead of the config's list (repeatable; `name:key=value` allowed)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", metavar="N", help="seeds instead of the config's")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default: {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", type=Path, help="compiled datasets and work folders (default: $HARNESS_CACHE_DIR)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--site", type=Path,
        help="rebuild the static leaderboard from every record under --out into this folder "
        "(default: a 'site' folder beside --out)",
    )
    parser.add_argument("--no-site", action="store_true", help="do not rebuild the leaderboard site")


def run(args: argparse.Namespace) -> int:
    from harness.protocol.runner import Runner, is_writing_rank
    from harness.protocol.submission import load_submission

    submission = load_submission(args.submission)
    runner = Runner(submission, out_dir=args.out, cache_dir=args.cache_dir, progress=not args.no_progress)
    outcomes = runner.run(datasets=args.datasets, seeds=args.seeds)
    if not is_writing_rank():  # under the deepspeed launcher: rank 0 reports, writes and builds the site
        return 1 if any(outcome.failed for outcome in outcomes) else 0

    failed = 0
    print(f"\n{submission.display_name} ({submission.name}):")
    for outcome in outcomes:
        status = "ok" if not outcome.failed else f"{len(outcome.failed)} of {len(outcome.units)} unit(s) FAILED"
        print(f"  {outcome.dataset:<28} {status:<10} record: {outcome.folder / 'record.json'}")
        for unit in outcome.failed:
            failed += 1
            print(f"      seed {unit.seed}: {unit.error['type']}: {unit.error['message']}")
    print(f"\nRecords are under {args.out}; the tracebacks of failed units are in their record.json.")
    if not args.no_site:
        from harness.leaderboard import build_site

        site = args.site or args.out.parent / "site"
        report = build_site(args.out, site)
        for line in report.lines():
            print(f"  {line}")
        print(f"Leaderboard: {site / 'index.html'}  (rebuild: python -m harness leaderboard build --records {args.out} --out {site})")
    if failed:
        print("Run the same command again to retry failed units; finished units are reused.")
    return 1 if failed else 0
