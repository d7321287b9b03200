"""The one validator every reader and writer of result records goes through.

Versioning (docs/result-format.md): `schema_version` is MAJOR.MINOR. A minor version only adds optional
fields; a major version changes or removes something. A reader accepts records of its own MAJOR; an
unknown field (which only a newer minor or a typo can produce) is rejected with a message saying which
schema the record claims, so an old harness never silently drops a field it does not understand.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import jsonschema

from harness.errors import HarnessError

SCHEMA_VERSION = "1.3"
SCHEMA_FILE = "result-record.v1.json"
_MAJOR, _MINOR = (int(part) for part in SCHEMA_VERSION.split("."))


def load_schema() -> dict:
    """The published JSON Schema (draft 2020-12) for this harness's records; a fresh copy each call."""
    return copy.deepcopy(_schema())


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    text = resources.files("harness.records").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_record(record: Any, *, source: str) -> None:
    """Raise HarnessError "<source>: <json path>: <message>" on the first problem found (and count the rest)."""
    if not isinstance(record, dict):
        raise HarnessError(f"{source}: $: a result record must be a JSON object, got {type(record).__name__}")
    claimed = _check_version(record, source)
    errors = sorted(_validator().iter_errors(record), key=jsonschema.exceptions.relevance)
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise HarnessError(f"{source}: {best.json_path}: {_explain(best, claimed)}{more}")
    problems = list(_consistency_problems(record))
    if problems:
        path, message = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise HarnessError(f"{source}: {path}: {message}{more}")


def read_record(path: str | Path) -> dict:
    """Parse and validate a record file; JSON errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such result record") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read the result record ({exc})") from None
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise HarnessError(f"{path}: not valid JSON: {exc}") from None
    validate_record(record, source=str(path))
    return record


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a result record (non-finite numbers are written as null)")


def _check_version(record: dict, source: str) -> tuple[int, int] | None:
    """The (major, minor) the record claims; a different major is an error of its own, before the schema."""
    version = record.get("schema_version")
    if version is None:
        return None  # the schema reports the missing field
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise HarnessError(
            f"{source}: $.schema_version: {version!r} is not of the form MAJOR.MINOR (e.g. {SCHEMA_VERSION!r})"
        )
    major, minor = int(parts[0]), int(parts[1])
    if major != _MAJOR:
        advice = "upgrade the harness" if major > _MAJOR else "re-run the submission with this harness"
        raise HarnessError(
            f"{source}: $.schema_version: the record uses schema {version}; this harness reads schema "
            f"{_MAJOR}.x (up to {SCHEMA_VERSION}): {advice}"
        )
    return major, minor


def _explain(error: jsonschema.ValidationError, claimed: tuple[int, int] | None) -> str:
    """The schema's message, rewritten for unknown fields so it names the field and the versions."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return error.message
    allowed = set(error.schema.get("properties", {}))
    unknown = sorted(key for key in error.instance if key not in allowed)
    names = ", ".join(repr(key) for key in unknown)
    message = f"unknown field{'s' if len(unknown) > 1 else ''} {names}"
    if claimed is not None and claimed[1] > _MINOR:
        newer = f"the record uses schema {claimed[0]}.{claimed[1]}; this harness knows {SCHEMA_VERSION}"
        return f"{message}: {newer}: upgrade the harness"
    return f"{message} (schema {SCHEMA_VERSION} allows: {', '.join(sorted(allowed))})"


def _consistency_problems(record: dict) -> Iterator[tuple[str, str]]:
    """Cross-field rules a JSON Schema cannot say; each as (json path, message)."""
    seeds = set(record["seeds"])
    tasks = set(record["submission"]["tasks"])
    references = record["submission"]["references"]
    fingerprint = record["dataset"]["fingerprint"]
    params = record["protocol"]["params"]

    if params["headline_k"] not in params["ks"]:
        yield "$.protocol.params.headline_k", f"{params['headline_k']} is not one of ks {params['ks']}"
    unit_seeds: set[int] = set()
    for i, unit in enumerate(record["units"]):
        if unit["seed"] not in seeds:
            yield f"$.units[{i}].seed", f"seed {unit['seed']} is not in $.seeds {sorted(seeds)}"
        if unit["seed"] in unit_seeds:
            yield f"$.units[{i}].seed", f"seed {unit['seed']} has more than one unit"
        unit_seeds.add(unit["seed"])
    for block in ("metrics", "significance", "lists"):
        for task in record.get(block) or {}:
            if task not in tasks:
                yield f"$.{block}.{task}", f"task {task!r} is not one the submission serves {sorted(tasks)}"
    measures = record.get("measures")
    for task, values in record["metrics"].items():
        for name, value in values.items():
            if measures is not None and name.split("@")[0] not in measures:
                yield f"$.metrics.{task}['{name}']", f"measure {name.split('@')[0]!r} is not in $.measures {measures}"
            for seed in value["per_seed"]:
                if int(seed) not in seeds:
                    yield f"$.metrics.{task}['{name}'].per_seed", f"seed {seed} is not in $.seeds {sorted(seeds)}"
    for task, stats in (record.get("lists") or {}).items():
        for seed, value in stats["per_seed"].items():
            if int(seed) not in seeds:
                yield f"$.lists.{task}.per_seed", f"seed {seed} is not in $.seeds {sorted(seeds)}"
            if value is not None and not 0 <= value <= stats["depth"]:
                yield f"$.lists.{task}.per_seed['{seed}']", f"{value} distinct items is outside [0, depth {stats['depth']}]"
    for task, rows in record["significance"].items():
        for i, row in enumerate(rows):
            path = f"$.significance.{task}[{i}]"
            if row["reference"] != references.get(task):
                yield (
                    f"{path}.reference",
                    f"{row['reference']!r} is not the declared reference {references.get(task)!r}",
                )
            if row["reference_fingerprint"] != fingerprint:
                yield (
                    f"{path}.reference_fingerprint",
                    f"the reference was measured on {row['reference_fingerprint']}, this record on {fingerprint}",
                )
