"""One result record, validated once, with typed read access: what every reader outside harness.records uses
instead of indexing the record's JSON.

    record = ResultRecord.read(path)                # or read_record_folder(folder), from_dict(data, source=...)
    record.submission.name, record.dataset.fingerprint, record.params.headline_k, record.params.decoding
    record.metric("rec", "R@10")                    # MetricValue(mean, n, per_seed), or None when not measured
    record.to_dict()                                # a deep copy, for writing or JSON

Records of every 1.x schema minor load, and the defaults for what older ones lack live here: schema 1.0 has no
`lists` (empty here) and no `protocol.params.decoding` (the paper's, "diverse-beam": protocol.decodings states the
rule), schemas before 1.2 no `measures` (Recall alone); a submission that names no `kind` is "other". A record never changes once read: accessors give immutable values (frozen dataclasses,
tuples, read-only mappings) or, for free-form JSON objects (configs, adapter params and info, dataset stats,
diagnostics), a fresh copy.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from harness.io import canonical_json
from harness.metrics.measures import HEADLINE_MEASURE
from harness.protocol.decodings import params_decoding
from harness.records.validate import read_record, validate_record

DEFAULT_KIND = "other"


def _copy_json(value: Any) -> Any:
    """A copy of JSON data (dicts, lists, scalars). copy.deepcopy does the same with a memo for shared and cyclic
    objects, which JSON cannot hold: this is several times faster, and the leaderboard copies thousands."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def _per_seed(values: Mapping[str, Any]) -> Mapping[int, Any]:
    """A per_seed object ({"0": value}; the schema allows only canonical integer keys) keyed by seed."""
    return MappingProxyType({int(seed): value for seed, value in values.items()})


@dataclass(frozen=True)
class SubmissionInfo:
    name: str
    display_name: str
    kind: str  # "other" when the record names none
    adapter: str | None
    tasks: tuple[str, ...]
    config_hash: str
    references: Mapping[str, str]  # task -> the submission it is compared against
    _raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def params(self) -> dict:
        """The adapter's [params] as recorded ({} when absent); a copy."""
        return _copy_json(self._raw.get("params", {}))

    @property
    def config(self) -> dict:
        """The whole submission config file as recorded ({} when absent); a copy."""
        return _copy_json(self._raw.get("config", {}))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    fingerprint: str
    headline_k: int | None
    format_version: int | None
    source: str | None
    _raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def stats(self) -> dict:
        """The dataset's Table 3 row ({} when not recorded); a copy."""
        return _copy_json(self._raw.get("stats", {}))

    @property
    def params(self) -> dict:
        return _copy_json(self._raw.get("params", {}))

    @property
    def notes(self) -> dict:
        return _copy_json(self._raw.get("notes", {}))

    def to_dict(self) -> dict:
        """The whole `dataset` block as recorded (fields this harness does not name included); a copy."""
        return _copy_json(dict(self._raw))


@dataclass(frozen=True)
class ProtocolParams:
    ks: tuple[int, ...]
    headline_k: int
    test: str
    alpha: float
    correction: str
    decoding: str  # the paper's ("diverse-beam") for records written before decodings were declared (schema 1.0)
    depth: int | None
    head_fraction: float | None
    seed_aggregation: str | None
    _raw: Mapping[str, Any] = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        """The parameters as recorded: no default filled in, parameters this harness does not name kept; a copy."""
        return _copy_json(dict(self._raw))


@dataclass(frozen=True)
class MetricValue:
    mean: float | None  # mean over seeds of the per-seed means; None when no query is in the segment
    n: int  # queries in the metric's segment
    per_seed: Mapping[int, float | None]


@dataclass(frozen=True)
class ListStats:
    depth: int  # the K every list was asked for
    mean_distinct_items: float | None
    per_seed: Mapping[int, float | None]


@dataclass(frozen=True)
class SignificanceRow:
    """One paired test against the task's reference (PairedTTest.to_dict() plus the reference)."""

    metric: str
    n: int
    mean: float | None
    reference_mean: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    t: float | None
    p: float | None
    alpha: float
    p_holm: float | None
    significant: bool | None
    reference: str
    reference_fingerprint: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ComparisonNote:
    """What the record writer noted about a task's comparison (diagnostics.comparison_notes)."""

    task: str | None  # None when the note names no task (diagnostics are free-form in schema 1)
    note: str
    missing: bool  # the reference had no usable record


