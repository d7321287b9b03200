"""Find, validate and group the result records a leaderboard is built from.

Records are read from files alone (never from live objects); every one goes through the harness's one validator
(`harness.records.read_record_folder`) and is verified: every number it states is recomputed from the files
beside it (`harness.evaluation.verify`). A record that cannot be used, or whose numbers its files do not give
back, is skipped with a reason that names its file and field, so one bad or forged record never breaks the build
and is never shown.

Numbers are only ever compared inside a `Group`: records of one dataset name measured on one dataset
fingerprint under one protocol version and one decoding. Records of the same dataset on another fingerprint (a
rebuilt or changed dataset), protocol version or decoding (`--decoding distinct`) form a group of their own and get
their own tables.

The same walk finds experiment summaries (`experiment.json`, harness.leaderboard.experiments), validated
and skipped the same way.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import HarnessError
from harness.evaluation.verify import verify_record_folder
from harness.leaderboard.experiments import EXPERIMENT_FILE, LoadedExperiment, read_experiment
from harness.metrics.measures import measure_order
from harness.protocol.decodings import DEFAULT as DEFAULT_DECODING
from harness.records.files import RECORD_FILE
from harness.records.record import ProtocolParams, ResultRecord, Unit

# Folders inside a results tree that never hold records: the runner's per-unit work files.
_PRUNED_FOLDERS = frozenset({"units"})
# A file at the top of every built site. A rebuild may only replace a folder holding it, and the records
# walk never enters one, so a site built inside the records folder is never read back as records.
SITE_MARKER = ".leaderboard-site"
_PARALLEL_FROM = 64  # records; below this a process pool costs more than it saves


@dataclass(frozen=True)
class LoadedRecord:
    """One validated record and where it came from (`path`: record.json relative to the records root)."""

    path: str
    record: ResultRecord

    @property
    def name(self) -> str:
        return self.record.submission.name

    @property
    def display_name(self) -> str:
        return self.record.submission.display_name

    @property
    def kind(self) -> str:
        return self.record.submission.kind

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.record.submission.tasks

    @property
    def references(self) -> Mapping[str, str]:
        return self.record.submission.references  # read-only (ResultRecord)

    @property
    def dataset(self) -> str:
        return self.record.dataset.name

    @property
    def fingerprint(self) -> str:
        return self.record.dataset.fingerprint

    @property
    def protocol_version(self) -> str:
        return self.record.protocol_version

    @property
    def decoding(self) -> str:
        return self.record.params.decoding

    @property
    def group_key(self) -> tuple[str, str, str, str]:
        return (self.dataset, self.fingerprint, self.protocol_version, self.decoding)

    @functools.cached_property  # a frozen dataclass still has a __dict__ for the cache
    def finished_at(self) -> _dt.datetime:
        return parse_timestamp(self.record.timing.finished_at)

    @property
    def failed_units(self) -> list[Unit]:
        return [unit for unit in self.record.units if not unit.ok]


@dataclass(frozen=True)
class Skipped:
    """A record left out of the site, and why (the message names the file and the field at fault)."""

    path: str
    reason: str


@dataclass
class Group:
    """Records whose numbers may share a column: one dataset, one fingerprint, one protocol version, one decoding."""

    dataset: str
    fingerprint: str
    protocol_version: str
    decoding: str
    records: list[LoadedRecord]
    ks: list[int] = field(default_factory=list)
    headline_k: int = 0
    measures: list[str] = field(default_factory=list)  # every measure a record holds, the headline (Recall) first
    notes: list[str] = field(default_factory=list)

    @property
    def latest(self) -> _dt.datetime:
        return max(r.finished_at for r in self.records)

    def by_name(self) -> dict[str, LoadedRecord]:
        return {r.name: r for r in self.records}

    def protocol_params(self) -> ProtocolParams:
        """The parameters of the headline K's records (they agree within a protocol version)."""
        for r in self.records:
            if r.record.params.headline_k == self.headline_k:
                return r.record.params
        return self.records[0].record.params


