"""`python -m harness COMMAND ...`: each command lives in its own module and is imported only when used,
so that `harness data list` never imports torch."""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import HarnessError

# command name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("harness.cli.data", "build, list and inspect compiled datasets"),
    "run": ("harness.cli.run", "train and evaluate a submission on its datasets"),
    "gate": ("harness.cli.gate", "fail when a submission got worse than its committed baseline"),
    "leaderboard": ("harness.cli.leaderboard", "build the static leaderboard site from result records, or publish it to a branch"),
    "experiment": ("harness.cli.experiment", "rerun the paper's analyses (Table 4, Figures 1-4) as experiments"),
    "verify": ("harness.cli.verify", "recompute every number of result records from their own files"),
    "submit": ("harness.cli.submit", "check result records against the official ones and pack them for a pull request"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130
