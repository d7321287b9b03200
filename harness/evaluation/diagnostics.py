"""The paper's §7 diagnostics (H1 popularity, H2 representations, Table 8) of a submission against each task's
declared reference, computed when the record is assembled.

They compare two prediction lists from one seed: the lowest seed both finished, with the reference's rankings read
from its stored units (harness.protocol.units) on this very dataset, protocol version and decoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from harness.diagnostics.compute import TrainingCooccurrence, compute_diagnostics
from harness.evaluation.scoring import targets
from harness.metrics.measures import HEADLINE_MEASURE, Metric
from harness.metrics.scoring import score
from harness.protocol.decodings import DEFAULT as DEFAULT_DECODING
from harness.protocol.units import read_finished_unit, unit_dir
from harness.records.provenance import PROTOCOL_VERSION, results_folder


def diagnostics(*, sub, ds, decoding: str, out_dir: Path, ok_units, params: dict[str, Any],
                reference_folders: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """{task: diagnostics of this submission against its reference} for each task where both rankings exist."""
    out: dict[str, Any] = {}
    if not sub.references or not ok_units:
        return out
    train = cooc = None
    k = params["headline_k"]
    headline = Metric(HEADLINE_MEASURE, k, "all")
    for task, reference in sorted(sub.references.items()):
        for unit in ok_units:  # sorted by seed
            folder = (reference_folders or {}).get(reference) or results_folder(out_dir, ds.name, reference, decoding)
            ref_rankings = reference_rankings(folder, ds, unit.seed, task, decoding)
            if ref_rankings is None or ref_rankings.shape != unit.rankings[task].shape:
                continue
            if train is None:
                train = ds.train_view()
                cooc = TrainingCooccurrence(train)
            held_out = targets(ds, task)
            head = ds.catalogue().head(task)
            mine, theirs = (score(rankings, held_out.rel_offsets, held_out.rel_items, head, [k], [HEADLINE_MEASURE])
                            [headline] for rankings in (unit.rankings[task], ref_rankings))
            requests = ds.rec_requests("test") if task == "rec" else ds.search_requests("test")
            result = compute_diagnostics(
                train, task, unit.rankings[task], ref_rankings, requests, held_out.rel_offsets, held_out.rel_items,
                mine, theirs, alpha=params["alpha"], cooccurrence=cooc,
            )
            result.update({"reference": reference, "seed": unit.seed})
            out[task] = result
            break
    return out


def reference_rankings(record_folder: Path, ds, seed: int, task: str, decoding: str):
    """The reference's stored test rankings for one seed (its record folder's units/seed<k>), if it finished that
    unit on this very dataset, protocol version and decoding; else None."""
    unit = read_finished_unit(unit_dir(record_folder, seed), [task])
    if unit is None:
        return None
    key = unit.key
    if key.get("fingerprint") != ds.fingerprint or key.get("protocol_version") != PROTOCOL_VERSION:
        return None
    if key.get("decoding", DEFAULT_DECODING) != decoding:
        return None
    return unit.rankings[task]