@dataclass
class Collection:
    """Everything found under a records folder: usable records, grouped, and the skipped ones."""

    root: Path
    records: list[LoadedRecord]
    skipped: list[Skipped]
    groups: list[Group]
    experiments: list[LoadedExperiment] = field(default_factory=list)
    skipped_experiments: list[Skipped] = field(default_factory=list)

    def datasets(self) -> list[str]:
        return sorted({g.dataset for g in self.groups})

    def groups_of(self, dataset: str) -> list[Group]:
        """A dataset's groups, the current one first (the one with the most recently finished record)."""
        return [g for g in self.groups if g.dataset == dataset]


_TIMESTAMP = re.compile(r"^(?P<base>.+T\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<offset>Z|[+-]\d\d:\d\d)$")


def parse_timestamp(text: str) -> _dt.datetime:
    """An ISO-8601 timestamp with its offset, as the schema writes it, as an aware datetime.

    Parsed by hand around fromisoformat, which before Python 3.11 takes neither "Z" nor a fraction of
    other than 3 or 6 digits (the schema allows any)."""
    match = _TIMESTAMP.match(text)
    if match is None:  # the validator's pattern rules this out
        raise HarnessError(f"timestamp {text!r} is not ISO-8601 with an offset")
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    offset = "+00:00" if match["offset"] == "Z" else match["offset"]
    return _dt.datetime.fromisoformat(f"{match['base']}.{fraction}{offset}")


def scan(root: Path) -> tuple[list[Path], list[Path]]:
    """(folders holding a record.json, experiment.json files) under `root`, each in a fixed (sorted) order.

    Not searched: the runner's `units/` work folders, hidden folders (a site being built or swapped out),
    and built sites (a folder holding SITE_MARKER)."""
    record_folders, experiment_files = [], []
    for folder, subfolders, files in os.walk(root):
        if SITE_MARKER in files:
            subfolders[:] = []
            continue
        subfolders[:] = sorted(d for d in subfolders if d not in _PRUNED_FOLDERS and not d.startswith("."))
        if RECORD_FILE in files:
            record_folders.append(Path(folder))
        if EXPERIMENT_FILE in files:
            experiment_files.append(Path(folder) / EXPERIMENT_FILE)
    order = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return sorted(record_folders, key=order), sorted(experiment_files, key=order)


def find_record_folders(root: Path) -> list[Path]:
    """Every folder under `root` holding a record.json, in a fixed (sorted) order (pruned as in `scan`)."""
    return scan(root)[0]


def collect(roots: str | Path | Sequence[str | Path]) -> Collection:
    """Read and validate every record and experiment summary under `roots` (one folder or several, e.g. the
    published results and the user's own), skip the unusable ones, and group the records.

    With several folders, record paths are relative to their common parent (`official/sim1/...`,
    `results/sim1/...`), so the site can name and copy each; a record of the same submission, dataset,
    fingerprint, protocol and decoding in two folders is shown once, the most recently finished (as within one
    folder): a user's own rerun of a published submission replaces the published row on their site."""
    root, folders, experiment_files = _scan_roots(roots)
    # A record compared with a reference in another of the folders (a user's run against a published reference)
    # has its significance recomputed from that reference's record too.
    others = [] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    loaded: list[LoadedRecord] = []
    skipped: list[Skipped] = []
    for folder, (record, error) in zip(folders, _read_all(folders, others)):
        rel = (folder / RECORD_FILE).relative_to(root).as_posix()
        if error is None:
            loaded.append(LoadedRecord(rel, record))
        else:
            skipped.append(Skipped(rel, _relative_message(error, root)))
    records, duplicates = _drop_duplicates(loaded)
    skipped = sorted(skipped + duplicates, key=lambda s: s.path)
    experiments, skipped_experiments = _read_experiments(root, experiment_files)
    return Collection(root=root, records=records, skipped=skipped, groups=group_records(records),
                      experiments=experiments, skipped_experiments=skipped_experiments)


