"""`python -m harness verify PATH...`: recompute every number of result records from their own files.

PATH is a record folder, its record.json, or a folder searched for records (the runner's results folder). Exit
status 0 when every record verifies, 1 when one does not (or cannot be read), 2 for a PATH that holds no record.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError

RECORD_FILE = "record.json"  # harness.records.files.RECORD_FILE, without importing pyarrow to build the parser
PUBLISHED_DEFAULT = Path("leaderboard") / "official"  # harness.evaluation.published.PUBLISHED_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="record folders, record.json files or folders of records (searched recursively)")
    parser.add_argument("--root", type=Path, default=None,
                        help="where references' records are (default: beside each record, in the runner's layout, "
                             f"then the published results, {PUBLISHED_DEFAULT}, where they exist)")
    parser.add_argument("--all", action="store_true", help="list every mismatch, not only each record's first")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the records that fail")


def run(args: argparse.Namespace) -> int:
    # Imported here, as every command does: building the parser must not load pyarrow and scipy (harness.cli).
    from harness.evaluation.verify import verify_record_folder

    also = [PUBLISHED_DEFAULT] if args.root is None and PUBLISHED_DEFAULT.is_dir() else []
    folders = []
    for path in args.paths:
        found = _record_folders(path)
        if not found:
            raise HarnessError(f"{path}: no result record (no {RECORD_FILE}) there or below it")
        folders.extend(found)
    failed = 0
    for folder in folders:
        try:
            result = verify_record_folder(folder, root=args.root, also=also)
        except HarnessError as exc:
            failed += 1
            print(f"FAILED  {folder}: {exc}")
            continue
        if result.ok:
            if not args.quiet:
                unverified = f"; not checkable: {'; '.join(result.unverified)}" if result.unverified else ""
                print(f"ok      {folder} ({'; '.join(result.checked) or 'nothing to recompute'}{unverified})")
            continue
        failed += 1
        shown = result.mismatches if args.all else result.mismatches[:1]
        more = "" if args.all or len(result.mismatches) == 1 else f" (and {len(result.mismatches) - 1} more: --all)"
        print(f"FAILED  {folder}: {shown[0]}{more}")
        for mismatch in shown[1:]:
            print(f"        {mismatch}")
    print(f"verify: {len(folders) - failed} of {len(folders)} record(s) verified" + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0


def _record_folders(path: Path) -> list[Path]:
    if path.is_file() and path.name == RECORD_FILE:
        return [path.parent]
    if (path / RECORD_FILE).is_file():
        return [path]
    from harness.leaderboard.collect import find_record_folders

    return find_record_folders(path) if path.is_dir() else []
