"""`python -m harness leaderboard build [--records DIR ...] [--out DIR] [--strict]`
`python -m harness leaderboard publish [--records DIR ...] [--repo DIR] [--branch NAME] [--push [--remote NAME]]
                                      [--message TEXT] [--strict]`"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OFFICIAL_RECORDS = Path("leaderboard") / "official"  # the published reference results, committed
USER_RECORDS = Path("leaderboard") / "results"  # the user's own runs (git-ignored)
DEFAULT_SITE = Path("leaderboard") / "site"
DEFAULT_BRANCH, DEFAULT_REMOTE = "gh-pages", "origin"  # as harness.leaderboard.ghpages (not imported here: every
# command's parser is built on each call, and that module pulls in the site builder and ghp-import)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="validate every record and write the static site",
                               description="Validate every result record and experiment summary (experiment.json) "
                                           "and write the static leaderboard site.")
    build.add_argument("--records", type=Path, action="append",
                       help="folder of result records, searched recursively; give it several times to read several "
                            f"folders together (default: {OFFICIAL_RECORDS}, plus {USER_RECORDS} when it exists)")
    build.add_argument("--out", type=Path, default=DEFAULT_SITE,
                       help=f"site folder, replaced when the build is complete (default: {DEFAULT_SITE})")
    build.add_argument("--strict", action="store_true",
                       help="exit with status 1 when any record or experiment summary was skipped "
                            "(the site is written all the same)")

    publish = actions.add_parser(
        "publish", help="build the site from the official results and commit it to a branch for static hosting",
        description="Build the leaderboard site from the official reference results into a temporary folder and "
                    "commit it, with a .nojekyll file, as the content of a git branch (ghp-import); with --push, "
                    "push that branch.")
    publish.add_argument("--records", type=Path, action="append",
                         help="folder of result records, searched recursively; give it several times to read several "
                              f"folders together (default: {OFFICIAL_RECORDS} in --repo)")
    publish.add_argument("--repo", type=Path, default=Path("."),
                         help="the git working tree to commit in (default: the current folder)")
    publish.add_argument("--branch", default=DEFAULT_BRANCH, help=f"branch to commit the site to (default: {DEFAULT_BRANCH})")
    publish.add_argument("--push", action="store_true", help="push the branch to --remote after committing")
    publish.add_argument("--remote", default=DEFAULT_REMOTE, help=f"remote to push to (default: {DEFAULT_REMOTE})")
    publish.add_argument("--message", help="commit message (default: the number of records and the repository's "
                                           "commit, `git rev-parse HEAD`)")
    publish.add_argument("--strict", action="store_true",
                         help="publish nothing and exit with status 1 when any record or experiment summary was skipped")


def run(args: argparse.Namespace) -> int:
    if args.action == "publish":
        return _publish(args)
    from harness.leaderboard import build_site

    report = build_site(records_folders(args.records, [OFFICIAL_RECORDS, USER_RECORDS]), args.out)
    for line in report.lines():
        print(line)
    return 1 if args.strict and (report.skipped or report.skipped_experiments) else 0


def _publish(args: argparse.Namespace) -> int:
    from harness.leaderboard.ghpages import NotPublished, publish_site

    records = records_folders(args.records, [args.repo / OFFICIAL_RECORDS])
    try:
        published = publish_site(records, args.repo, branch=args.branch, remote=args.remote, push=args.push,
                                 message=args.message, strict=args.strict)
    except NotPublished as exc:
        for line in exc.report.lines()[:-1]:  # skipped records and notes; not the summary naming the temporary site
            print(line)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in [*published.report.lines()[:-1], *published.lines()]:
        print(line)
    return 0


def records_folders(given: list[Path] | None, defaults: list[Path]) -> list[Path]:
    """The records folders to read: those named (each must exist), else the defaults that exist."""
    from harness.errors import HarnessError

    if given:
        for folder in given:
            if not folder.is_dir():
                raise HarnessError(f"{folder}: no such records folder (--records)")
        return given
    found = [folder for folder in defaults if folder.is_dir()]
    if not found:
        raise HarnessError(f"no records folder: {' and '.join(map(str, defaults))} do not exist "
                           "(run a submission first: `python -m harness run ...`, or name one with --records)"
                           if len(defaults) > 1 else
                           f"{defaults[0]}: no such records folder (name one with --records)")
    return found
