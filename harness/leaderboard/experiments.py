"""Experiment summaries on the leaderboard: read and validate `experiment.json`, and lay it out as a page.

`python -m harness experiment run NAME --out DIR` leaves ordinary result records under DIR/results/, its
figures under DIR/figures/ and a summary, DIR/experiment.json (format: docs/leaderboard.md, version 1):
what of the paper it reproduces, how to rerun it, a table (columns in order, rows of scalars, a row's
`significant` flag for the paper's ‡ and `record`, the path of its record.json), figures and notes.

A summary that cannot be used (unknown kind or version, a missing key, a wrong type, a figure that is not
an existing .svg/.png file inside the experiment's folder) is skipped with a message naming the file and
the key, like a bad record. Nothing in a summary is trusted as markup: every string goes through the
templates' autoescaping and figures are embedded with <img>, so a script inside an SVG never runs.
"""

from __future__ import annotations

import functools
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import jsonschema

from harness.errors import HarnessError
from harness.leaderboard.views import FigureCopy, FigureFinder

EXPERIMENT_FILE = "experiment.json"
EXPERIMENT_KIND = "jsr-harness experiment"
EXPERIMENT_VERSION = 1
EXPERIMENT_FIGURE_SUFFIXES = (".svg", ".png")
EXPERIMENTS_FOLDER = "experiments"  # the pages: experiments/index.html, experiments/<slug>.html, figures below

_TEXT = {"type": "string", "minLength": 1}
# JSON Schema (draft 2020-12) of version 1. Kept here as data rather than a file beside the templates:
# the leaderboard is its only reader, and the writer (harness/experiments/summary.py) is tested against it.
EXPERIMENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "jsr-harness experiment summary, version 1",
    "type": "object",
    "required": ["kind", "version", "name", "title", "paper", "description", "command", "columns", "rows",
                 "figures", "notes", "harness_version"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": EXPERIMENT_KIND},
        "version": {"const": EXPERIMENT_VERSION},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$"},  # file-safe
        "title": _TEXT,
        "paper": {"type": "string"},
        "description": {"type": "string"},
        "command": _TEXT,
        "columns": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "required": ["key", "label"], "additionalProperties": False,
                      "properties": {"key": _TEXT, "label": {"type": "string"}}},
        },
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                # null: not tested / no record (the writer turns undefined values into null)
                "properties": {"significant": {"type": ["boolean", "null"]},
                               "record": {"type": ["string", "null"], "minLength": 1}},
                "additionalProperties": {"type": ["string", "integer", "number", "null"]},
            },
        },
        "figures": {
            "type": "array",
            "items": {"type": "object", "required": ["file", "alt"], "additionalProperties": False,
                      "properties": {"file": _TEXT, "alt": _TEXT}},
        },
        "notes": {"type": "array", "items": {"type": "string"}},
        "harness_version": {"type": "string"},
        # Optional: the column whose value a row's "significant" marks (default: the first column holding a
        # float in some row, e.g. R@10 rather than a sample size or cap).
        "metric_key": _TEXT,
    },
}


@dataclass(frozen=True)
class LoadedExperiment:
    """One validated experiment.json. `path`: the file relative to the records root; `folder`: its folder
    relative to the root ("" at the root itself); `source_folder`: that folder on disk (figures)."""

    path: str
    folder: str
    source_folder: Path
    data: dict

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def title(self) -> str:
        return self.data["title"]

    def record_path(self, row_record: str) -> str | None:
        """A row's "record" (relative to experiment.json) as a path relative to the records root, the form
        LoadedRecord.path has; None if it leads out of the root."""
        joined = posixpath.normpath(posixpath.join(self.folder or ".", row_record))
        return None if joined == ".." or joined.startswith("../") else joined


# --- reading and validating -----------------------------------------------------------------------


