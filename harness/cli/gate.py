"""`python -m harness gate SUBMISSION_DIR ... --baseline RECORD_OR_DIR [--profile quick] [--update]`

Runs each submission afresh on the profile's datasets (or reads its records with --records), compares every
record with the committed baseline of the same dataset fingerprint and protocol version, and exits 1 when
a metric got worse: significantly (paired t-test over queries, Holm across the table) or by more than
--tolerance. --update writes the new records as the baselines instead. See docs/gate.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.gate.profiles import DEFAULT_PROFILE, METRIC_SETS, PROFILES

    parser.add_argument("submissions", type=Path, nargs="+", metavar="SUBMISSION_DIR", help="submission folder(s)")
    parser.add_argument(
        "--baseline", type=Path, required=True, metavar="RECORD_OR_DIR",
        help="a folder of baseline records (<dataset>/<submission>/record.json), or one record (its folder or record.json)",
    )
    profiles = "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(PROFILES),
                        help=f"datasets and seeds to gate on (default {DEFAULT_PROFILE}). {profiles}")
    parser.add_argument("--dataset", "-d", action="append", dest="datasets", metavar="NAME",
                        help="only these of the profile's datasets (repeatable)")
    parser.add_argument("--alpha", type=float, default=0.05, help="level of the paired t-tests after Holm (default 0.05)")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="absolute drop of a metric that fails even when not significant (default 0.01)")
    parser.add_argument("--query-slack", type=int, default=1, metavar="N",
                        help="a difference that the N most-changed queries account for alone is not beyond the "
                             "tolerance (machine float noise moves a query or two of a trained model; default 1; "
                             "0: the plain tolerance)")
    parser.add_argument("--metrics", choices=METRIC_SETS, default="headline",
                        help="headline: R@K all/head/torso at the dataset's headline K (default); all: every cutoff")
    parser.add_argument("--update", action="store_true",
                        help="write the new records as the baselines (after showing how they compare with the old ones)")
    parser.add_argument("--records", type=Path, metavar="DIR",
                        help="judge the records `python -m harness run --out DIR` wrote instead of running")
    parser.add_argument("--out", type=Path, metavar="DIR", help="keep the new records here (default: a temporary folder)")
    parser.add_argument("--cache-dir", type=Path, help="compiled datasets (default: $HARNESS_CACHE_DIR)")
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the comparison as JSON")
    parser.add_argument("--show-all", action="store_true", help="print every comparison, not only the changed ones")
    parser.add_argument("--progress", action="store_true", help="show progress bars while running")


def run(args: argparse.Namespace) -> int:
    from harness.gate.profiles import get_profile
    from harness.protocol.submission import load_submission

    if not 0.0 < args.alpha < 1.0:
        raise HarnessError(f"--alpha {args.alpha!r} must lie strictly between 0 and 1")
    if args.records and args.out:
        raise HarnessError("--records reads existing records and runs nothing; --out has no use with it")
    profile = get_profile(args.profile)
    submissions = [load_submission(folder) for folder in args.submissions]
    plan = _plan(submissions, profile, args)
    hint = _update_hint(args)

    old = {} if args.update else {key: _baseline(args.baseline, *key, hint) for key in plan}
    if not args.records:
        _check_fingerprints_before_running(old, args.cache_dir, hint)
    with tempfile.TemporaryDirectory(prefix="harness-gate-") as tmp:
        new = _new_records(submissions, plan, profile, args, Path(args.out or tmp))
        if args.update:
            return _update(new, args, hint)
        return _judge(new, old, args, hint)


# ---- what to run ---------------------------------------------------------------------------------------
def _plan(submissions, profile, args) -> dict[tuple[str, str], None]:
    """{(submission name, dataset): None} in order: the profile's datasets each submission declares."""
    from harness.data.spec import DatasetSpec
    from harness.gate.baseline import open_record_folder, single_record
    from harness.gate.profiles import profile_datasets

    names = [sub.name for sub in submissions]
    if len(set(names)) != len(names):
        raise HarnessError(f"submission names repeat: {names}")
    only = {str(DatasetSpec.parse(d)) for d in args.datasets or []}
    single = single_record(args.baseline)
    plan: dict[tuple[str, str], None] = {}
    if single is not None:  # one baseline record: gate exactly its (submission, dataset)
        base = open_record_folder(single)
        if names != [base.submission]:
            raise HarnessError(f"--baseline {args.baseline} is a record of {base.submission!r}; gate that submission alone")
        return {(base.submission, base.dataset): None}
    for sub in submissions:
        datasets = profile_datasets(profile, sub.datasets, sub.name)
        if only:
            unknown = only - set(profile.datasets)
            if unknown:
                raise HarnessError(f"--dataset {sorted(unknown)}: not in profile {profile.name!r} ({', '.join(profile.datasets)})")
            datasets = [d for d in datasets if d in only]
        plan.update({(sub.name, d): None for d in datasets})
    if not plan:
        raise HarnessError(f"nothing to gate: none of the submissions declares {sorted(only)}")
    return plan


