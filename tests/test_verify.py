"""`python -m harness verify`: every number of a record is recomputed from its own files; forgeries are named.

Records come from the runner (Pop_R and Pop_S on sim1, and a joint stand-in that declares them as references, so
the records hold real paired tests). Each forgery edits one copy of that results folder, as a hostile or careless
user would, and must be refused naming the file and the field, while the untouched records still verify.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.evaluation.verify import verify_record_folder
from test_leaderboard_browser import write_submission

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("verify")
    build_dataset("sim1")
    subs = tmp / "subs"
    for name in ("pop_rec", "pop_search"):
        shutil.copytree(REPO / "submissions" / name, subs / name)
    joint = write_submission(subs, "joint_pop", display_name="Joint_Pop", kind="generative", tasks=("rec", "search"),
                             seeds=(0, 2), references={"rec": "pop_rec", "search": "pop_search"})
    # --no-published: these tests need the references' records beside the joint one, trained here (the copies'
    # configs equal the shipped ones, so leaderboard/official would otherwise stand in for them).
    assert main(["run", str(joint), "--out", str(tmp / "results"), "--no-progress", "--no-site",
                 "--no-published"]) == 0
    return tmp / "results"


@pytest.fixture
def copy(results, tmp_path) -> Path:
    return Path(shutil.copytree(results, tmp_path / "results"))


def test_fresh_records_verify_in_full(results, capsys):
    assert main(["verify", str(results)]) == 0
    out = capsys.readouterr().out
    assert "verify: 3 of 3 record(s) verified" in out
    joint = verify_record_folder(results / "sim1" / "joint_pop")
    assert joint.ok and not joint.unverified  # head and torso too (the record lists its head items), and the tests
    assert any("significance" in line for line in joint.checked)


def _edit_json(folder: Path, edit) -> None:
    path = folder / "record.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def _edit_parquet(folder: Path, column: str, row: int, value: float) -> None:
    table = pq.read_table(folder / "per_query.parquet")
    values = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
    values[row] = value
    table = table.set_column(table.column_names.index(column), column, pa.array(values, mask=np.isnan(values)))
    pq.write_table(table, folder / "per_query.parquet")


def _edit_lines(path: Path, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


def _swap_first_docids(lines):
    """The first query's top two items exchanged: a different ranking, still a valid file."""
    a, b = lines[0].split(" "), lines[1].split(" ")
    a[2], b[2] = b[2], a[2]
    return [" ".join(a), " ".join(b)] + lines[2:]


def _replace_first_hit(folder: Path):
    """In the first run, the first line whose docid is relevant gets an item no query finds relevant."""
    qrels = {tuple(line.split()[::2][:2]) for line in (folder / "rec.qrels").read_text().splitlines()}

    def edit(lines):
        for i, line in enumerate(lines):
            parts = line.split(" ")
            if (parts[0], parts[2]) in qrels:
                parts[2] = "not-an-item-anyone-wants"
                lines[i] = " ".join(parts)
                break
        return lines
    return edit


def _mean(task: str, name: str, value):
    return lambda r: r["metrics"][task][name].update(mean=value)


FORGERIES = {
    # name: (edit of the joint record's folder, the message's pieces)
    "a plausible mean": (lambda f: _edit_json(f, _mean("rec", "R@10", 0.99)),
                         ["record.json", "$.metrics.rec['R@10'].mean", "stored 0.99"]),
    "a mean above 1": (lambda f: _edit_json(f, _mean("rec", "R@10", 1.7)),
                       ["record.json", "$.metrics.rec['R@10'].mean", "1.7 is greater than the maximum of 1"]),
    "a negative mean": (lambda f: _edit_json(f, _mean("search", "nDCG@5", -0.1)),
                        ["record.json", "$.metrics.search['nDCG@5'].mean", "less than the minimum of 0"]),
    "a per-seed mean": (lambda f: _edit_json(f, lambda r: r["metrics"]["rec"]["R@5/head"]["per_seed"].update({"0": 0.5})),
                        ["record.json", "$.metrics.rec['R@5/head'].per_seed['0']", "stored 0.5"]),
    "a segment size": (lambda f: _edit_json(f, lambda r: r["metrics"]["search"]["R@1/torso"].update(n=3)),
                       ["record.json", "$.metrics.search['R@1/torso'].n", "stored 3"]),
    "a p-value": (lambda f: _edit_json(f, lambda r: r["significance"]["rec"][0].update(p=0.001)),
                  ["record.json", "$.significance.rec[0].p", "stored 0.001"]),
    "a verdict": (lambda f: _edit_json(f, lambda r: r["significance"]["search"][1].update(
                      significant=not r["significance"]["search"][1]["significant"])),
                  ["record.json", "$.significance.search[1].significant"]),
    "the lists": (lambda f: _edit_json(f, lambda r: r["lists"]["rec"]["per_seed"].update({"2": 3.0})),
                  ["record.json", "$.lists.rec.per_seed['2']", "stored 3.0"]),
    "a per-query value": (lambda f: _edit_parquet(f, "R@10", 0, 0.5), ["per_query.parquet", "R@10 of query"]),
    "a run file": (lambda f: _edit_lines(f / "rec.seed0.run", _replace_first_hit(f)),
                   ["per_query.parquet", "of query", "(rec, seed 0)"]),
    "the head items": (lambda f: (f / "search.head").write_text(""),
                       ["per_query.parquet", "/head of query", "(search, seed"]),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forgery_is_refused_naming_the_file_and_field(copy, forgery, capsys):
    edit, pieces = FORGERIES[forgery]
    joint = copy / "sim1" / "joint_pop"
    edit(joint)
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("FAILED"))
    assert str(joint) in line
    for piece in pieces:
        assert piece in line, (piece, line)
    assert "verify: 2 of 3 record(s) verified, 1 FAILED" in out  # the others still verify


