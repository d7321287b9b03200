"""Hostile or broken inputs, one table: each is refused with its exit status and a message naming the culprit,
before anything trains, and no earlier good output changes. 44 cases: submission configs, names, seeds,
references, adapter parameters and imports, the rankings an adapter returns, records, compiled datasets and
dataset names.

The good outputs are made once: Pop_R's record on sim1 in a results folder, and the compiled sim1. Every case
then runs the CLI against that same results folder and checks, byte for byte, that the good record folder and the
compiled dataset are as they were (a case's own submission may leave its own failed record: that is the report).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.data.store import CompiledDataset

REPO = Path(__file__).resolve().parents[1]

GOOD_CONFIG = """
[submission]
display_name = "Mine"
adapter = "adapter.py:Mine"
kind = "baseline"
tasks = ["rec"]
datasets = ["sim1"]
seeds = [0]
"""

GOOD_ADAPTER = """
import numpy as np
from harness.protocol.adapter import Adapter

class Mine(Adapter):
    def fit(self, train):
        self.n = len(train.catalogue)

    def retrieve(self, task, requests, k):
        return RETURN
"""
GOOD_RETURN = "np.broadcast_to(np.arange(k), (len(requests), k))"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """The results folder holding Pop_R's good record on sim1."""
    out = tmp_path_factory.mktemp("bad-inputs") / "results"
    build_dataset("sim1")
    assert main(["run", str(REPO / "submissions" / "pop_rec"), "-d", "sim1", "--out", str(out), "--no-progress",
                 "--no-site"]) == 0
    return out


def _snapshot(out: Path) -> dict[str, str]:
    files = sorted(p for p in (out / "sim1" / "pop_rec").rglob("*") if p.is_file())
    with CompiledDataset.open("sim1") as ds:
        files.append(Path(ds.path))
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _submission(root: Path, name: str = "mine", config: str = GOOD_CONFIG, adapter: str | None = None,
                returns: str = GOOD_RETURN) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(textwrap.dedent(config))
    (folder / "adapter.py").write_text(textwrap.dedent(adapter if adapter is not None else GOOD_ADAPTER)
                                       .replace("RETURN", returns))
    return folder


def _config(**changes) -> str:
    text = GOOD_CONFIG
    for old, new in changes.items():
        text = text.replace(old.replace("__", " "), new)
    return text


def _replace(old: str, new: str) -> str:
    return GOOD_CONFIG.replace(old, new)


