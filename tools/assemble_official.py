"""Assemble the official results (leaderboard/official) from results folders of the shipped submissions.

    python tools/assemble_official.py RESULTS_DIR... [--official leaderboard/official] [--dry-run]

Every record folder under the RESULTS_DIRs is taken when its submission is one of `submissions/` and its
config_hash is that submission's config as it is now (a record of an older config would never stand in for a
reference: harness.evaluation.published). Records are packed with harness.leaderboard.official.pack_record
(published files only, verified again after copying), references before the records compared with them, so each
comparison is recomputed against the official reference. Where several folders hold the same submission on the
same dataset, the one with more finished seeds wins, then the later one. `python -m harness submit` is the path
for a single outside result; this tool is for refreshing the references themselves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.errors import HarnessError  # noqa: E402
from harness.leaderboard.collect import find_record_folders  # noqa: E402
from harness.leaderboard.official import OFFICIAL_DIR, pack_record  # noqa: E402
from harness.protocol.submission import load_submission  # noqa: E402
from harness.records.record import ResultRecord  # noqa: E402


def shipped_config_hashes(submissions: Path) -> dict[str, str]:
    return {p.name: load_submission(p).config_hash for p in sorted(submissions.iterdir()) if (p / "config.toml").is_file()}


def choose(sources: list[Path], hashes: dict[str, str]) -> tuple[dict[tuple, tuple[Path, ResultRecord]], list[str]]:
    chosen: dict[tuple, tuple[Path, ResultRecord]] = {}
    skipped = []
    for source in sources:
        for folder in find_record_folders(source):
            record = ResultRecord.read(folder / "record.json")
            name = record.submission.name
            if name not in hashes:
                skipped.append(f"{folder}: {name!r} is not a shipped submission")
                continue
            if record.submission.config_hash != hashes[name]:
                skipped.append(f"{folder}: made with another config of {name} than submissions/{name}")
                continue
            key = (record.dataset.name, name, record.params.decoding)
            if key not in chosen or _rank(record) > _rank(chosen[key][1]):
                chosen[key] = (folder, record)
    return chosen, skipped


def _rank(record: ResultRecord) -> tuple:
    return (len(record.ok_seeds), record.timing.finished_at)  # ISO 8601 UTC: compares as text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--official", type=Path, default=ROOT / OFFICIAL_DIR)
    parser.add_argument("--submissions", type=Path, default=ROOT / "submissions")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    chosen, skipped = choose(args.sources, shipped_config_hashes(args.submissions))
    for line in skipped:
        print(f"skipped  {line}")
    # References first: a record's comparison is verified against the official reference once packed.
    order = sorted(chosen.items(), key=lambda kv: (bool(kv[1][1].submission.references), kv[0]))
    failed = 0
    for (dataset, name, _), (folder, record) in order:
        try:
            dest = pack_record(folder, args.official, replace=True, dry_run=args.dry_run)
        except HarnessError as exc:
            failed += 1
            print(f"REFUSED  {folder}: {exc}")
            continue
        print(f"{'would pack' if args.dry_run else 'packed'}  {dataset:<10} {name:<12} seeds {sorted(record.ok_seeds)} -> {dest}")
    if not args.dry_run and args.official.is_dir():
        size = sum(p.stat().st_size for p in args.official.rglob("*") if p.is_file())
        files = sum(1 for p in args.official.rglob("*") if p.is_file())
        print(f"{args.official}: {files} files, {size / 2**20:.1f} MiB")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