@dataclass(frozen=True)
class UnitError:
    type: str
    message: str
    traceback: str | None


@dataclass(frozen=True)
class Unit:
    seed: int
    status: str  # "ok" | "failed"
    error: UnitError | None
    fit_s: float | None
    retrieve_s: Mapping[str, float]  # task -> seconds
    _raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def timings(self) -> dict:
        """Every timing as recorded ({} when absent); a copy."""
        return _copy_json(self._raw.get("timings", {}))

    @property
    def adapter_info(self) -> dict:
        """What the adapter reported about itself ({} when absent); a copy."""
        return _copy_json(self._raw.get("adapter_info", {}))


@dataclass(frozen=True)
class Timing:
    started_at: str  # ISO-8601 with its offset, as recorded
    finished_at: str
    total_s: float


@dataclass(frozen=True)
class Files:
    """File names inside the record's folder."""

    per_query: str | None
    runs: Mapping[str, tuple[str, ...]]  # task -> one TREC run per seed
    qrels: Mapping[str, str]  # task -> its TREC qrels
    heads: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # task -> head item keys (1.3)

    def names(self) -> set[str]:
        names = {name for task_runs in self.runs.values() for name in task_runs} | set(self.qrels.values())
        names |= set(self.heads.values())
        if self.per_query is not None:
            names.add(self.per_query)
        return names


