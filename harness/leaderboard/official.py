"""The official results: reference records committed under `leaderboard/official/`, and how a result joins them.

    leaderboard/official/<dataset slug>/<submission folder>/     results_folder(OFFICIAL_DIR, dataset, submission, decoding)
        record.json  per_query.parquet  <task>.seed<k>.run  <task>.qrels  <task>.head
        units/seed<k>/unit.json  units/seed<k>/rankings.npz

Only the files in PUBLISHED_FILES are published: the record, the files its `files` block names (from which
`python -m harness verify` recomputes every number) and each finished unit's rankings (which the diagnostics of
records declaring it as their reference read). Item embeddings, checkpoints and logs stay on the machine that
made them.

    check_submittable(folder, OFFICIAL_DIR)     # the record verifies and belongs beside the official ones; else HarnessError
    pack_record(folder, OFFICIAL_DIR)           # its published files, copied, verified again, moved into place

Nothing of a submission's code is ever run here: a record is judged by its files alone.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterable

from harness.errors import HarnessError
from harness.records.files import RECORD_FILE, run_file_name
from harness.records.provenance import PROTOCOL_VERSION, results_folder
from harness.records.record import ResultRecord

OFFICIAL_DIR = Path("leaderboard") / "official"  # relative to the working directory, like the CLI's other defaults

# What an official record folder publishes, as patterns of paths inside it (`*` never crosses a `/`). Everything
# else a results folder holds (units/seed<k>/item_embeddings*.npy, checkpoints, logs) is left out.
PUBLISHED_FILES: tuple[str, ...] = (
    RECORD_FILE,
    "per_query.parquet",
    "*.run",
    "*.qrels",
    "*.head",
    "units/seed*/unit.json",
    "units/seed*/rankings.npz",
)
_UNIT_FILES = ("unit.json", "rankings.npz")
_PACKING = re.compile(r"^(?P<pid>[0-9]+)-[A-Za-z0-9_]+$")  # .NAME.pack-PID-RANDOM: a staging folder
_SHORT = 12  # hex digits of a fingerprint shown in messages


def is_published(path: str) -> bool:
    """Whether `path` (inside a record folder, `/`-separated) matches one of PUBLISHED_FILES."""
    parts = PurePosixPath(path).parts
    return any(
        len(parts) == len(pattern.split("/"))
        and all(fnmatch.fnmatchcase(part, piece) for part, piece in zip(parts, pattern.split("/")))
        for pattern in PUBLISHED_FILES
    )


def published_files(folder: str | Path, record: ResultRecord) -> list[str]:
    """The paths inside `folder` that an official copy of its record holds, sorted: record.json, every file its
    `files` block names, and units/seed<k>/{unit.json,rankings.npz} of its finished seeds where present.
    HarnessError when the record names a file that is not published, or a published file is a link."""
    folder = Path(folder)
    names = [RECORD_FILE]
    for name in sorted(record.files.names()):
        if not is_published(name):
            raise HarnessError(f"{folder / RECORD_FILE}: $.files names {name!r}, which is not a file an official "
                               f"record publishes ({', '.join(PUBLISHED_FILES[:5])})")
        names.append(name)
    for seed in sorted(record.ok_seeds):
        for file in _UNIT_FILES:
            name = f"units/seed{seed}/{file}"
            if (folder / name).exists() or (folder / name).is_symlink():
                names.append(name)
    for name in names:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            what = "a link" if path.is_symlink() else "missing or not a plain file"
            raise HarnessError(f"{path}: {what}; an official record publishes plain files only")
    return names


def official_fingerprints(root: str | Path) -> dict[str, set[str]]:
    """{dataset name: the dataset fingerprints of the official records of it} under `root` ({} without the folder).
    An official record that cannot be read is an error naming its file (the folder is committed and verified)."""
    from harness.leaderboard.collect import find_record_folders  # pyarrow and scipy: only when asked

    root = Path(root)
    fingerprints: dict[str, set[str]] = {}
    if not root.is_dir():
        return fingerprints
    for folder in find_record_folders(root):
        record = ResultRecord.read(folder / RECORD_FILE)
        fingerprints.setdefault(record.dataset.name, set()).add(record.dataset.fingerprint)
    return fingerprints


def check_submittable(folder: str | Path, official_root: str | Path, *,
                      batch: Iterable[ResultRecord] = ()) -> ResultRecord:
    """The record in `folder` if it may join the official results under `official_root`; HarnessError naming the
    folder (or file) and the reason otherwise:

    - it has failed units, was measured under another protocol version, or states numbers its files cannot give
      back (no per-query values, a task without the run, qrels or head file of every finished seed, a measure this
      harness does not know);
    - its dataset has no official records, or another fingerprint than theirs (a foreign record: another build or
      version of the data);
    - a reference its significance tests compare with has no official record of the dataset (nor is among
      `batch`, the records submitted with it);
    - it does not verify: the first number its files do not give back (harness.evaluation.verify) -- a forged or
      damaged record.
    """
    from harness.evaluation.verify import verify_record_folder
    from harness.records.files import read_record_folder

    folder, official_root = Path(folder), Path(official_root)
    record = read_record_folder(folder)
    _check_record(record, folder)
    _check_dataset(record, folder, official_root)
    _check_references(record, folder, official_root, list(batch))
    verification = verify_record_folder(folder)
    if not verification.ok:
        more = f" (and {len(verification.mismatches) - 1} more)" if len(verification.mismatches) > 1 else ""
        raise HarnessError(f"{folder}: does not verify: {verification.mismatches[0]}{more}")
    return record


def pack_record(folder: str | Path, official_root: str | Path, *, replace: bool = False,
                dry_run: bool = False) -> Path:
    """Copy the published files of the record in `folder` into its official folder,
    results_folder(official_root, dataset, submission, decoding), and return that folder's path.

    The files are copied into a staging folder beside the destination, the copy is verified again (references
    looked up under `official_root`: the record's tests are recomputed against the official references' values)
    and only then moved into place in one rename, so the destination never holds a half-written or unverified
    record. An existing destination is refused unless `replace`, then the two folders are exchanged. `dry_run`
    stages and verifies in a temporary folder elsewhere and writes nothing under `official_root`.

    This checks the record itself (finished units, protocol version, recomputable numbers, verification) but not
    that it belongs beside the official ones: check_submittable does, and `python -m harness submit` calls both.
    """
    from harness.records.files import read_record_folder

    folder, official_root = Path(folder), Path(official_root)
    record = read_record_folder(folder)
    _check_record(record, folder)
    destination = results_folder(official_root, record.dataset.name, record.submission.name, record.params.decoding)
    if not dry_run and destination.parent.is_dir():
        _remove_stale_staging(destination)  # what a killed packer left (a replaced record it had moved aside comes back)
    if _exists(destination) and not replace:
        raise HarnessError(f"{destination}: already holds the official record of {record.submission.name!r} on "
                           f"{record.dataset.name!r}; replacing it must be asked for (--replace)")
    names = published_files(folder, record)
    if dry_run:
        staging = Path(tempfile.mkdtemp(prefix=f"{destination.name}.pack-"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.pack-{os.getpid()}-", dir=destination.parent))
    try:
        for name in names:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, staging / name, follow_symlinks=False)
        _verify_packed(staging, destination, official_root, folder)
        if not dry_run:
            _move_into_place(staging, destination, replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange: the previous official record
    return destination


# ---- checks ------------------------------------------------------------------------------------------------------


def _check_record(record: ResultRecord, folder: Path) -> None:
    """What a record must be to be official, whatever the official folder holds."""
    from harness.metrics.measures import registry

    file = folder / RECORD_FILE
    failed = [unit for unit in record.units if not unit.ok]
    if failed:
        first = failed[0]
        why = f": {first.error.type}: {first.error.message}" if first.error is not None else ""
        raise HarnessError(f"{file}: $.units: seed(s) {[unit.seed for unit in failed]} failed (seed {first.seed}{why}); "
                           "only a record whose every unit finished is submitted (rerun it: python -m harness run)")
    if record.protocol_version != PROTOCOL_VERSION:
        raise HarnessError(f"{file}: $.protocol.version: {record.protocol_version!r}, the official results are "
                           f"measured under protocol {PROTOCOL_VERSION!r} (rerun with this harness)")
    # Verification recomputes only what the files allow; an official record must allow all of it.
    files = record.files
    if files.per_query is None:
        raise HarnessError(f"{file}: $.files.per_query: none, so its metrics cannot be recomputed")
    unknown = sorted(code for code in record.measures if code not in registry())
    if unknown:
        raise HarnessError(f"{file}: $.measures: {unknown} are not measures this harness knows, so they cannot be "
                           "recomputed")
    for task in sorted(set(record.metrics) | set(files.runs)):
        runs = set(files.runs.get(task, ()))
        missing = [seed for seed in record.ok_seeds if run_file_name(task, seed) not in runs]
        if missing:
            raise HarnessError(f"{file}: $.files.runs.{task}: no run file of seed(s) {missing}, so its per-query "
                               "values cannot be recomputed")
        for block, what in ((files.qrels, "qrels"), (files.heads, "heads")):
            if task not in block:
                raise HarnessError(f"{file}: $.files.{what}.{task}: absent, so its per-query values cannot be "
                                   "recomputed")


def _check_dataset(record: ResultRecord, folder: Path, official_root: Path) -> None:
    if not official_root.is_dir():
        raise HarnessError(f"{official_root}: no official results folder (run from the repository's root, or give "
                           "--official DIR)")
    official = official_fingerprints(official_root)
    name, fingerprint = record.dataset.name, record.dataset.fingerprint
    if name not in official:
        raise HarnessError(f"{folder}: dataset {name!r} has no official results under {official_root} (they have "
                           f"{', '.join(map(repr, sorted(official))) or 'none'}); a new dataset joins the official "
                           "results with its reference records, not through a submission")
    if fingerprint not in official[name]:
        theirs = ", ".join(_short(f) for f in sorted(official[name]))
        raise HarnessError(f"{folder}: foreign record: dataset {name!r} has fingerprint {_short(fingerprint)}, the "
                           f"official records' is {theirs} (another build or version of the data: rebuild it with "
                           f"this harness, `python -m harness data build {name}`, and rerun)")


def _check_references(record: ResultRecord, folder: Path, official_root: Path, batch: list[ResultRecord]) -> None:
    """A record's tests are only checkable against its reference's values: that record must be official, or be
    submitted with it."""
    decoding = record.params.decoding
    pending = {(other.dataset.name, other.submission.name, other.params.decoding) for other in batch}
    for task, rows in sorted(record.significance.items()):
        for reference in sorted({row.reference for row in rows}):
            official = results_folder(official_root, record.dataset.name, reference, decoding) / RECORD_FILE
            if official.is_file() or (record.dataset.name, reference, decoding) in pending:
                continue
            raise HarnessError(f"{folder}: its {task} significance tests compare with {reference!r}, which has no "
                               f"official record ({official}): submit that record too, so they can be recomputed")


def _verify_packed(staging: Path, destination: Path, official_root: Path, source: Path) -> None:
    from harness.evaluation.verify import verify_record_folder

    try:
        verification = verify_record_folder(staging, root=official_root)
    except HarnessError as exc:
        raise HarnessError(f"{source}: the packed copy does not read back: "
                           f"{str(exc).replace(str(staging), str(destination))}") from None
    if not verification.ok:
        first = verification.mismatches[0]
        hint = ""
        if first.field.startswith("$.significance"):
            hint = (" (its tests were computed against a reference record other than the official one under "
                    f"{official_root}: rerun it beside the official references)")
        raise HarnessError(f"{source}: the packed copy does not verify: "
                           f"{str(first).replace(str(staging), str(destination))}{hint}")


# ---- moving into place -------------------------------------------------------------------------------------------


def _move_into_place(staging: Path, destination: Path, replace: bool) -> None:
    """`staging` becomes `destination` in one rename; an existing destination (only with `replace`) is exchanged
    with it in one step where the system can, and then ends up in `staging`, which the caller removes."""
    from harness.io import exchange_paths

    if _exists(destination):
        if not replace:  # appeared while the copy was made
            raise HarnessError(f"{destination}: appeared while the record was packed; replacing it must be asked for "
                               "(--replace)")
        if exchange_paths(staging, destination):
            return
        previous = Path(tempfile.mkdtemp(prefix=f".{destination.name}.pack-{os.getpid()}-old", dir=destination.parent))
        os.rename(destination, previous / "record")  # a kill from here to the next rename leaves the old one in
        os.rename(staging, destination)               # `previous`, hidden, and no destination
        shutil.rmtree(previous, ignore_errors=True)
        return
    try:
        os.rename(staging, destination)
    except OSError as exc:
        raise HarnessError(f"{destination}: cannot move the packed record into place ({exc})") from None


def _remove_stale_staging(destination: Path) -> None:
    """Staging folders of this destination that a killed packer left behind."""
    from harness.io import process_alive

    prefix = f".{destination.name}.pack-"
    for path in sorted(destination.parent.iterdir()):
        match = _PACKING.match(path.name[len(prefix):]) if path.name.startswith(prefix) else None
        if match is None or not path.is_dir() or process_alive(int(match["pid"])):
            continue
        if (path / "record").is_dir() and not _exists(destination):  # killed between the two renames of a replace
            os.rename(path / "record", destination)
        shutil.rmtree(path, ignore_errors=True)


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _short(fingerprint: str) -> str:
    algorithm, _, digest = fingerprint.partition(":")
    return f"{algorithm}:{digest[:_SHORT]}" if digest else fingerprint[:_SHORT]