def _scan_roots(roots: str | Path | Sequence[str | Path]) -> tuple[Path, list[Path], list[Path]]:
    """(the root paths are relative to, record folders, experiment files) of one or several records folders."""
    given = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    if not given:
        raise HarnessError("no records folder given")
    for folder in given:
        if not folder.is_dir():
            raise HarnessError(f"{folder}: no such records folder (run a submission first: `python -m harness run ...`)")
    if len(given) == 1:
        return (given[0], *scan(given[0]))
    resolved = [g.resolve() for g in given]
    for a, ga in zip(resolved, given):
        for b, gb in zip(resolved, given):
            if a != b and b.is_relative_to(a):
                raise HarnessError(f"records folders {ga} and {gb}: one holds the other; name each folder once")
    if len(set(resolved)) != len(resolved):
        raise HarnessError(f"records folders {', '.join(map(str, given))}: the same folder is named twice")
    base = Path(os.path.commonpath(resolved))
    folders, experiments = [], []
    for folder in resolved:
        found, found_experiments = scan(folder)
        folders += found
        experiments += found_experiments
    order = lambda p: p.relative_to(base).as_posix()  # noqa: E731
    return base, sorted(folders, key=order), sorted(experiments, key=order)


def _read_experiments(root: Path, files: list[Path]) -> tuple[list[LoadedExperiment], list[Skipped]]:
    experiments, skipped = [], []
    for path in files:
        try:
            experiments.append(read_experiment(path, root))
        except HarnessError as exc:
            skipped.append(Skipped(path.relative_to(root).as_posix(), _relative_message(str(exc), root)))
    return sorted(experiments, key=lambda e: (e.name, e.folder)), skipped


def _read_one(folder: Path, also: tuple[Path, ...] = ()) -> tuple[ResultRecord | None, str | None]:
    """(record, None), or (None, why it is not shown): the validator's message, or the first number that the
    record's own files do not give back (harness.evaluation.verify: a forged or damaged record is never shown)."""
    try:
        verification = verify_record_folder(folder, also=also)
    except HarnessError as exc:
        return None, str(exc)
    if not verification.ok:
        more = f" (and {len(verification.mismatches) - 1} more)" if len(verification.mismatches) > 1 else ""
        return None, f"{verification.mismatches[0]}{more}: its numbers do not follow from its own files " \
                     f"(python -m harness verify lists every mismatch)"
    return verification.record, None