def read_experiment(path: Path, root: Path) -> LoadedExperiment:
    """Parse and validate one experiment.json under `root`; HarnessError "<file>: <json path>: <why>"."""
    rel = path.relative_to(root).as_posix()
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{rel}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HarnessError(f"{rel}: cannot read the experiment summary ({exc})") from None
    validate_experiment(data, source=rel, folder=path.parent)
    folder = path.parent.relative_to(root).as_posix()
    return LoadedExperiment(rel, "" if folder == "." else folder, path.parent, data)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed (undefined numbers are written as null)")


def validate_experiment(data: Any, *, source: str, folder: Path) -> None:
    """Raise HarnessError naming `source` and the key at fault on the first problem (counting the rest).

    Checked in order: it is an object of this kind and version; the schema; then what a schema cannot say
    (unique column keys, metric_key names a column, every figure an existing .svg/.png inside `folder`)."""
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: $: an experiment summary must be a JSON object, got {type(data).__name__}")
    _check_kind_and_version(data, source)
    errors = list(_validator().iter_errors(data))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise HarnessError(f"{source}: {best.json_path}: {best.message}{more}")
    problems = list(_consistency_problems(data, folder))
    if problems:
        key, message = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise HarnessError(f"{source}: {key}: {message}{more}")


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(EXPERIMENT_SCHEMA)
    return jsonschema.Draft202012Validator(EXPERIMENT_SCHEMA)


def _check_kind_and_version(data: dict, source: str) -> None:
    """Another kind of JSON file, or another version of this one, is said as such before any schema detail."""
    kind = data.get("kind")
    if "kind" in data and kind != EXPERIMENT_KIND:
        raise HarnessError(f"{source}: $.kind: {kind!r} is not {EXPERIMENT_KIND!r}: not an experiment summary")
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version != EXPERIMENT_VERSION:
        advice = "upgrade the harness" if version > EXPERIMENT_VERSION else "rerun the experiment with this harness"
        raise HarnessError(f"{source}: $.version: the summary is version {version}; this harness reads version "
                           f"{EXPERIMENT_VERSION}: {advice}")


def _consistency_problems(data: dict, folder: Path) -> Iterator[tuple[str, str]]:
    keys = [column["key"] for column in data["columns"]]
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key in seen:
            yield f"$.columns[{i}].key", f"{key!r} names an earlier column too"
        seen.add(key)
    if "metric_key" in data and data["metric_key"] not in seen:
        yield "$.metric_key", f"{data['metric_key']!r} is not one of the column keys {keys}"
    for i, row in enumerate(data["rows"]):
        if row.get("record") is not None and PurePosixPath(row["record"]).is_absolute():
            yield f"$.rows[{i}].record", f"{row['record']!r} is not a path relative to experiment.json"
    for i, figure in enumerate(data["figures"]):
        problem = _figure_problem(figure["file"], folder)
        if problem:
            yield f"$.figures[{i}].file", problem


def _figure_problem(file: str, folder: Path) -> str | None:
    """Why `file` cannot be shown as this experiment's figure, or None. A path that leads out of the folder
    is refused even if it exists: a summary from someone else must not pull other files into the site."""
    if PurePosixPath(file).is_absolute():
        return f"{file!r} is not a path relative to the experiment folder"
    if not file.lower().endswith(EXPERIMENT_FIGURE_SUFFIXES):
        return f"{file!r} is not an .svg or .png file"
    base = folder.resolve()
    source = (base / file).resolve()
    if not source.is_relative_to(base):
        return f"{file!r} leads out of the experiment folder"
    if not source.is_file():
        return f"{file!r}: no such file in the experiment folder"
    return None


# --- page values ----------------------------------------------------------------------------------


@dataclass
class ExperimentCell:
    text: str  # as shown: "0.842", "100%", "—"
    sort_value: str  # data-sort for the page's sorting script ("" sorts last)
    numeric: bool = False  # in a column of numbers: aligned right
    significant: bool = False
    title: str = ""  # tooltip: the full value where the shown one is rounded


@dataclass
class RecordLink:
    """A row's record: `href` (site-root-relative) when the build used that record, else None and `text`
    says why it is not linked."""

    path: str  # as the summary wrote it
    href: str | None
    text: str


@dataclass
class ExperimentRow:
    cells: list[ExperimentCell]
    record: RecordLink | None


