"""Getting the records the gate judges: run the submission afresh, or read records written earlier."""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.data.spec import DatasetSpec
from harness.data.store import CompiledDataset
from harness.errors import HarnessError
from harness.gate.baseline import RecordFolder, open_record_folder
from harness.protocol.submission import Submission
from harness.records.files import RECORD_FILE
from harness.records.provenance import results_folder
from harness.runner import Runner


class FreshRunner(Runner):
    """The protocol's runner with a throw-away work folder per unit.

    Adapters resume from checkpoints in their work folder (keyed by config, data and seed, not by code), so
    a gate reusing them would measure the code that trained the checkpoint, not the code under test."""

    def __init__(self, submission: Submission, *, scratch: Path, **kwargs) -> None:
        super().__init__(submission, **kwargs)
        self.scratch = Path(scratch)

    def workdir(self, ds, seed: int) -> Path:
        return self.scratch / DatasetSpec.parse(ds.name).slug / f"seed{seed}"


def run_records(
    submission: Submission,
    datasets: list[str],
    seeds: list[int],
    *,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> list[RecordFolder]:
    """Train and evaluate `submission` on `datasets` x `seeds` from scratch; its records under out_dir."""
    for dataset in datasets:
        units = results_folder(out_dir, dataset, submission.name) / "units"
        if units.exists():
            raise HarnessError(
                f"{units} holds finished units of an earlier run, which the runner would reuse instead of "
                "measuring the code as it is now: give the gate a fresh --out folder, or gate those records "
                "with --records"
            )
    with tempfile.TemporaryDirectory(prefix="harness-gate-work-") as scratch:
        runner = FreshRunner(submission, scratch=Path(scratch), out_dir=out_dir, cache_dir=cache_dir, progress=progress)
        outcomes = runner.run(datasets=datasets, seeds=seeds)
    return [open_record_folder(outcome.folder, require_scores=False) for outcome in outcomes]


def read_records(records_dir: Path, submission: Submission, datasets: list[str]) -> list[RecordFolder]:
    """The records `python -m harness run ... --out records_dir` wrote for `submission` on `datasets`."""
    found = []
    for dataset in datasets:
        folder = results_folder(records_dir, dataset, submission.name)
        if not (folder / RECORD_FILE).is_file():
            raise HarnessError(
                f"--records {records_dir}: no record of {submission.name!r} on {dataset} (no {folder / RECORD_FILE}); "
                f"write it with `python -m harness run {submission.folder} -d {dataset} --out {records_dir}`"
            )
        found.append(open_record_folder(folder, require_scores=False))
    return found


def compiled_fingerprint(dataset: str, cache_dir: Path | None) -> str | None:
    """The fingerprint of the compiled dataset in the cache, or None when it is not compiled yet."""
    try:
        with CompiledDataset.open(dataset, cache_dir=cache_dir) as ds:
            return ds.fingerprint
    except HarnessError:
        return None  # the runner reports a missing dataset with the command that builds it