# (submission folder maker, extra CLI args, exit status, message pieces)
RUN_CASES = {
    "config not TOML": (lambda r: _submission(r, config="[submission\n"), [], 2, ["config.toml", "not valid TOML"]),
    "config unknown table": (lambda r: _submission(r, config=GOOD_CONFIG + "\n[extra]\na = 1\n"), [], 2,
                             ["unknown table(s) ['extra']"]),
    "config unknown key": (lambda r: _submission(r, config=_replace("kind =", "colour = 1\nkind =")), [], 2,
                           ["unknown key 'submission.colour'"]),
    "display name missing": (lambda r: _submission(r, config=_replace('display_name = "Mine"\n', "")), [], 2,
                             ["missing required key 'submission.display_name'"]),
    "display name empty": (lambda r: _submission(r, config=_replace('"Mine"', '" "')), [], 2,
                           ["'submission.display_name' is empty"]),
    "display name a number": (lambda r: _submission(r, config=_replace('"Mine"', "7")), [], 2,
                              ["'submission.display_name' must be a str"]),
    "kind unknown": (lambda r: _submission(r, config=_replace('"baseline"', '"oracle"')), [], 2,
                     ["'submission.kind' = 'oracle'"]),
    "task unknown": (lambda r: _submission(r, config=_replace('["rec"]', '["recs"]')), [], 2,
                     ["'submission.tasks' = ['recs']"]),
    "seeds negative in config": (lambda r: _submission(r, config=_replace("seeds = [0]", "seeds = [-1]")), [], 2,
                                 ["'submission.seeds' = [-1]"]),
    "seeds repeated in config": (lambda r: _submission(r, config=_replace("seeds = [0]", "seeds = [3, 3]")), [], 2,
                                 ["repeats a seed"]),
    "seed negative on the command line": (lambda r: _submission(r), ["--seeds", "-1"], 2, ["seeds [-1]"]),
    "seed repeated on the command line": (lambda r: _submission(r), ["--seeds", "0", "0"], 2, ["seeds [0, 0]"]),
    "folder name with a quote": (lambda r: _submission(r, name='mi"ne'), [], 2, ["'mi\"ne'", "rename it"]),
    "folder name with a space": (lambda r: _submission(r, name="mi ne"), [], 2, ["'mi ne'", "rename it"]),
    "folder name starting with a dot": (lambda r: _submission(r, name=".mine"), [], 2, ["'.mine'", "starts with '.'"]),
    "reference unknown": (lambda r: _submission(r, config=GOOD_CONFIG + '\n[references]\nrec = "pop_recc"\n'), [], 2,
                          ["'references.rec' = 'pop_recc'"]),
    "reference itself": (lambda r: _submission(r, config=GOOD_CONFIG + '\n[references]\nrec = "mine"\n'), [], 2,
                         ["names this submission itself"]),
    "reference name unsafe": (lambda r: _submission(r, config=GOOD_CONFIG + '\n[references]\nrec = "a b"\n'), [], 2,
                              ["'references.rec' = 'a b'"]),
    "params unknown key": (lambda r: _submission(r, config=_replace('adapter = "adapter.py:Mine"',
                           'adapter = "harness.baselines.popularity:PopularityAdapter"') + '[params]\npopularity = "rec"\n'
                           "popularity_source = 1\n"), [], 2, ["unknown [params] key(s) ['popularity_source']"]),
    "params wrong value": (lambda r: _submission(r, config=_replace('adapter = "adapter.py:Mine"',
                           'adapter = "harness.baselines.popularity:PopularityAdapter"') + '[params]\npopularity = "both"\n'),
                           [], 2, ["params.popularity"]),
    "adapter file missing": (lambda r: _submission(r, config=_replace("adapter.py:Mine", "adaptor.py:Mine")), [], 2,
                             ["adaptor.py", "does not exist"]),
    "adapter does not import": (lambda r: _submission(r, adapter="def broken(:\n"), [], 2,
                                ["importing", "adapter.py failed", "SyntaxError"]),
    "adapter is not an Adapter": (lambda r: _submission(r, adapter="class Mine:\n    pass\n"), [], 2,
                                  ["'Mine' is not a subclass of harness.protocol.adapter.Adapter"]),
    "dataset unknown": (lambda r: _submission(r, config=_replace('["sim1"]', '["sim9"]')), [], 2, ["sim9"]),
    "dataset parameter unknown": (lambda r: _submission(r, config=_replace('["sim1"]', '["sim2:colour=1"]')), [], 2,
                                  ["colour"]),
    # the adapter's output: the unit fails, the run says so (exit 1), the record names the adapter and the request
    "ranking with a duplicate": (lambda r: _submission(r, returns="[[0, 0]] * len(requests)"), [], 1,
                                 ["FAILED", "item 0 appears twice"]),
    "ranking outside the catalogue": (lambda r: _submission(r, returns="[[self.n + 5]] * len(requests)"), [], 1,
                                      ["FAILED", "is not in the catalogue"]),
    "ranking too long": (lambda r: _submission(r, returns="np.broadcast_to(np.arange(k + 1), (len(requests), k + 1))"),
                         [], 1, ["FAILED", "more than k="]),
    "too few rankings": (lambda r: _submission(r, returns="[[0]]"), [], 1, ["FAILED", "rankings for"]),
    "rankings of floats": (lambda r: _submission(r, returns="np.full((len(requests), k), 0.5)"), [], 1,
                           ["FAILED", "integer"]),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_a_bad_submission_is_refused_and_nothing_good_changes(good, tmp_path, capsys, case):
    make, extra, status, pieces = RUN_CASES[case]
    before = _snapshot(good)
    files_before = sorted(good.rglob("*"))
    folder = make(tmp_path / "subs")
    shutil.copytree(REPO / "submissions" / "pop_rec", tmp_path / "subs" / "pop_rec")
    assert main(["run", str(folder), "--out", str(good), "--no-progress", "--no-site", *extra]) == status
    captured = capsys.readouterr()
    said = captured.err + captured.out
    for piece in pieces:
        assert piece in said, (piece, said[-2000:])
    if status == 2:  # refused before training: nothing was written
        assert sorted(good.rglob("*")) == files_before
    assert _snapshot(good) == before


def _forge(record_folder: Path, edit) -> None:
    path = record_folder / "record.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


RECORD_CASES = {
    "record not JSON": (lambda f: (f / "record.json").write_text("{\n  \"schema_version\": \"1.3\",\n  oops\n}"),
                        ["record.json:3:", "not valid JSON"]),
    "record from a future major": (lambda f: _forge(f, lambda r: r.update(schema_version="2.0")),
                                   ["$.schema_version", "schema 2.0", "upgrade the harness"]),
    "record with NaN": (lambda f: (f / "record.json").write_text(
                            (f / "record.json").read_text().replace('"total_s": ', '"total_s": NaN, "x": ', 1)),
                        ["record.json", "NaN is not allowed"]),
    "record forged mean": (lambda f: _forge(f, lambda r: r["metrics"]["rec"]["R@10"].update(mean=0.97)),
                           ["$.metrics.rec['R@10'].mean", "stored 0.97"]),
    "record missing its per-query file": (lambda f: (f / "per_query.parquet").unlink(),
                                          ["names 'per_query.parquet', which is not in"]),
    "record with a truncated per-query file": (lambda f: (f / "per_query.parquet").write_bytes(
                                                   (f / "per_query.parquet").read_bytes()[:100]),
                                               ["per_query.parquet", "cannot read"]),
}


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_a_bad_record_is_refused_by_verify_naming_the_file(good, tmp_path, capsys, case):
    edit, pieces = RECORD_CASES[case]
    copy = Path(shutil.copytree(good, tmp_path / "results"))
    edit(copy / "sim1" / "pop_rec")
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("FAILED"))
    for piece in pieces:
        assert piece in line, (piece, line)


