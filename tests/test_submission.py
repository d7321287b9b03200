"""Submission config parsing: every bad input names the file and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.protocol.submission import load_adapter_class, load_submission

REPO = Path(__file__).resolve().parents[1]

GOOD = """
[submission]
display_name = "Mine"
adapter = "harness.baselines.popularity:PopularityAdapter"
kind = "baseline"
tasks = ["rec", "search"]
datasets = ["sim2:sample=0.65,q_match=0.5", "sim1"]
seeds = [0, 1]

[references]
rec = "rec_t5"

[params]
popularity = "rec"
"""


def write(tmp_path: Path, text: str, name: str = "mine") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "config.toml").write_text(textwrap.dedent(text))
    return folder


def test_good_config_is_parsed_and_canonicalised(tmp_path):
    sub = load_submission(write(tmp_path, GOOD))
    assert sub.name == "mine"
    assert sub.tasks == ("rec", "search")
    assert sub.datasets == ("sim2:q_match=0.5,sample=0.65", "sim1")  # keys sorted: one name per dataset
    assert sub.seeds == (0, 1)
    assert sub.references == {"rec": "rec_t5"}
    assert sub.params == {"popularity": "rec"}
    assert sub.config_hash.startswith("sha256:") and len(sub.config_hash) == 7 + 64


def test_config_hash_changes_with_any_setting(tmp_path):
    a = load_submission(write(tmp_path, GOOD, "a"))
    b = load_submission(write(tmp_path, GOOD.replace('popularity = "rec"', 'popularity = "search"'), "b"))
    assert a.config_hash != b.config_hash


def test_the_shipped_submissions_load():
    for name in ("pop_rec", "pop_search"):
        sub = load_submission(REPO / "submissions" / name)
        assert sub.adapter_class().__name__ == "PopularityAdapter"


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda s: s.replace('display_name = "Mine"\n', ""), "missing required key 'submission.display_name'"),
        (lambda s: s.replace('kind = "baseline"', 'kind = "magic"'), "'submission.kind' = 'magic'"),
        (lambda s: s.replace('tasks = ["rec", "search"]', 'tasks = ["rec", "music"]'), "'submission.tasks'"),
        (lambda s: s.replace("seeds = [0, 1]", 'seeds = ["zero"]'), "'submission.seeds'"),
        (lambda s: s.replace("seeds = [0, 1]", "seeds = [1, 1]"), "repeats a seed"),
        (lambda s: s.replace("seeds = [0, 1]", "sedes = [0]"), "unknown key 'submission.sedes'"),
        (lambda s: s.replace("[params]", "[parms]"), "unknown table(s) ['parms']"),
        (lambda s: s.replace('datasets = ["sim2:sample=0.65,q_match=0.5", "sim1"]', 'datasets = "sim1"'),
         "'submission.datasets' must be a list"),
        (lambda s: s.replace('"sim1"]', '"Sim 1"]'), "not a valid dataset name"),
        (lambda s: s.replace('tasks = ["rec", "search"]', 'tasks = ["search"]'), "'references.rec'"),
        (lambda s: s.replace("[submission]", "[submission"), "not valid TOML"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, edit, expected):
    folder = write(tmp_path, edit(GOOD))
    with pytest.raises(HarnessError) as info:
        load_submission(folder)
    assert expected in str(info.value)
    assert str(folder / "config.toml") in str(info.value)


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        load_submission(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="config.toml: missing"):
        load_submission(tmp_path / "empty")


def test_adapter_from_a_file_in_the_submission_folder(tmp_path):
    folder = write(tmp_path, GOOD.replace("harness.baselines.popularity:PopularityAdapter", "mine.py:Mine"))
    (folder / "mine.py").write_text(
        "from harness.baselines.popularity import PopularityAdapter\nclass Mine(PopularityAdapter):\n    pass\n"
    )
    assert load_submission(folder).adapter_class().__name__ == "Mine"


@pytest.mark.parametrize(
    "target, content, expected",
    [
        ("nomodule_xyz:Thing", None, "cannot import module 'nomodule_xyz'"),
        ("harness.baselines.popularity:Nope", None, "has no attribute 'Nope'"),
        ("harness.errors:HarnessError", None, "is not a subclass of harness.protocol.adapter.Adapter"),
        ("broken.py:X", "raise RuntimeError('boom at import')", "RuntimeError: boom at import"),
        ("absent.py:X", None, "does not exist"),
        ("no_colon", None, "give 'module:Class'"),
    ],
)
def test_adapters_that_cannot_be_imported(tmp_path, target, content, expected):
    if content is not None:
        (tmp_path / target.split(":")[0]).write_text(content)
    with pytest.raises(HarnessError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_adapter_class(target, tmp_path)
