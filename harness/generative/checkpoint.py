"""Per-epoch training checkpoints in a unit's workdir: atomic, resumable, and never mixed across data.

Layout under the checkpoint folder:

    epoch-0003/                   one complete checkpoint (DeepSpeed's files + harness.json)
        mp_rank_00_model_states.pt, zero_pp_rank_0_mp_rank_00_optim_states.pt   (DeepSpeed's)
        harness.json              what it was trained on, the curve so far, the best epoch so far
    .partial/epoch-0004/          a checkpoint being written; renamed into place only once complete

A checkpoint counts only once `harness.json` is in it and it has been renamed out of `.partial/`, so a kill
at any moment leaves the previous complete checkpoint as the one to resume from. `harness.json` records the
dataset fingerprint, the tokenizer hash and a hash of the training setup; a checkpoint that disagrees on
any of them is refused with a HarnessError, never silently loaded into another run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import write_json_atomic

META_FILE = "harness.json"
PARTIAL = ".partial"
_TAG = re.compile(r"^epoch-(\d{4})$")


def epoch_tag(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


@dataclass(frozen=True)
class Identity:
    """What a checkpoint must agree with to be resumed from."""

    fingerprint: str  # the compiled dataset's fingerprint
    tokenizer_hash: str
    setup_hash: str  # hash of everything else that shapes the weights (backbone, hyperparameters, tasks, seed)


@dataclass
class CheckpointMeta:
    identity: Identity
    epoch: int
    curve: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    best_epoch: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["identity"] = asdict(self.identity)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "CheckpointMeta":
        return cls(Identity(**obj["identity"]), obj["epoch"], obj.get("curve", []), obj.get("best_epoch"))


def complete_epochs(root: Path) -> list[int]:
    """Epochs with a complete checkpoint under `root`, ascending."""
    if not root.is_dir():
        return []
    epochs = []
    for child in root.iterdir():
        m = _TAG.match(child.name)
        if m and (child / META_FILE).is_file():
            epochs.append(int(m.group(1)))
    return sorted(epochs)


def read_meta(root: Path, epoch: int) -> CheckpointMeta:
    path = root / epoch_tag(epoch) / META_FILE
    try:
        return CheckpointMeta.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise HarnessError(f"checkpoint {path}: unreadable ({exc}); delete {path.parent} to start afresh") from exc


def check_identity(meta: CheckpointMeta, expected: Identity, path: Path) -> None:
    """Refuse a checkpoint written for other data, another tokenizer or another training setup."""
    fields = (
        ("dataset fingerprint", meta.identity.fingerprint, expected.fingerprint),
        ("tokenizer hash", meta.identity.tokenizer_hash, expected.tokenizer_hash),
        ("training setup hash", meta.identity.setup_hash, expected.setup_hash),
    )
    for what, found, wanted in fields:
        if found != wanted:
            raise HarnessError(
                f"checkpoint {path} was written with {what} {found}, but this run has {wanted}: refusing to "
                f"resume from it (weights from another dataset, tokenizer or setup must not be mixed in). "
                f"Delete {path.parent} to train from scratch, or give this run its own workdir."
            )


def partial_dir(root: Path) -> Path:
    return root / PARTIAL


def clear_partial(root: Path, epoch: int) -> None:
    """Remove what an interrupted save of this epoch left behind (rank 0 only)."""
    shutil.rmtree(partial_dir(root) / epoch_tag(epoch), ignore_errors=True)


def commit(root: Path, meta: CheckpointMeta) -> Path:
    """Write harness.json into the finished partial checkpoint, then rename it into place (rank 0 only)."""
    tag = epoch_tag(meta.epoch)
    src, dest = partial_dir(root) / tag, root / tag
    write_json_atomic(src / META_FILE, meta.to_json())
    if dest.exists():  # a stale copy of this epoch (it can only be older): the new one replaces it
        shutil.rmtree(dest)
    os.replace(src, dest)
    return dest


def prune(root: Path, keep: set[int]) -> None:
    """Delete complete checkpoints not in `keep` (rank 0 only); the newest is never deleted."""
    epochs = complete_epochs(root)
    if not epochs:
        return
    keep = set(keep) | {epochs[-1]}
    for epoch in epochs:
        if epoch not in keep:
            # Move it out of sight first, so a kill mid-delete never leaves a half checkpoint that looks complete.
            doomed = partial_dir(root) / f"deleting-{epoch_tag(epoch)}"
            shutil.rmtree(doomed, ignore_errors=True)
            doomed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(root / epoch_tag(epoch), doomed)
            shutil.rmtree(doomed, ignore_errors=True)