@dataclass(frozen=True, eq=False)
class ResultRecord:
    """A validated result record. Build it with `read` or `from_dict`, never from an unvalidated dict.

    Equal when their contents are equal (wherever they were read from)."""

    _data: dict = field(repr=False)
    source: str  # where it was read from: error messages name it

    @classmethod
    def read(cls, path: str | Path) -> ResultRecord:
        """Parse and validate a record.json; HarnessError naming the file (and line) on any problem."""
        return cls(read_record(path), str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> ResultRecord:
        """Validate `data` (HarnessError "<source>: <json path>: ..." if invalid) and keep a copy of it."""
        validate_record(data, source=source)
        return cls(_copy_json(data), source)

    def to_dict(self) -> dict:
        """The record as JSON data; a deep copy."""
        return _copy_json(self._data)

    def to_json(self) -> str:
        """The record as record.json holds it (harness.io.canonical_json: sorted keys, fixed spacing)."""
        return canonical_json(self._data)

    def without_files(self) -> dict:
        """to_dict() without the `files` block: the record to write into another folder, where
        write_record_folder fills `files` in from the files it writes there."""
        data = self.to_dict()
        del data["files"]
        return data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultRecord) and self._data == other._data

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):  # pickle the data only (the cached views hold read-only mappings, which do not pickle)
        return type(self), (self._data, self.source)

    # ---- provenance ------------------------------------------------------------------------------------
    @property
    def schema_version(self) -> str:
        return self._data["schema_version"]

    @property
    def harness_version(self) -> str:
        return self._data["harness"]["version"]

    @property
    def git_commit(self) -> str | None:
        return self._data["harness"]["git_commit"]

    @property
    def protocol_version(self) -> str:
        return self._data["protocol"]["version"]

    @functools.cached_property  # a frozen dataclass still has a __dict__ for the cache
    def params(self) -> ProtocolParams:
        raw = self._data["protocol"]["params"]
        return ProtocolParams(
            ks=tuple(raw["ks"]), headline_k=raw["headline_k"], test=raw["test"], alpha=raw["alpha"],
            correction=raw["correction"], decoding=params_decoding(raw), depth=raw.get("depth"),
            head_fraction=raw.get("head_fraction"), seed_aggregation=raw.get("seed_aggregation"), _raw=raw,
        )

    @functools.cached_property
    def dataset(self) -> DatasetInfo:
        raw = self._data["dataset"]
        return DatasetInfo(raw["name"], raw["fingerprint"], raw.get("headline_k"), raw.get("format_version"),
                           raw.get("source"), _raw=raw)

    @functools.cached_property
    def submission(self) -> SubmissionInfo:
        raw = self._data["submission"]
        return SubmissionInfo(
            name=raw["name"], display_name=raw["display_name"], kind=raw.get("kind") or DEFAULT_KIND,
            adapter=raw.get("adapter"), tasks=tuple(raw["tasks"]), config_hash=raw["config_hash"],
            references=MappingProxyType(dict(raw["references"])), _raw=raw,
        )

    @property
    def environment(self) -> Mapping[str, str | None]:
        """Versions of what produced the numbers (library -> version; None where it was not importable)."""
        return MappingProxyType(dict(self._data["environment"]))

    @functools.cached_property
    def timing(self) -> Timing:
        raw = self._data["timing"]
        return Timing(raw["started_at"], raw["finished_at"], raw["total_s"])

    @functools.cached_property
    def files(self) -> Files:
        raw = self._data["files"]
        return Files(raw["per_query"], MappingProxyType({task: tuple(names) for task, names in raw["runs"].items()}),
                     MappingProxyType(dict(raw["qrels"])), MappingProxyType(dict(raw.get("heads") or {})))

    # ---- seeds and units -------------------------------------------------------------------------------
    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self._data["seeds"])

    @functools.cached_property
    def units(self) -> tuple[Unit, ...]:
        units = []
        for raw in self._data["units"]:
            error = raw["error"]
            timings = raw.get("timings") or {}
            units.append(Unit(
                seed=raw["seed"], status=raw["status"],
                error=None if error is None else UnitError(error["type"], error["message"], error["traceback"]),
                fit_s=timings.get("fit_s"), retrieve_s=MappingProxyType(dict(timings.get("retrieve_s") or {})),
                _raw=raw,
            ))
        return tuple(units)

    @property
    def ok_seeds(self) -> tuple[int, ...]:
        """Seeds whose unit finished, in the record's order."""
        return tuple(unit.seed for unit in self.units if unit.ok)

    @property
    def failed_seeds(self) -> tuple[int, ...]:
        """Seeds whose unit failed, in the record's order."""
        return tuple(unit.seed for unit in self.units if not unit.ok)

    # ---- numbers -----------------------------------------------------------------------------------------
    @property
    def measures(self) -> tuple[str, ...]:
        """The measure codes the record holds values of, the headline first (schema 1.2); Recall alone before."""
        return tuple(self._data.get("measures") or (HEADLINE_MEASURE,))

    @functools.cached_property
    def metrics(self) -> Mapping[str, Mapping[str, MetricValue]]:
        """task -> metric name ("R@10/head") -> value; only the tasks the record has metrics for."""
        return MappingProxyType({
            task: MappingProxyType({
                name: MetricValue(value["mean"], value["n"], _per_seed(value["per_seed"]))
                for name, value in values.items()
            })
            for task, values in self._data["metrics"].items()
        })

    @property
    def metric_tasks(self) -> tuple[str, ...]:
        """The tasks the record has metrics for, in the record's order."""
        return tuple(self.metrics)

    def metric(self, task: str, name: str) -> MetricValue | None:
        """One metric of one task, None when the record has no such value."""
        return self.metrics.get(task, {}).get(name)

    @functools.cached_property
    def lists(self) -> Mapping[str, ListStats]:
        """task -> how many distinct items the returned lists hold (schema 1.1; empty for older records)."""
        return MappingProxyType({
            task: ListStats(stats["depth"], stats["mean_distinct_items"], _per_seed(stats["per_seed"]))
            for task, stats in (self._data.get("lists") or {}).items()
        })

    @functools.cached_property
    def significance(self) -> Mapping[str, tuple[SignificanceRow, ...]]:
        """task -> the paired tests against that task's reference (Holm-corrected across the record)."""
        return MappingProxyType({
            task: tuple(SignificanceRow(**row) for row in rows) for task, rows in self._data["significance"].items()
        })

    def significance_row(self, task: str, metric: str) -> SignificanceRow | None:
        """The test of `metric` (e.g. "R@10") for `task`, None when the record has none."""
        return next((row for row in self.significance.get(task, ()) if row.metric == metric), None)

    # ---- diagnostics -------------------------------------------------------------------------------------
    @property
    def diagnostics(self) -> dict:
        """The diagnostics as recorded, free-form in schema 1 ({} when absent); a copy."""
        return _copy_json(self._data.get("diagnostics") or {})

    @functools.cached_property
    def comparison_notes(self) -> tuple[ComparisonNote, ...]:
        """The record writer's notes on its comparisons (diagnostics.comparison_notes); malformed entries are left
        out (diagnostics are free-form, and a hostile record must not break a reader)."""
        notes = (self._data.get("diagnostics") or {}).get("comparison_notes")
        return tuple(
            ComparisonNote(note["task"] if isinstance(note.get("task"), str) else None, note["note"],
                           bool(note.get("missing")))
            for note in (notes if isinstance(notes, list) else [])
            if isinstance(note, dict) and isinstance(note.get("note"), str)
        )
