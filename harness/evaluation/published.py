"""Published reference records: use one instead of retraining a submission's reference.

    folder, why_not = published_reference(roots, ds, reference_sub, seeds, decoding)

`python -m harness run submissions/joint_t5` compares the joint model with its references (rec_t5, search_t5). When
the project's published results (`leaderboard/official`, committed) hold a record of the reference that was
measured on exactly this run's terms, training the reference again would only reproduce it, so the run reads that
record instead. "Exactly" means all of:

- the same dataset fingerprint (the compiled split, byte for byte) and protocol version;
- the same decoding;
- the same submission config (`config_hash` of the reference's config.toml as it is now);
- every seed this run needs finished in the record;
- and the record verifies: every number recomputed from its own files (harness.evaluation.verify), so a damaged
  or edited published record is never trusted.

Anything else returns the reason, and the reference is trained as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.errors import HarnessError
from harness.records.files import RECORD_FILE
from harness.records.provenance import PROTOCOL_VERSION, results_folder

PUBLISHED_DIR = Path("leaderboard") / "official"  # relative to the working directory, as the other defaults


def published_reference(roots: Sequence[Path], ds, reference, seeds: Sequence[int],
                        decoding: str) -> tuple[Path | None, str]:
    """(the record folder to use, "") or (None, why no published record can stand in for `reference` on `ds`)."""
    from harness.evaluation.verify import verify_record_folder

    reasons = []
    for root in roots:
        folder = results_folder(Path(root), ds.name, reference.name, decoding)
        if not (folder / RECORD_FILE).is_file():
            reasons.append(f"{root}: no record of {reference.name} on {ds.name}")
            continue
        try:
            verification = verify_record_folder(folder)
        except HarnessError as exc:
            reasons.append(f"{folder}: unusable ({exc})")
            continue
        if not verification.ok:
            reasons.append(f"{folder}: does not verify ({verification.mismatches[0]})")
            continue
        record = verification.record
        if record.dataset.fingerprint != ds.fingerprint:
            reasons.append(f"{folder}: measured on dataset fingerprint {record.dataset.fingerprint[7:19]}, "
                           f"this run's {ds.name} is {ds.fingerprint[7:19]}")
        elif record.protocol_version != PROTOCOL_VERSION:
            reasons.append(f"{folder}: protocol version {record.protocol_version}, this harness {PROTOCOL_VERSION}")
        elif record.params.decoding != decoding:
            reasons.append(f"{folder}: decoded with {record.params.decoding!r}, this run {decoding!r}")
        elif record.submission.config_hash != reference.config_hash:
            reasons.append(f"{folder}: made with another {reference.name} config (config_hash "
                           f"{record.submission.config_hash[7:19]}, now {reference.config_hash[7:19]})")
        elif not set(seeds) <= set(record.ok_seeds):
            reasons.append(f"{folder}: finished seeds {sorted(record.ok_seeds)}, this run needs {sorted(seeds)}")
        else:
            return folder, ""
    return None, "; ".join(reasons) or "no published results folder"
