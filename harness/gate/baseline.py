"""Baseline records: where the gate finds one, when two records may be compared, and how `--update` writes one.

A baseline is an ordinary record folder (docs/result-format.md) holding `record.json` and
`per_query.parquet` only: the per-query values are what the paired test needs, and the TREC run and qrels
files are left out so committed baselines stay small (`python -m harness run` rebuilds them at will).
Baselines sit in the runner's layout, `<root>/<dataset slug>/<submission>/`, so a results folder of
`python -m harness run --out ROOT` is itself a valid baseline root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.records.files import RECORD_FILE, read_per_query, read_record_folder, write_record_folder
from harness.records.provenance import results_folder
from harness.records.record import ResultRecord


@dataclass(frozen=True)
class RecordFolder:
    """A complete record folder and its validated record."""

    folder: Path
    record: ResultRecord

    @property
    def submission(self) -> str:
        return self.record.submission.name

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
    def failed_seeds(self) -> list[int]:
        return list(self.record.failed_seeds)


def open_record_folder(folder: str | Path, *, require_scores: bool = True) -> RecordFolder:
    """The folder's validated record; HarnessError if it is incomplete or (require_scores) has no per-query scores.

    A new record whose every unit failed has no scores; the gate reports it as a failure, not an error."""
    folder = Path(folder)
    record = read_record_folder(folder)
    if require_scores and record.files.per_query is None:
        raise HarnessError(
            f"{folder / RECORD_FILE}: $.files.per_query is null: the record has no per-query scores to compare"
        )
    return RecordFolder(folder, record)


def single_record(baseline: str | Path) -> Path | None:
    """The record folder when RECORD_OR_DIR names one record (its record.json or its folder), else None."""
    baseline = Path(baseline)
    if baseline.is_file():
        if baseline.name != RECORD_FILE:
            raise HarnessError(f"--baseline {baseline}: give a {RECORD_FILE}, a record folder or a folder of records")
        return baseline.parent
    if (baseline / RECORD_FILE).is_file():
        return baseline
    return None


def baseline_folder(baseline: str | Path, dataset: str, submission: str) -> Path:
    """Where the baseline of `submission` on `dataset` lives under RECORD_OR_DIR (which may name it directly)."""
    return single_record(baseline) or results_folder(Path(baseline), dataset, submission)


def open_baseline(baseline: str | Path, dataset: str, submission: str, *, update_hint: str) -> RecordFolder:
    folder = baseline_folder(baseline, dataset, submission)
    if not (folder / RECORD_FILE).is_file():
        raise HarnessError(
            f"no baseline of {submission!r} on {dataset} (no {folder / RECORD_FILE}); "
            f"write one deliberately with `{update_hint}`"
        )
    return open_record_folder(folder)


def check_comparable(now: RecordFolder, base: RecordFolder, *, update_hint: str) -> list[str]:
    """HarnessError unless `now` and `base` are one submission on one dataset under one protocol; notes else.

    Numbers measured on another dataset fingerprint or protocol version are never compared: the baseline
    must be refreshed deliberately (`--update`), never passed over silently."""
    where = base.folder / RECORD_FILE
    if base.submission != now.submission:
        raise HarnessError(f"{where}: the baseline is of submission {base.submission!r}, not {now.submission!r}")
    if base.dataset != now.dataset:
        raise HarnessError(f"{where}: the baseline is on dataset {base.dataset}, not {now.dataset}")
    if base.fingerprint != now.fingerprint:
        raise HarnessError(
            f"{where}: the baseline was measured on {base.dataset} with fingerprint {base.fingerprint}, this run "
            f"on {now.fingerprint}: the compiled dataset changed, so the numbers cannot be compared. If the change "
            f"is intended, refresh the baseline with `{update_hint}` and commit it"
        )
    if base.protocol_version != now.protocol_version:
        raise HarnessError(
            f"{where}: the baseline was measured under protocol version {base.protocol_version}, this run under "
            f"{now.protocol_version}: refresh the baseline with `{update_hint}` and commit it"
        )
    if base.decoding != now.decoding:
        raise HarnessError(
            f"{where}: the baseline was decoded with {base.decoding!r}, this run with "
            f"{now.decoding!r}: numbers under two decodings are never compared; run the gate with the "
            f"baseline's decoding or refresh the baseline with `{update_hint}`"
        )
    if base.failed_seeds:
        raise HarnessError(f"{where}: the baseline has failed units (seeds {base.failed_seeds}); refresh it with `{update_hint}`")
    notes = []
    label = f"{now.submission} on {now.dataset}"
    if base.record.submission.config_hash != now.record.submission.config_hash:
        notes.append(f"{label}: the submission's config.toml changed since the baseline")
    if sorted(base.record.seeds) != sorted(now.record.seeds):
        notes.append(
            f"{label}: baseline seeds {sorted(base.record.seeds)}, now {sorted(now.record.seeds)}: "
            "differences include seed variance"
        )
    return notes


def write_baseline(now: RecordFolder, dest: str | Path) -> Path:
    """Write `now` as the baseline folder `dest`: record.json and per_query.parquet, no TREC files.

    Goes through the record-folder writer, so it is atomic in the project's sense: every data file is
    staged first and record.json is written last; a failure leaves the previous baseline as it was."""
    if now.failed_seeds:
        raise HarnessError(
            f"{now.folder / RECORD_FILE}: seeds {now.failed_seeds} failed; a baseline is written only from a "
            "record whose every unit finished"
        )
    write_record_folder(
        dest,
        now.record.without_files(),
        per_query=read_per_query(now.folder),
        runs={},
        qrels={},
        item_keys=np.array([], dtype=object),
    )
    return Path(dest)