@dataclass
class ExperimentView:
    loaded: LoadedExperiment
    slug: str
    columns: list[tuple[str, bool]]  # (label, holds text): text columns sort A to Z, others as numbers
    rows: list[ExperimentRow]
    mark_label: str | None  # the column the ‡ goes on, when any row says whether it is significant
    figures: list[tuple[str, str, str]]  # (src relative to the page, alt text, file as named)
    copies: list[FigureCopy] = field(default_factory=list)

    @property
    def page(self) -> str:
        return experiment_page(self.slug)

    @property
    def has_records(self) -> bool:
        return any(row.record is not None for row in self.rows)


def experiment_page(slug: str) -> str:
    return f"{EXPERIMENTS_FOLDER}/{slug}.html"


def experiment_ids(experiments: list[LoadedExperiment]) -> dict[str, str]:
    """{experiment.json path: the name its slug is made from}: the name, or, when two experiments in
    different folders share it, the name and the folder (both are shown, told apart by folder)."""
    counts: dict[str, int] = {}
    for e in experiments:
        counts[e.name] = counts.get(e.name, 0) + 1
    return {e.path: e.name if counts[e.name] == 1 else f"{e.name}@{e.folder or '.'}" for e in experiments}


def build_experiment_view(loaded: LoadedExperiment, slug: str, link_record: Callable[[str | None], tuple[str | None, str]]) -> ExperimentView:
    """The page's values. `link_record(root-relative record path or None)` -> (href or None, link text)."""
    data = loaded.data
    columns = data["columns"]
    mark_key = _mark_key(data)
    text_columns = [any(isinstance(row.get(c["key"]), str) for row in data["rows"]) for c in columns]
    rows = []
    for row in data["rows"]:
        cells = [_cell(row.get(c["key"]), c["label"], not text) for c, text in zip(columns, text_columns)]
        if row.get("significant"):
            cells[[c["key"] for c in columns].index(mark_key)].significant = True
        record = None
        if row.get("record") is not None:
            href, text = link_record(loaded.record_path(row["record"]))
            record = RecordLink(row["record"], href, text)
        rows.append(ExperimentRow(cells, record))
    finder = FigureFinder(loaded.source_folder, f"{EXPERIMENTS_FOLDER}/{slug}")
    figures = []
    for figure in data["figures"]:
        target = finder.find(figure["file"])  # validated: always inside the folder and present
        figures.append((target[len(EXPERIMENTS_FOLDER) + 1:], figure["alt"], figure["file"]))
    has_flags = any(row.get("significant") is not None for row in data["rows"])
    mark_label = next(c["label"] for c in columns if c["key"] == mark_key) if has_flags else None
    return ExperimentView(loaded, slug, [(c["label"], t) for c, t in zip(columns, text_columns)], rows, mark_label,
                          figures, copies=finder.copies)


def _mark_key(data: dict) -> str:
    """The column a row's ‡ goes on: `metric_key`; else the first column holding a float in some row (the
    metric, not a count or a cap); else the last column."""
    if "metric_key" in data:
        return data["metric_key"]
    for column in data["columns"]:
        if any(isinstance(row.get(column["key"]), float) for row in data["rows"]):
            return column["key"]
    return data["columns"][-1]["key"]


def format_number(value: int | float) -> str:
    """Like the leaderboard's tables: 3 decimals; ints with thousands separators; a non-zero value that
    would show as 0.000 (a small p-value) in scientific notation instead."""
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 0.0005:
        return f"{value:.1e}"
    return f"{value:,.3f}"


def _cell(value: Any, label: str, numeric_column: bool) -> ExperimentCell:
    if value is None:
        return ExperimentCell("—", "", numeric_column, title=f"{label}: no value")
    if isinstance(value, str):
        return ExperimentCell(value, value.casefold(), numeric_column)
    text = format_number(value)
    rounded = isinstance(value, float) and repr(value) != text
    return ExperimentCell(text, repr(value), numeric_column, title=f"{label} = {value!r}" if rounded else "")
