"""`python -m harness leaderboard build [--records DIR] [--out DIR] [--strict]`"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_RECORDS = Path("leaderboard") / "results"
DEFAULT_SITE = Path("leaderboard") / "site"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="validate every record and write the static site",
                               description="Validate every result record and experiment summary (experiment.json) "
                                           "and write the static leaderboard site.")
    build.add_argument("--records", type=Path, default=DEFAULT_RECORDS,
                       help=f"folder of result records, searched recursively (default: {DEFAULT_RECORDS})")
    build.add_argument("--out", type=Path, default=DEFAULT_SITE,
                       help=f"site folder, replaced when the build is complete (default: {DEFAULT_SITE})")
    build.add_argument("--strict", action="store_true",
                       help="exit with status 1 when any record or experiment summary was skipped "
                            "(the site is written all the same)")


def run(args: argparse.Namespace) -> int:
    from harness.leaderboard import build_site

    report = build_site(args.records, args.out)
    for line in report.lines():
        print(line)
    return 1 if args.strict and (report.skipped or report.skipped_experiments) else 0
