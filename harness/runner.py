"""The one retrieval protocol, end to end: train each (dataset, seed) unit, ask for rankings, hand them to the
evaluation stage, which scores them and writes the record.

Data flow for one submission on one dataset (each stage a package):

    data:        CompiledDataset --train_view()--> adapter.fit
    protocol:                    --*_requests('test')--> adapter.retrieve --check_rankings--> rankings (units)
    evaluation:  rankings + held-out targets --metrics.score--> per-query values, significance, diagnostics
    records:     --> record folder (record.json, per_query.parquet, TREC runs)

A unit (dataset, seed) is stored as soon as it finishes (harness.protocol.units), so a repeated or interrupted run
recomputes nothing that finished; failed units are retried. The record is re-assembled from the stored units on
every run, which also picks up reference records that appeared since.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from tqdm import tqdm

from harness.data.spec import DatasetSpec
from harness.data.store import CompiledDataset
from harness.data.views import Task
from harness.errors import HarnessError
from harness.evaluation.record import assemble_and_write
from harness.io import remove_stale_temporaries
from harness.protocol.checks import check_rankings
from harness.protocol.decodings import DEFAULT as DEFAULT_DECODING, check_decoding
from harness.protocol.submission import Submission
from harness.protocol.units import UnitOutcome, is_writing_rank, read_finished_unit, store_unit, unit_dir
from harness.records.files import recover_record_folder
from harness.records.provenance import PROTOCOL_VERSION, results_folder
from harness.settings import cache_dir

REQUEST_BATCH = 1024  # requests handed to retrieve() at a time; adapters batch further inside


@dataclass
class DatasetOutcome:
    dataset: str
    folder: Path
    units: list[UnitOutcome]

    @property
    def failed(self) -> list[UnitOutcome]:
        return [u for u in self.units if u.status != "ok"]


class Runner:
    def __init__(
        self,
        submission: Submission,
        *,
        out_dir: Path,
        cache_dir: Path | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        decoding: str = DEFAULT_DECODING,
        reference_folders: Mapping[str, Mapping[str, Path]] | None = None,
    ) -> None:
        self.sub = submission
        # {dataset name: {reference: record folder}}: references read from published records, not from out_dir
        self.reference_folders = {k: dict(v) for k, v in (reference_folders or {}).items()}
        self.decoding = check_decoding(decoding)
        self.out_dir = Path(out_dir)
        self.cache_dir = cache_dir
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._adapter_cls: type | None = None  # imported once, by plan()

    # ---- the whole run ------------------------------------------------------------------------------
    def plan(self, datasets: list[str] | None = None, seeds: list[int] | None = None) -> tuple[list[str], list[int]]:
        """(canonical dataset names, seeds) this run would use, checked before any work: every dataset compiled (or
        an error saying how to build it), the seeds distinct and >= 0, the adapter importable."""
        names = [str(DatasetSpec.parse(d)) for d in (datasets or self.sub.datasets)]
        seeds = list(seeds if seeds is not None else self.sub.seeds)
        bad = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or s < 0]
        if bad or len(set(seeds)) != len(seeds) or not seeds:
            raise HarnessError(f"seeds {seeds}: give distinct integers >= 0")
        missing = []
        for name in names:
            try:
                CompiledDataset.open(name, cache_dir=self.cache_dir).close()
            except HarnessError as exc:
                missing.append(f"  {name}: {exc}")
        if missing:
            raise HarnessError("dataset(s) not available:\n" + "\n".join(missing))
        if self._adapter_cls is None:
            self._adapter_cls = self.sub.adapter_class()  # import errors surface before training anything
            self._adapter_cls.check_config(self.sub.params, tasks=frozenset(self.sub.tasks),
                                           submission_dir=self.sub.folder)  # and the adapter's [params]
        return names, seeds

    def run(self, datasets: list[str] | None = None, seeds: list[int] | None = None) -> list[DatasetOutcome]:
        names, seeds = self.plan(datasets, seeds)
        outcomes = []
        for name in names:
            with CompiledDataset.open(name, cache_dir=self.cache_dir) as ds:
                outcomes.append(self._run_dataset(ds, seeds, self._adapter_cls))
        return outcomes

    def _run_dataset(self, ds, seeds: list[int], adapter_cls) -> DatasetOutcome:
        folder = results_folder(self.out_dir, ds.name, self.sub.name, self.decoding)
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        units = []
        if is_writing_rank():
            recover_record_folder(folder)  # units a killed record writer had moved aside come back first
        for seed in seeds:
            if is_writing_rank():
                remove_stale_temporaries(unit_dir(folder, seed))  # what a killed run was writing
            unit = self._load_unit(folder, ds, seed)
            if unit is not None:
                self.log(f"{self._tag(ds, seed)} finished earlier, reusing it")
            else:
                unit = self._run_unit(ds, seed, adapter_cls, folder)
            units.append(unit)
        if not is_writing_rank():
            return DatasetOutcome(ds.name, folder, units)
        assemble_and_write(
            sub=self.sub,
            ds=ds,
            folder=folder,
            units=units,
            decoding=self.decoding,
            out_dir=self.out_dir,
            started_at=started.isoformat(timespec="seconds"),
            total_s=time.perf_counter() - t0,
            reference_folders=self.reference_folders.get(ds.name),
        )
        return DatasetOutcome(ds.name, folder, units)

    # ---- one unit -----------------------------------------------------------------------------------
    def _tag(self, ds, seed: int) -> str:
        decoding = f" | {self.decoding}" if self.decoding != DEFAULT_DECODING else ""
        return f"[{self.sub.name} | {ds.name} | seed {seed}{decoding}]"

    def workdir(self, ds, seed: int) -> Path:
        """The adapter's private folder: checkpoints survive interruption; a changed config starts afresh. Not keyed
        by the decoding: a second decoding of the same submission reuses the finished training."""
        key = self.sub.config_hash.split(":")[-1][:12]
        return cache_dir(self.cache_dir) / "work" / f"{self.sub.name}-{key}" / DatasetSpec.parse(ds.name).slug / f"seed{seed}"

    def _unit_key(self, ds, seed: int) -> dict[str, Any]:
        key = {
            "submission": self.sub.name,
            "config_hash": self.sub.config_hash,
            "dataset": ds.name,
            "fingerprint": ds.fingerprint,
            "protocol_version": PROTOCOL_VERSION,
            "seed": seed,
        }
        if self.decoding != DEFAULT_DECODING:  # the default's key stays as before decodings existed: units stay reusable
            key["decoding"] = self.decoding
        return key

    def _load_unit(self, folder: Path, ds, seed: int) -> UnitOutcome | None:
        unit = read_finished_unit(unit_dir(folder, seed), self.sub.tasks)
        return unit if unit is not None and unit.key == self._unit_key(ds, seed) else None

    def _run_unit(self, ds, seed: int, adapter_cls, folder: Path) -> UnitOutcome:
        tag = self._tag(ds, seed)
        timings: dict[str, Any] = {}
        adapter_info: dict[str, Any] = {}
        rankings: dict[str, np.ndarray] = {}
        depth = ds.headline_k
        try:
            workdir = self.workdir(ds, seed)
            workdir.mkdir(parents=True, exist_ok=True)
            adapter = adapter_cls(
                params=self.sub.params,
                seed=seed,
                workdir=workdir,
                tasks=frozenset(self.sub.tasks),
                submission_dir=self.sub.folder,
            )
            adapter.decoding = self.decoding  # read by generative adapters at retrieve() (Adapter.decoding)
            self.log(f"{tag} training")
            t = time.perf_counter()
            adapter.fit(ds.train_view())
            timings["fit_s"] = round(time.perf_counter() - t, 3)
            timings["retrieve_s"] = {}
            n_items = len(ds.catalogue())
            for task in self.sub.tasks:
                t = time.perf_counter()
                rankings[task] = self._retrieve_all(adapter, ds, task, depth, n_items, tag)
                timings["retrieve_s"][task] = round(time.perf_counter() - t, 3)
            adapter_info = _jsonable(adapter.describe())
            embeddings = _checked_embeddings(adapter.item_embeddings(), n_items, self.sub.adapter)
            initial = None
            if embeddings is not None:
                initial = _checked_embeddings(adapter.initial_item_embeddings(), n_items, self.sub.adapter,
                                              "initial_item_embeddings()")
                if initial is not None and initial.shape != embeddings.shape:
                    raise HarnessError(f"{self.sub.adapter}: initial_item_embeddings() has shape {initial.shape}, "
                                       f"item_embeddings() {embeddings.shape}: they must be the same rows")
            outcome = UnitOutcome(seed, "ok", None, timings, adapter_info, rankings, embeddings, initial)
            self.log(f"{tag} done in {timings['fit_s'] + sum(timings['retrieve_s'].values()):.1f} s")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing unit is recorded and the run goes on
            error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
            self.log(f"{tag} FAILED: {type(exc).__name__}: {exc}")
            outcome = UnitOutcome(seed, "failed", error, timings, adapter_info, {})
        self._store_unit(folder, ds, outcome)
        return outcome

    def _retrieve_all(self, adapter, ds, task: Task, depth: int, n_items: int, tag: str) -> np.ndarray:
        requests = ds.rec_requests("test") if task == "rec" else ds.search_requests("test")
        parts = []
        bar = _progress(total=len(requests), desc=f"{tag} {task}", enabled=self.progress)
        for start in range(0, len(requests), REQUEST_BATCH):
            batch = requests.select(slice(start, start + REQUEST_BATCH))
            returned = adapter.retrieve(task, batch, depth)
            parts.append(
                check_rankings(
                    returned, requests=batch, task=task, k=depth, n_items=n_items, adapter=self.sub.adapter
                )
            )
            bar.update(len(batch))
        bar.close()
        return np.concatenate(parts) if parts else np.full((0, depth), -1, dtype=np.int64)

    def _store_unit(self, folder: Path, ds, unit: UnitOutcome) -> None:
        if is_writing_rank():
            store_unit(unit_dir(folder, unit.seed), self._unit_key(ds, unit.seed), unit)


# ---- small helpers ------------------------------------------------------------------------------------

def _checked_embeddings(value, n_items: int, adapter: str, method: str = "item_embeddings()") -> np.ndarray | None:
    """An adapter's item vectors as float32 [n_items, dim], or a clear error naming the adapter."""
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n_items or array.shape[1] < 1:
        raise HarnessError(
            f"{adapter}: {method} must return [n_items={n_items}, dim], got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise HarnessError(f"{adapter}: {method} holds NaN or infinite values")
    return array


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr, mininterval=1.0)


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so numpy scalars and paths become plain values (and bad values fail here)."""
    return json.loads(json.dumps(obj, default=_json_default, sort_keys=True))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
