"""`python -m harness submit RECORD_DIR... [--official DIR] [--replace] [--dry-run]`: add results to the official ones.

Each RECORD_DIR is a record folder the runner wrote (`<out>/<dataset>/<submission>`) or its record.json. Each is
judged by its files alone (nothing of the submission's code is run): it must verify (every number recomputed from
its own files), have every unit finished, use this protocol version and a dataset the official results hold, on
the same fingerprint, and its significance tests' references must be official (or submitted with it). Then its
published files are copied into the official folder (harness.leaderboard.official), verified again there, and the
command says what to `git add` for the pull request. Records submitted together are packed references first.

Exit status 0 when every record was packed, 1 when one was refused (each named with its reason; the others are
still packed), 2 for a RECORD_DIR that holds no record.json.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from harness.errors import HarnessError

RECORD_FILE = "record.json"  # harness.records.files.RECORD_FILE, without importing pyarrow to build the parser
OFFICIAL_DIR = Path("leaderboard") / "official"  # harness.leaderboard.official.OFFICIAL_DIR, likewise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", nargs="+", type=Path, metavar="RECORD_DIR",
                        help="record folders (<results>/<dataset>/<submission>) or their record.json files")
    parser.add_argument("--official", type=Path, default=OFFICIAL_DIR, metavar="DIR",
                        help=f"the official results folder (default: {OFFICIAL_DIR})")
    parser.add_argument("--replace", action="store_true",
                        help="replace an official record of the same submission, dataset and decoding")
    parser.add_argument("--dry-run", action="store_true",
                        help="check and verify everything, write nothing")


def run(args: argparse.Namespace) -> int:
    # Imported here, as every command does: building the parser must not load pyarrow and scipy (harness.cli).
    from harness.leaderboard.official import check_submittable, pack_record
    from harness.records.files import read_record_folder

    folders = [_record_folder(path) for path in args.records]
    refused: list[tuple[Path, str]] = []
    records = {}
    for folder in dict.fromkeys(folders):  # a folder named twice is submitted once
        try:
            records[folder] = read_record_folder(folder)
        except HarnessError as exc:
            refused.append((folder, str(exc)))
    packed: list[Path] = []
    accepted = []
    seen: dict[tuple[str, str, str], Path] = {}
    for folder in _references_first(records):
        record = records[folder]
        key = (record.dataset.name, record.submission.name, record.params.decoding)
        if key in seen:
            refused.append((folder, f"the same submission, dataset and decoding as {seen[key]}: submit one of them"))
            continue
        seen[key] = folder
        try:  # references come first: those packed by now count as official (a dry run packs nothing)
            check_submittable(folder, args.official, batch=accepted)
            destination = pack_record(folder, args.official, replace=args.replace, dry_run=args.dry_run)
        except HarnessError as exc:
            refused.append((folder, str(exc)))
            continue
        packed.append(destination)
        accepted.append(record)
        verb = "would pack" if args.dry_run else "packed"
        print(f"{verb:<10} {folder} -> {destination} ({record.submission.display_name} on {record.dataset.name}, "
              f"seed(s) {list(record.ok_seeds)}; verified)")
    for folder, reason in refused:
        reason = reason.removeprefix(f"{folder}: ")  # most reasons name the folder already
        print(f"REFUSED    {folder}: {reason}")
    total = len(packed) + len(refused)
    summary = f"submit: {len(packed)} of {total} record(s) {'would be packed' if args.dry_run else 'packed'}"
    summary += f", {len(refused)} REFUSED" if refused else ""
    summary += " (dry run: nothing written)" if args.dry_run else ""
    print(summary)
    if packed:
        paths = " ".join(shlex.quote(str(path)) for path in packed)
        if args.dry_run:
            print(f"next: run it again without --dry-run, then `git add {paths}` and open a pull request")
        else:
            print(f"next: git add {paths} and open a pull request (CI verifies every official record again)")
    return 1 if refused else 0


def _record_folder(path: Path) -> Path:
    if path.is_file() and path.name == RECORD_FILE:
        return path.parent
    if (path / RECORD_FILE).is_file():
        return path
    raise HarnessError(f"{path}: no result record ({RECORD_FILE}) there; give a record folder the runner wrote, "
                       "<results>/<dataset>/<submission>")


def _references_first(records: dict) -> list[Path]:
    """The folders in the order given, except that a record another one compares with comes before it."""
    order: list[Path] = []
    by_key = {(r.dataset.name, r.submission.name, r.params.decoding): folder for folder, r in records.items()}

    def visit(folder: Path, path: tuple[Path, ...]) -> None:
        if folder in order or folder in path:  # done, or a cycle (each is refused or packed on its own)
            return
        record = records[folder]
        for rows in record.significance.values():
            for row in rows:
                reference = by_key.get((record.dataset.name, row.reference, record.params.decoding))
                if reference is not None:
                    visit(reference, path + (folder,))
        order.append(folder)

    for folder in records:
        visit(folder, ())
    return order