def _read_all(folders: list[Path], also: list[Path] = ()) -> list[tuple[ResultRecord | None, str | None]]:
    """Validate every folder, in order. JSON Schema validation costs ~10 ms a record in pure Python, so
    large trees are validated on every core (results come back in order: the build stays deterministic)."""
    workers = min(os.cpu_count() or 1, 8)
    if len(folders) < _PARALLEL_FROM or workers < 2:
        return [_read_one(folder, tuple(also)) for folder in folders]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(functools.partial(_read_one, also=tuple(also)), folders,
                             chunksize=max(1, len(folders) // (4 * workers))))


def _drop_duplicates(loaded: list[LoadedRecord]) -> tuple[list[LoadedRecord], list[Skipped]]:
    """One record per (dataset, fingerprint, protocol version, decoding, submission): the most recently finished
    (the first by path among equals); the others are skipped, naming the one shown."""
    chosen: dict[tuple, LoadedRecord] = {}
    for r in loaded:
        key = (*r.group_key, r.name)
        if key not in chosen or r.finished_at > chosen[key].finished_at:
            chosen[key] = r
    kept = {id(r) for r in chosen.values()}
    skipped = [
        Skipped(r.path, f"{r.path}: submission {r.name!r} on {r.dataset} (fingerprint {r.fingerprint[7:19]}, "
                        f"protocol {r.protocol_version}, decoding {r.decoding}) has a later or equal record, which is shown instead: "
                        f"{chosen[(*r.group_key, r.name)].path}")
        for r in loaded if id(r) not in kept
    ]
    return [r for r in loaded if id(r) in kept], skipped


def _relative_message(message: str, root: Path) -> str:
    """Validator messages name absolute paths; the site shows them relative to the records folder, so a
    build gives the same bytes wherever the folder lies."""
    for prefix in (str(root.resolve()) + os.sep, str(root) + os.sep):
        message = message.replace(prefix, "")
    return message


def group_records(records: list[LoadedRecord]) -> list[Group]:
    """Groups sorted by dataset name, then the current data and protocol first (latest finished record), the
    paper's decoding before `distinct` among them, then by fingerprint and protocol version so the order never
    depends on the file system."""
    by_key: dict[tuple[str, str, str, str], list[LoadedRecord]] = {}
    for r in records:
        by_key.setdefault(r.group_key, []).append(r)
    groups = []
    for (dataset, fingerprint, version, decoding), members in by_key.items():
        group = Group(dataset, fingerprint, version, decoding, sorted(members, key=lambda r: (r.name, r.path)))
        _settle_protocol(group)
        _note_short_lists(group)
        groups.append(group)
    # Newest data and protocol first; within them the paper's decoding first, however recent a `distinct` run is:
    # the overview shows a dataset's first group, and the paper's numbers use that decoding.
    latest: dict[tuple[str, str, str], float] = {}
    for g in groups:
        key = (g.dataset, g.fingerprint, g.protocol_version)
        latest[key] = max(latest.get(key, float("-inf")), g.latest.timestamp())
    groups.sort(key=lambda g: (g.dataset, -latest[(g.dataset, g.fingerprint, g.protocol_version)], g.fingerprint,
                               g.protocol_version, g.decoding != DEFAULT_DECODING, g.decoding))
    return groups


def _note_short_lists(group: Group) -> None:
    """Say when a submission's lists hold fewer distinct items than asked for (a diverse beam search returns
    duplicates; `lists` in the record, schema 1.1): such lists cap Recall@K, so the page must not hide it."""
    short = []
    for r in group.records:
        for task, stats in sorted(r.record.lists.items()):
            mean = stats.mean_distinct_items
            if mean is not None and mean < stats.depth - 0.05:
                short.append(f"{r.display_name} ({'recommendation' if task == 'rec' else task}) {mean:.1f} of "
                             f"{stats.depth}")
    if short:
        group.notes.append(
            "lists hold fewer distinct items than asked for, which caps Recall@K "
            f"(mean distinct items per list: {'; '.join(short)}). The 'distinct' decoding asks for K distinct "
            "items (docs/decoding.md); its records form tables of their own.")


def _settle_protocol(group: Group) -> None:
    """The group's cutoffs and measures (the union of its records') and headline K (the one most records use).

    Within one protocol version the parameters should agree; if they do not, the page says so."""
    ks: set[int] = set()
    headlines: Counter[int] = Counter()
    measures: set[str] = set()
    for r in group.records:
        ks.update(r.record.params.ks)
        measures.update(r.record.measures)
        headlines[r.record.params.headline_k] += 1
    group.ks = sorted(ks)
    group.measures = sorted(measures, key=measure_order)
    group.headline_k = min(headlines, key=lambda k: (-headlines[k], k))
    def comparable(params: ProtocolParams) -> dict:  # every parameter as recorded, the decoding with its default
        return {**params.to_dict(), "decoding": params.decoding}

    reference_params = comparable(group.protocol_params())
    differing = sorted(r.display_name for r in group.records
                       if comparable(r.record.params) != reference_params)
    if differing:
        group.notes.append(
            "these records use other protocol parameters than the rest of this table under the same protocol "
            f"version {group.protocol_version}: {', '.join(differing)}"
        )
