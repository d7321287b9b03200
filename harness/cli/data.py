"""`python -m harness data build|list|verify|stats|show`: compile, check and inspect datasets.

Kept light at import time (no duckdb, numpy or torch until a command runs): `data list` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="compile datasets into fingerprinted DuckDB files",
                           description="Compile each NAME (e.g. ml-small, sim2:q_match=0.5) once; an up-to-date "
                           "build is skipped unless --force.")
    build.add_argument("names", nargs="+", metavar="NAME")
    build.add_argument("--data-dir", help="where raw archives are (default: $HARNESS_DATA_DIR, then the user cache)")
    build.add_argument("--path", help="an explicit input file or folder (mpd, logs; a MovieLens zip, unpinned)")
    build.add_argument("--force", action="store_true", help="rebuild even when an up-to-date build exists")
    build.add_argument("--offline", action="store_true", help="never download; fail naming the file to supply")
    _cache_arg(build)

    lst = sub.add_parser("list", help="registered datasets and which are compiled (damaged files are marked)")
    _cache_arg(lst)

    verify = sub.add_parser("verify", help="recompute compiled datasets' fingerprints from their tables",
                            description="Recompute each NAME's fingerprint from its tables and compare it with the "
                            "one its manifest records: exit 0 when every file matches, 1 naming the file, both "
                            "fingerprints and the rebuild command otherwise.")
    verify.add_argument("names", nargs="+", metavar="NAME", help="a dataset name or a path to a .duckdb file")
    _cache_arg(verify)

    for name, help_text in (("stats", "the Table 3 statistics row"),
                            ("show", "split sizes, fingerprint, source files, parameters, dropped counts")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--json", action="store_true", help="print JSON")
        _cache_arg(p)


def _cache_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir",
                        help="where compiled datasets live (default: $HARNESS_CACHE_DIR, then the user cache)")


def run(args: argparse.Namespace) -> int:
    return {"build": _build, "list": _list, "verify": _verify, "stats": _stats, "show": _show}[args.data_command](args)


def _build(args: argparse.Namespace) -> int:
    from harness.data.compile import compile_dataset

    for name in args.names:
        outcome = compile_dataset(name, data_dir=args.data_dir, cache_dir=args.cache_dir, path=args.path,
                                  allow_download=not args.offline, force=args.force)
        if outcome.removed:
            print(f"removed {len(outcome.removed)} leftover(s) of killed compiles from {outcome.path.parent}")
        if outcome.damaged:
            reason = outcome.damaged.rsplit("; rebuild it with", 1)[0]
            print(f"{name}: the compiled file was damaged, so it was rebuilt ({reason})")
        if outcome.skipped:
            print(f"{name}: already compiled with the same inputs ({outcome.fingerprint}) at {outcome.path}; "
                  "skipped (use --force to rebuild)")
            continue
        c = outcome.manifest["counts"]
        print(f"{outcome.manifest['dataset']}: compiled in {outcome.seconds:.1f} s -> {outcome.path}\n"
              f"  fingerprint {outcome.fingerprint}\n"
              f"  {c['items']:,} items, {c['users']:,} users, {c['sequences']:,} interactions, "
              f"{c['queries']:,} queries, {c['qrels']:,} qrels")
        if (outcome.manifest.get("notes") or {}).get("filled_in"):
            print(f"  filled in: {_filled_in(outcome.manifest['notes']['filled_in'])}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from harness import settings
    from harness.data.integrity import verify_file
    from harness.data.sources import SOURCES
    from harness.errors import HarnessError

    compiled = sorted(settings.compiled_dir(args.cache_dir).glob("*.duckdb"))
    by_source: dict[str, list[str]] = {}
    damaged: dict[str, list[str]] = {}
    problems = []
    for path in compiled:
        source = path.stem.split("__")[0]
        try:
            verify_file(path)
        except HarnessError as exc:
            damaged.setdefault(source, []).append(path.name)
            problems.append(str(exc))
            continue
        by_source.setdefault(source, []).append(path.name)
    width = max(len(n) for n in SOURCES.names())
    for name in SOURCES.names():
        files, bad = by_source.get(name, []), damaged.get(name, [])
        states = ([f"compiled: {', '.join(files)}"] if files else []) + ([f"damaged: {', '.join(bad)}"] if bad else [])
        print(f"{name:<{width}}  {SOURCES.doc(name)}\n{'':<{width}}  [{'; '.join(states) or 'not compiled'}]")
    print(f"\ncompiled datasets live in {settings.compiled_dir(args.cache_dir)}")
    for problem in problems:
        print(f"damaged: {problem}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from harness.data.integrity import verify_file
    from harness.data.store import resolve_file
    from harness.errors import HarnessError

    failed = 0
    for name in args.names:
        try:
            path, spec_text = resolve_file(name, args.cache_dir)
            if not path.is_file():
                raise HarnessError(f"{name}: no compiled file {path}; build it with `python -m harness data build "
                                   f"{spec_text or name}`" + (f" --cache-dir {args.cache_dir}" if args.cache_dir else ""))
            manifest, verified = verify_file(path, spec_text, full=True)
        except HarnessError as exc:
            failed += 1
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            continue
        print(f"{manifest['dataset']}: OK, its tables give the fingerprint its manifest records "
              f"({verified.fingerprint}; {path}; recomputed in {verified.seconds:.1f} s)")
    return 1 if failed else 0


def _stats(args: argparse.Namespace) -> int:
    from harness.data.stats import TABLE3_COLUMNS
    from harness.data.store import CompiledDataset

    with CompiledDataset.open(args.name, cache_dir=args.cache_dir) as ds:
        row = ds.stats()
        if args.json:
            print(json.dumps({"dataset": ds.name, "fingerprint": ds.fingerprint, **row}, indent=2, sort_keys=True))
            return 0
        print(f"{ds.name}  ({ds.fingerprint})")
        cells = [(header, fmt.format(row[key])) for key, header, fmt in TABLE3_COLUMNS]
        widths = [max(len(h), len(v)) for h, v in cells]
        print("  ".join(h.rjust(w) for (h, _), w in zip(cells, widths)))
        print("  ".join(v.rjust(w) for (_, v), w in zip(cells, widths)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from harness.data.store import CompiledDataset

    with CompiledDataset.open(args.name, cache_dir=args.cache_dir) as ds:
        m = ds.manifest
        info = {k: m.get(k) for k in ("dataset", "fingerprint", "format_version", "source", "headline_k", "files",
                                      "params", "split_params", "counts", "dropped", "notes", "harness_version")}
        info["path"] = str(ds.path)
        if args.json:
            print(json.dumps(info, indent=2, sort_keys=True))
            return 0
        _print_show(info)
    return 0


def _print_show(info: dict[str, Any]) -> None:
    c = info["counts"]
    print(f"{info['dataset']}  (source {info['source']}, format v{info['format_version']}, "
          f"harness {info['harness_version']})")
    print(f"  fingerprint  {info['fingerprint']}")
    print(f"  file         {info['path']}")
    for f in info["files"] or []:
        print(f"  input        {f['name']}  md5 {f['md5']}  {f['bytes']:,} bytes")
    print(f"  params       {json.dumps(info['params'], sort_keys=True)}")
    print(f"  split        {json.dumps(info['split_params'], sort_keys=True)}  headline K={info['headline_k']}")
    print(f"  items {c['items']:,}  users {c['users']:,}  interactions {c['sequences']:,}  "
          f"queries {c['queries']:,}  qrels {c['qrels']:,}")
    print(f"  {'split':<6} {'rec examples':>13} {'queries':>9} {'qrels':>9}")
    for split in ("train", "valid", "test"):
        print(f"  {split:<6} {c['rec_examples'][split]:>13,} {c['queries_by_split'][split]:>9,} "
              f"{c['qrels_by_split'][split]:>9,}")
    print("  dropped:")
    for key, n in info["dropped"].items():
        if n:
            print(f"    {key:<45} {n:>10,}")
    if info.get("notes"):
        print(f"  notes        {json.dumps(info['notes'], sort_keys=True)}")
        if info["notes"].get("filled_in"):
            print(f"  filled in    {_filled_in(info['notes']['filled_in'])}")


def _filled_in(filled: dict[str, int]) -> str:
    """A source's `filled_in` note (values missing from its input and filled in, e.g. an MPD subset
    without `pos`): 'modified_at 10, pos 51 (missing from the input; the source's docs say with what)'."""
    counts = ", ".join(f"{key} {n:,}" for key, n in sorted(filled.items()) if n)
    return f"{counts} (missing from the input; the source's docs say with what)"