def test_a_reordered_run_that_changes_no_number_still_verifies(copy):
    """Swapping two items neither of which is relevant changes no value: verification is about the numbers."""
    run = copy / "sim1" / "pop_rec" / "rec.seed0.run"
    relevant = {line.split()[2] for line in (copy / "sim1" / "pop_rec" / "rec.qrels").read_text().splitlines()
                if line.startswith(run.read_text().split(" ", 1)[0] + " ")}
    lines = run.read_text().splitlines(keepends=True)
    first = [i for i, line in enumerate(lines[:10]) if line.split(" ")[0] == lines[0].split(" ")[0]
             and line.split(" ")[2] not in relevant]
    if len(first) < 2:
        pytest.skip("the first query's list has fewer than two irrelevant items")
    i, j = first[:2]
    a, b = lines[i].split(" "), lines[j].split(" ")
    a[2], b[2] = b[2], a[2]
    lines[i], lines[j] = " ".join(a), " ".join(b)
    run.write_text("".join(lines))
    assert verify_record_folder(copy / "sim1" / "pop_rec").ok


def test_without_its_reference_a_record_checks_what_its_tests_say_of_itself(copy):
    shutil.rmtree(copy / "sim1" / "pop_search")
    result = verify_record_folder(copy / "sim1" / "joint_pop")
    assert result.ok and any("pop_search" in line for line in result.unverified)
    _edit_json(copy / "sim1" / "joint_pop", lambda r: r["significance"]["rec"][0].update(p_holm=0.9))
    result = verify_record_folder(copy / "sim1" / "joint_pop")
    assert [m.field for m in result.mismatches][:1] == ["$.significance.rec[0].p_holm"]


def test_committed_gate_baselines_verify():
    """Baselines hold record.json and per_query.parquet only: their metrics are recomputed from the values."""
    assert main(["verify", str(REPO / "bench" / "baselines" / "quick"), "-q"]) == 0


def test_a_path_without_records_is_an_error(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 2
    assert "no result record" in capsys.readouterr().err


def test_leaderboard_build_refuses_a_forged_record_naming_the_field(copy, tmp_path):
    from harness.leaderboard import build_site

    _edit_json(copy / "sim1" / "joint_pop", _mean("rec", "R@10", 0.99))
    report = build_site(copy, tmp_path / "site")
    assert report.records == 2
    (skipped,) = report.skipped
    assert skipped.path == "sim1/joint_pop/record.json"
    assert "$.metrics.rec['R@10'].mean: stored 0.99" in skipped.reason and "do not follow" in skipped.reason
    assert "0.990" not in (tmp_path / "site" / "index.html").read_text()


def test_a_run_that_retrieved_nothing_verifies(tmp_path):
    """BM25 on sim1 shares no word with any query: every list is empty and so is every run file (R@10 0)."""
    build_dataset("sim1")
    shutil.copytree(REPO / "submissions" / "bm25", tmp_path / "subs" / "bm25")
    assert main(["run", str(tmp_path / "subs" / "bm25"), "-d", "sim1", "--out", str(tmp_path / "r"),
                 "--no-progress", "--no-site"]) == 0
    folder = tmp_path / "r" / "sim1" / "bm25"
    assert (folder / "search.seed0.run").stat().st_size == 0
    verification = verify_record_folder(folder)
    assert verification.ok and any("per-query values" in c for c in verification.checked)
    _edit_json(folder, lambda r: r["metrics"]["search"]["R@10"].update(mean=0.5))
    assert not verify_record_folder(folder).ok  # an empty run still proves R@10 = 0