def _update_hint(args) -> str:
    parts = ["python", "-m", "harness", "gate", *map(str, args.submissions), "--baseline", str(args.baseline)]
    if args.profile != "quick":
        parts += ["--profile", args.profile]
    return shlex.join(parts + ["--update"])


def _baseline(baseline: Path, submission: str, dataset: str, hint: str):
    from harness.gate.baseline import open_baseline

    return open_baseline(baseline, dataset, submission, update_hint=hint)


def _check_fingerprints_before_running(old: dict, cache_dir, hint: str) -> None:
    """A baseline on another fingerprint is an error whatever the run gives: say so before minutes of training."""
    from harness.gate.execute import compiled_fingerprint

    for (submission, dataset), base in old.items():
        fingerprint = compiled_fingerprint(dataset, cache_dir)
        if fingerprint is not None and fingerprint != base.fingerprint:
            raise HarnessError(
                f"{base.folder / 'record.json'}: the baseline was measured on {dataset} with fingerprint "
                f"{base.fingerprint}, the compiled {dataset} has {fingerprint}: the numbers cannot be compared. If the "
                f"change is intended, refresh the baseline with `{hint}` and commit it"
            )


def _new_records(submissions, plan, profile, args, out_dir: Path) -> dict:
    from harness.gate.execute import read_records, run_records

    new = {}
    for sub in submissions:
        datasets = [d for (name, d) in plan if name == sub.name]
        if not datasets:
            continue
        if args.records:
            records = read_records(args.records, sub, datasets)
        else:
            print(f"gate: running {sub.name} on {', '.join(datasets)} (seeds {list(profile.seeds)})", file=sys.stderr)
            records = run_records(sub, datasets, list(profile.seeds), out_dir=out_dir, cache_dir=args.cache_dir,
                                  progress=args.progress)
        new.update({(sub.name, rec.dataset): rec for rec in records})
    return new


# ---- judging -------------------------------------------------------------------------------------------
def _judge(new: dict, old: dict, args, hint: str) -> int:
    from harness.gate.baseline import check_comparable
    from harness.gate.compare import run_gate
    from harness.gate.report import format_report

    notes = []
    for key, now in new.items():
        notes += check_comparable(now, old[key], update_hint=hint)
    report = run_gate([(new[key], old[key]) for key in new], alpha=args.alpha, tolerance=args.tolerance,
                      metrics=args.metrics, query_slack=args.query_slack)
    report.notes.extend(notes)
    print(format_report(report, show_all=args.show_all))
    _write_report(args.report, report)
    return 0 if report.passed else 1


def _update(new: dict, args, hint: str) -> int:
    """Show the change against any comparable old baseline, then write every new record as the baseline."""
    from harness.gate.baseline import baseline_folder, check_comparable, open_record_folder, write_baseline
    from harness.gate.compare import run_gate
    from harness.gate.report import format_report

    failed = [f"{now.submission} on {now.dataset}: seeds {now.failed_seeds}" for now in new.values() if now.failed_seeds]
    if failed:
        raise HarnessError("no baseline written: units failed (" + "; ".join(failed) + ")")
    pairs, notes = [], []
    for (submission, dataset), now in new.items():
        dest = baseline_folder(args.baseline, dataset, submission)
        if not (dest / "record.json").is_file():
            notes.append(f"{submission} on {dataset}: new baseline")
            continue
        try:
            old = open_record_folder(dest)
            notes += check_comparable(now, old, update_hint=hint)
            pairs.append((now, old))
        except HarnessError as exc:
            notes.append(f"{submission} on {dataset}: replacing a baseline that cannot be compared ({exc})")
    report = run_gate(pairs, alpha=args.alpha, tolerance=args.tolerance, metrics=args.metrics,
                      query_slack=args.query_slack)
    report.notes.extend(notes)
    print(format_report(report, show_all=args.show_all))
    _write_report(args.report, report)
    for (submission, dataset), now in new.items():
        dest = write_baseline(now, baseline_folder(args.baseline, dataset, submission))
        print(f"baseline written: {dest / 'record.json'}")
    print("commit the baseline folder(s) to make them the reference for the next gate run")
    return 0


def _write_report(path: Path | None, report) -> None:
    if path is not None:
        from harness.io import write_json_atomic

        write_json_atomic(path, report.to_dict())
