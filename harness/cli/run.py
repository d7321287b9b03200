"""`python -m harness run SUBMISSION_DIR [--dataset NAME ...] [--seeds N ...] [--out DIR] [--no-references]
[--decoding diverse-beam|distinct]`

The submission's [references] (e.g. Gen_R and Gen_S for Gen_R+S) run first, on the same datasets and seeds, so its
record carries the paired comparison and the §7 diagnostics; their finished units are reused like any run's. A
reference whose published record (`--published`, default leaderboard/official) was measured on exactly this run's
terms (dataset fingerprint, protocol, decoding, the reference's config, the seeds) is read from there instead of
being trained again (harness.evaluation.published).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.protocol.decodings import DECODINGS, DEFAULT as DEFAULT_DECODING

DEFAULT_OUT = Path("leaderboard") / "results"
PUBLISHED_DEFAULT = Path("leaderboard") / "official"  # harness.evaluation.published.PUBLISHED_DIR, without its imports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", type=Path, help="a submission folder holding config.toml")
    parser.add_argument(
        "--dataset", "-d", action="append", dest="datasets", metavar="NAME",
        help="run on this dataset instead of the config's list (repeatable; `name:key=value` allowed)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", metavar="N", help="seeds instead of the config's")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default: {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", type=Path, help="compiled datasets and work folders (default: $HARNESS_CACHE_DIR)")
    parser.add_argument(
        "--decoding", choices=list(DECODINGS), default=DEFAULT_DECODING,
        help="how generative models read out their K items: 'diverse-beam' (the paper's, default) or 'distinct' (K "
        "distinct items); recorded in each record, kept in its own results folder (NAME@distinct), compared only "
        "with records of the same decoding (docs/decoding.md)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--no-references", action="store_true",
        help="do not run the submission's [references] first (a comparison then uses whatever record they have)",
    )
    parser.add_argument(
        "--published", type=Path, action="append", metavar="DIR",
        help="published results to take a reference's record from instead of retraining it, when it matches this "
        f"run exactly (repeatable; default: {PUBLISHED_DEFAULT} where it exists)",
    )
    parser.add_argument("--no-published", action="store_true", help="always train the references here")
    parser.add_argument(
        "--site", type=Path,
        help="rebuild the static leaderboard from every record under --out into this folder "
        "(default: beside --out: leaderboard/results -> leaderboard/site, OUT -> OUT-site)",
    )
    parser.add_argument("--no-site", action="store_true", help="do not rebuild the leaderboard site")


def run(args: argparse.Namespace) -> int:
    from harness.protocol.references import resolve_references
    from harness.protocol.units import is_writing_rank
    from harness.runner import Runner
    from harness.protocol.submission import load_submission

    submission = load_submission(args.submission)
    references = {} if args.no_references else resolve_references(submission)

    def runner_of(sub):
        return Runner(sub, out_dir=args.out, cache_dir=args.cache_dir, progress=not args.no_progress,
                      decoding=args.decoding)

    runner = runner_of(submission)
    ref_runners = [runner_of(ref) for ref in references.values()]
    # Everything is checked before anything trains: datasets, seeds, every adapter's import.
    names, seeds = runner.plan(args.datasets, args.seeds)
    for ref_runner in ref_runners:
        ref_runner.plan(names, seeds)
    published = _published_references(args, references, names, seeds)
    runner.reference_folders = {name: {ref: folder for (ds, ref), folder in published.items() if ds == name}
                                for name in names}

    ran = []  # (submission, its outcome on one dataset), in the order they ran
    for name in names:  # per dataset: the references, then the submission (its record reads theirs)
        for one in [*ref_runners, runner]:
            if (name, one.sub.name) in published and one is not runner:
                continue
            ran += [(one.sub, outcome) for outcome in one.run([name], seeds)]
    failed = sum(len(outcome.failed) for _, outcome in ran)
    if not is_writing_rank():  # under the deepspeed launcher: rank 0 reports, writes and builds the site
        return 1 if failed else 0

    _report(submission, references, ran, published)
    print(f"\nRecords are under {args.out}; the tracebacks of failed units are in their record.json.")
    if not args.no_site:
        from harness.leaderboard import build_site

        site = args.site or default_site(args.out)
        report = build_site(args.out, site)
        for line in report.lines():
            print(f"  {line}")
        print(f"Leaderboard: {site / 'index.html'}  (rebuild: python -m harness leaderboard build --records {args.out} --out {site})")
    if failed:
        print("Run the same command again to retry failed units; finished units are reused.")
    return 1 if failed else 0


def _published_references(args, references, names, seeds) -> dict[tuple[str, str], Path]:
    """{(dataset, reference): published record folder} for the references that need no training here; says why
    for the others when a published folder was there to look in."""
    if not references or args.no_published:
        return {}
    roots = args.published or ([PUBLISHED_DEFAULT] if PUBLISHED_DEFAULT.is_dir() else [])
    for root in roots:
        if not root.is_dir():
            from harness.errors import HarnessError

            raise HarnessError(f"--published {root}: no such folder")
    if not roots:
        return {}
    from harness.data.store import CompiledDataset
    from harness.evaluation.published import published_reference
    from harness.records.provenance import results_folder

    found = {}
    for name in names:
        with CompiledDataset.open(name, cache_dir=args.cache_dir) as ds:
            for ref in references.values():
                own = results_folder(args.out, ds.name, ref.name, args.decoding)
                if (own / "record.json").is_file():  # a reference run here before wins (verify looks beside first)
                    continue
                folder, why_not = published_reference(roots, ds, ref, seeds, args.decoding)
                if folder is not None:
                    found[(name, ref.name)] = folder
                    print(f"[{ref.name} | {name}] the published record {folder} matches this run (dataset, protocol, "
                          f"decoding, config, seeds): used as the reference, not retrained")
                else:
                    print(f"[{ref.name} | {name}] trained here: {why_not}")
    return found


def default_site(out: Path) -> Path:
    """The site beside a results folder: leaderboard/results -> leaderboard/site, any other OUT -> OUT-site, so two
    results folders never write one site."""
    return out.parent / ("site" if out.name == "results" else f"{out.name}-site")


def _report(submission, references, ran, published=None) -> None:
    """One block per submission that ran (references first), a line per dataset; a failed reference says which
    comparison of the submission it leaves missing."""
    tasks_of = {}
    for task, name in submission.references.items():
        tasks_of.setdefault(name, []).append(task)
    for sub in [*references.values(), submission]:
        role = f"reference for {', '.join(sorted(tasks_of[sub.name]))}" if sub.name in tasks_of else "submission"
        print(f"\n{sub.display_name} ({sub.name}, {role}):")
        for (dataset, name), folder in sorted((published or {}).items()):
            if name == sub.name:
                print(f"  {dataset:<28} {'published':<10} record: {folder / 'record.json'} (not retrained)")
        for _, outcome in (pair for pair in ran if pair[0] is sub):
            status = "ok" if not outcome.failed else f"{len(outcome.failed)} of {len(outcome.units)} unit(s) FAILED"
            print(f"  {outcome.dataset:<28} {status:<10} record: {outcome.folder / 'record.json'}")
            for unit in outcome.failed:
                print(f"      seed {unit.seed}: {unit.error['type']}: {unit.error['message']}")
            if outcome.failed and sub is not submission:
                seeds = ", ".join(str(u.seed) for u in outcome.failed)
                print(f"      -> {submission.display_name}'s {', '.join(sorted(tasks_of[sub.name]))} comparison on "
                      f"{outcome.dataset} is missing seed(s) {seeds} (marked in its record)")
