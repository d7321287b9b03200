"""Submission folders: a `config.toml` naming the adapter, its tasks, parameters, datasets, seeds and references.

    [submission]
    display_name = "Pop_R"                                   # required: the name shown on the leaderboard
    adapter = "harness.baselines.popularity:PopularityAdapter"   # required: module:Class, or file.py:Class in the folder
    kind = "baseline"                                        # required: "generative" or "baseline"
    tasks = ["rec", "search"]                                # required: tasks served ("rec", "search")
    datasets = ["sim1", "sim2", "sim3", "ml-small"]          # required: dataset names (`name:key=value` allowed)
    seeds = [0]                                              # optional, default [0]
    description = "..."                                      # optional

    [references]                                             # optional: per task, the submission compared against
    rec = "rec_t5"

    [params]                                                 # optional: passed to the adapter as is
    popularity = "rec"

The submission's name is its folder's name. Unknown keys are errors, so a typo never silently does nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.spec import DatasetSpec
from harness.data.views import TASKS, Task
from harness.errors import HarnessError
from harness.io import canonical_json
from harness.protocol.adapter import Adapter
from harness.registry import import_object

CONFIG_FILE = "config.toml"
KINDS = ("generative", "baseline")
_SUBMISSION_KEYS = {
    "display_name": (str, True),
    "adapter": (str, True),
    "kind": (str, True),
    "tasks": (list, True),
    "datasets": (list, True),
    "seeds": (list, False),
    "description": (str, False),
}
_TOP_LEVEL = {"submission", "references", "params"}


@dataclass(frozen=True)
class Submission:
    name: str
    folder: Path
    display_name: str
    adapter: str
    kind: str
    tasks: tuple[Task, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    references: dict[str, str]
    params: dict[str, Any]
    config: dict[str, Any] = field(repr=False)
    config_hash: str = ""
    description: str = ""

    def adapter_class(self) -> type[Adapter]:
        return load_adapter_class(self.adapter, self.folder)


def _config_hash(config: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(config).encode()).hexdigest()


# A submission's name is its folder's name: it names results folders, TREC run tags (space-separated files) and
# leaderboard pages, so it must be safe in all of them (the result schema's file-name rule).
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]*$")


def check_submission_name(name: str, what: str) -> str:
    if not SAFE_NAME.match(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_.+=-"))})
        why = f"it holds {''.join(bad)!r}" if bad else f"it starts with {name[:1]!r}"
        raise HarnessError(
            f"{what} {name!r}: a submission's name may hold only letters, digits and _ . + = -, starting with a letter, "
            f"a digit or _ ({why}); it names TREC run files and result folders: rename it"
        )
    return name


def load_submission(folder: str | Path) -> Submission:
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise HarnessError(f"submission folder {folder} does not exist")
    check_submission_name(folder.resolve().name, f"submission folder {folder}:")
    if not path.is_file():
        raise HarnessError(f"{path}: missing; a submission folder needs a {CONFIG_FILE} (see README, 'Submissions')")
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text ({exc})") from exc

    unknown = set(config) - _TOP_LEVEL
    if unknown:
        raise HarnessError(f"{path}: unknown table(s) {sorted(unknown)}; allowed: {sorted(_TOP_LEVEL)}")
    sub = config.get("submission")
    if not isinstance(sub, dict):
        raise HarnessError(f"{path}: missing table [submission]")
    for key in sub:
        if key not in _SUBMISSION_KEYS:
            raise HarnessError(
                f"{path}: unknown key 'submission.{key}'; allowed: {', '.join(sorted(_SUBMISSION_KEYS))}"
            )
    for key, (typ, required) in _SUBMISSION_KEYS.items():
        if key not in sub:
            if required:
                raise HarnessError(f"{path}: missing required key 'submission.{key}'")
            continue
        if not isinstance(sub[key], typ):
            raise HarnessError(
                f"{path}: 'submission.{key}' must be a {typ.__name__}, got {type(sub[key]).__name__} {sub[key]!r}"
            )

    if not sub["display_name"].strip():
        raise HarnessError(f"{path}: 'submission.display_name' is empty; give the name the leaderboard shows")
    kind = sub["kind"]
    if kind not in KINDS:
        raise HarnessError(f"{path}: 'submission.kind' = {kind!r}; allowed: {', '.join(KINDS)}")
    tasks = sub["tasks"]
    if not tasks or any(t not in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
        raise HarnessError(f"{path}: 'submission.tasks' = {tasks!r}; give distinct values from {list(TASKS)}")
    datasets = sub["datasets"]
    if not datasets or not all(isinstance(d, str) and d for d in datasets):
        raise HarnessError(f"{path}: 'submission.datasets' must be a non-empty list of dataset names")
    seeds = sub.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise HarnessError(f"{path}: 'submission.seeds' = {seeds!r}; give a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"{path}: 'submission.seeds' = {seeds!r} repeats a seed")

    references = config.get("references", {})
    if not isinstance(references, dict):
        raise HarnessError(f"{path}: [references] must be a table")
    for task, ref in references.items():
        if task not in TASKS:
            raise HarnessError(f"{path}: 'references.{task}': unknown task; allowed: {list(TASKS)}")
        if task not in tasks:
            raise HarnessError(f"{path}: 'references.{task}': this submission does not serve {task!r}")
        if not isinstance(ref, str) or not ref:
            raise HarnessError(f"{path}: 'references.{task}' must be a submission name (a folder name)")
        check_submission_name(ref, f"{path}: 'references.{task}' =")  # (itself, unknown: harness.protocol.references)
    params = config.get("params", {})
    if not isinstance(params, dict):
        raise HarnessError(f"{path}: [params] must be a table")

    canonical_datasets = []
    for name in datasets:
        try:
            canonical_datasets.append(str(DatasetSpec.parse(name)))
        except HarnessError as exc:
            raise HarnessError(f"{path}: 'submission.datasets': {exc}") from exc

    return Submission(
        name=folder.resolve().name,
        folder=folder.resolve(),
        display_name=sub["display_name"],
        adapter=sub["adapter"],
        kind=kind,
        tasks=tuple(tasks),
        datasets=tuple(canonical_datasets),
        seeds=tuple(seeds),
        references=dict(references),
        params=params,
        config=config,
        config_hash=_config_hash(config),
        description=sub.get("description", ""),
    )


def load_adapter_class(target: str, folder: Path) -> type[Adapter]:
    """`package.module:Class`, or `file.py:Class` for a Python file inside the submission folder."""
    what = f"adapter {target!r} of submission {folder.name}"
    file_part, sep, attr = target.partition(":")
    if not sep or not attr:
        raise HarnessError(f"{what}: give 'module:Class' or 'file.py:Class'")
    if file_part.endswith(".py"):
        file_path = (folder / file_part).resolve()
        if folder.resolve() not in file_path.parents:
            raise HarnessError(f"{what}: {file_part} must be inside the submission folder")
        if not file_path.is_file():
            raise HarnessError(f"{what}: file {file_path} does not exist")
        module_name = f"_submission_{folder.name}_{file_path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, file_path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: report it as their error, with its cause
            raise HarnessError(f"{what}: importing {file_path} failed: {type(exc).__name__}: {exc}") from exc
        if not hasattr(module, attr):
            raise HarnessError(f"{what}: {file_path} defines no {attr!r}")
        cls = getattr(module, attr)
    else:
        cls = import_object(target, what=what)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise HarnessError(f"{what}: {attr!r} is not a subclass of harness.protocol.adapter.Adapter")
    return cls