def _compiled_copy(cache: Path) -> Path:
    """A copy of the compiled sim1 in its own cache folder, to damage without touching the good one."""
    with CompiledDataset.open("sim1") as ds:
        source = Path(ds.path)
    (cache / "datasets").mkdir(parents=True)
    for path in source.parent.glob("sim1.*"):  # the DuckDB file and anything the cache keeps beside it
        shutil.copy2(path, cache / "datasets" / path.name)
    return cache / "datasets" / "sim1.duckdb"


def _edit_table(path: Path, sql: str) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()


DATA_CASES = {
    # name: (damage the copy, exit status of `run`, message pieces)
    "compiled file with an edited row": (
        lambda p: _edit_table(p, "UPDATE sequences SET item_id = (item_id + 1) % 50 WHERE rowid = (SELECT min(rowid) FROM sequences)"), 2,
        ["sim1.duckdb does not match its fingerprint", "data build sim1 --force"]),
    "compiled file truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]), 2,
                                ["sim1.duckdb is damaged or truncated", "data build sim1 --force"]),
    "compiled file not a database": (lambda p: p.write_text("hello"), 2, ["sim1.duckdb", "rebuild it"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_a_damaged_compiled_dataset_is_refused_before_training(good, tmp_path, capsys, case):
    damage, status, pieces = DATA_CASES[case]
    before, files_before = _snapshot(good), sorted(good.rglob("*"))
    damage(_compiled_copy(tmp_path / "cache"))
    folder = _submission(tmp_path / "subs")
    assert main(["run", str(folder), "--out", str(good), "--no-progress", "--no-site",
                 "--cache-dir", str(tmp_path / "cache")]) == status
    said = capsys.readouterr().err
    for piece in pieces:
        assert piece in said, (piece, said)
    assert sorted(good.rglob("*")) == files_before  # refused before training: nothing written
    assert _snapshot(good) == before


@pytest.mark.parametrize("spelling, message", [
    ("sim2:q_match=half", "parameter q_match='half' is not a number"),
    ("sim2:q_match=2", "q_match"),
    ("sim2:shuffle=1", "unknown parameter 'shuffle'"),
    ("sim2:q_match", "q_match"),
    ("ml-small:split_seed=-1", "split_seed"),
])
def test_a_bad_dataset_spelling_is_refused_naming_the_parameter(good, tmp_path, capsys, spelling, message):
    before = _snapshot(good)
    folder = _submission(tmp_path / "subs")
    assert main(["run", str(folder), "-d", spelling, "--out", str(good), "--no-progress", "--no-site"]) == 2
    assert message in capsys.readouterr().err
    assert _snapshot(good) == before
