"""Units: one (submission, dataset, seed) trained and asked for its test rankings, stored as soon as it finishes.

    <results folder>/units/seed<k>/unit.json            {"key", "status", "error", "timings", "adapter_info"}
                                  /rankings.npz         {task: int [n_requests, depth]} (status "ok" only)
                                  /item_embeddings.npy  what Adapter.item_embeddings() gave, if anything
                                  /item_embeddings_initial.npy   Adapter.initial_item_embeddings(), if anything

unit.json is written last, atomically: its presence with status "ok" is what marks a unit finished. The runner
reuses a finished unit whose key matches (harness.runner); the record writer reads a reference's finished units for
the §7 diagnostics (harness.evaluation.diagnostics). Both read through `read_finished_unit`, the one reader.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from harness.io import atomic_path, write_json_atomic

EMBEDDINGS_FILE = "item_embeddings.npy"
INITIAL_EMBEDDINGS_FILE = "item_embeddings_initial.npy"
UNIT_FILE = "unit.json"
RANKINGS_FILE = "rankings.npz"


@dataclass
class UnitOutcome:
    seed: int
    status: str  # "ok" | "failed"
    error: dict[str, str] | None
    timings: dict[str, Any]
    adapter_info: dict[str, Any]
    rankings: dict[str, np.ndarray] = field(default_factory=dict)
    item_embeddings: np.ndarray | None = None  # what Adapter.item_embeddings() gave, if anything
    initial_item_embeddings: np.ndarray | None = None  # Adapter.initial_item_embeddings(): the same rows before training
    key: dict[str, Any] | None = None  # what it was computed from (unit.json's "key"), when read back from disk


def is_writing_rank() -> bool:
    """Under the `deepspeed` launcher every rank runs the whole harness (training is collective); only global rank 0
    writes units, records and the site, so two ranks never race on one file. A plain process has no RANK: it writes."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def unit_dir(results_folder: Path, seed: int) -> Path:
    return Path(results_folder) / "units" / f"seed{seed}"


def read_finished_unit(folder: Path, tasks: Iterable[str]) -> UnitOutcome | None:
    """The unit stored in `folder` if it finished and its rankings of every task in `tasks` read back; else None
    (missing, failed, unreadable or damaged: the caller recomputes or goes without, never trusts it)."""
    try:
        meta = json.loads((folder / UNIT_FILE).read_text())
        if meta.get("status") != "ok":
            return None
        with np.load(folder / RANKINGS_FILE) as npz:
            rankings = {task: npz[task] for task in tasks}
        return UnitOutcome(meta["key"]["seed"], "ok", None, meta["timings"], meta["adapter_info"], rankings,
                           key=meta["key"])
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return None


def store_unit(folder: Path, key: dict[str, Any], unit: UnitOutcome) -> None:
    """Write the unit's files into `folder`, unit.json last (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    if unit.status == "ok":
        with atomic_path(folder / RANKINGS_FILE, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **unit.rankings)
        for name, array in ((EMBEDDINGS_FILE, unit.item_embeddings), (INITIAL_EMBEDDINGS_FILE, unit.initial_item_embeddings)):
            if array is not None:
                with atomic_path(folder / name, suffix=".npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, array)
    write_json_atomic(
        folder / UNIT_FILE,
        {"key": key, "status": unit.status, "error": unit.error, "timings": unit.timings,
         "adapter_info": unit.adapter_info},
    )
