"""`python -m harness submit`: a result joins the official ones only when its files give back every number it
states and it was measured on the official data under this protocol; what is published is the record and the files
its numbers are recomputed from, never the embeddings, checkpoints or logs beside them.

Records come from the runner, as in test_verify: Pop_R and Pop_S on sim1 (packed as the official references) and a
joint stand-in that declares them as references, so its paired tests are recomputed against the official values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.errors import HarnessError
from harness.evaluation.verify import verify_record_folder
from harness.leaderboard.official import (
    OFFICIAL_DIR,
    PUBLISHED_FILES,
    check_submittable,
    is_published,
    official_fingerprints,
    pack_record,
)
from harness.records.record import ResultRecord
from test_leaderboard_browser import write_submission
from test_verify import _edit_json, _edit_lines, _replace_first_hit

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {"record.json", "per_query.parquet", "rec.seed0.run", "rec.seed2.run", "search.seed0.run",
             "search.seed2.run", "rec.qrels", "search.qrels", "rec.head", "search.head", "units/seed0/unit.json",
             "units/seed0/rankings.npz", "units/seed2/unit.json", "units/seed2/rankings.npz"}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The runner's results folder: sim1/pop_rec, sim1/pop_search and sim1/joint_pop (seeds 0 and 2)."""
    tmp = tmp_path_factory.mktemp("submit")
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
def mine(results, tmp_path) -> Path:
    """A copy of the results, with what a run also leaves beside a record: embeddings, a checkpoint, a log."""
    copy = Path(shutil.copytree(results, tmp_path / "results"))
    joint = copy / "sim1" / "joint_pop"
    np.save(joint / "units" / "seed0" / "item_embeddings.npy", np.zeros((3, 4)))
    np.save(joint / "units" / "seed0" / "item_embeddings_initial.npy", np.zeros((3, 4)))
    (joint / "units" / "seed0" / "checkpoint.pt").write_bytes(b"weights")
    (joint / "train.log").write_text("epoch 1\n")
    return copy


@pytest.fixture
def official(results, tmp_path) -> Path:
    """An official folder holding the two references, packed as the official folder is assembled."""
    root = tmp_path / "leaderboard" / "official"
    root.mkdir(parents=True)
    for name in ("pop_rec", "pop_search"):
        assert pack_record(results / "sim1" / name, root) == root / "sim1" / name
    return root


def _submit(*args) -> int:
    return main(["submit", *map(str, args)])


def _tree(root: Path, *, folders_untouched: bool = False) -> dict[str, tuple[int, int] | None]:
    """Every path under root (hidden ones too), a file with its size and modification time; a folder with its own
    when `folders_untouched` (a refused packing may have made and removed its staging folder there)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            if p.is_file() or folders_untouched else None for p in sorted(root.rglob("*"))}


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _refused_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("REFUSED"))


# ---- a good record ------------------------------------------------------------------------------------------------


def test_a_good_record_is_packed_and_verifies_where_it_went(mine, official, capsys):
    source = mine / "sim1" / "joint_pop"
    assert _submit(source, "--official", official) == 0
    out = capsys.readouterr().out
    packed = official / "sim1" / "joint_pop"
    assert f"packed     {source} -> {packed}" in out
    assert "submit: 1 of 1 record(s) packed" in out
    assert f"next: git add {packed} and open a pull request" in out

    assert _files(packed) == PUBLISHED  # no item embeddings, checkpoint or log
    assert all(is_published(name) for name in _files(packed))
    assert not is_published("units/seed0/item_embeddings.npy") and not is_published("train.log")
    for name in PUBLISHED:
        assert (packed / name).read_bytes() == (source / name).read_bytes()
    assert not [p for p in packed.parent.iterdir() if p.name.startswith(".")]  # no staging folder left

    assert main(["verify", str(official)]) == 0
    assert "verify: 3 of 3 record(s) verified" in capsys.readouterr().out
    result = verify_record_folder(packed)  # its tests recomputed against the official references' values
    assert result.ok and not result.unverified and any("significance" in line for line in result.checked)


def test_the_files_a_record_names_are_all_published(results):
    record = ResultRecord.read(results / "sim1" / "joint_pop" / "record.json")
    assert all(is_published(name) for name in record.files.names())
    assert PUBLISHED_FILES[0] == "record.json" and OFFICIAL_DIR == Path("leaderboard/official")


def test_official_fingerprints_are_read_from_the_official_records(official, results, tmp_path):
    fingerprint = ResultRecord.read(results / "sim1" / "pop_rec" / "record.json").dataset.fingerprint
    assert official_fingerprints(official) == {"sim1": {fingerprint}}
    assert official_fingerprints(tmp_path / "missing") == {}


def test_references_submitted_together_are_packed_first(results, tmp_path, capsys):
    root = tmp_path / "official"
    pack_record(results / "sim1" / "pop_rec", root)
    joint, pop_search = results / "sim1" / "joint_pop", results / "sim1" / "pop_search"
    assert _submit(joint, "--official", root) == 1  # its search tests compare with Pop_S, not official
    assert "compare with 'pop_search', which has no official record" in _refused_line(capsys.readouterr().out)
    assert not (root / "sim1" / "joint_pop").exists()

    assert _submit(joint, pop_search / "record.json", "--official", root, "--dry-run") == 0
    assert "submit: 2 of 2 record(s) would be packed" in capsys.readouterr().out
    assert _submit(joint, pop_search / "record.json", "--official", root) == 0
    out = capsys.readouterr().out
    assert out.index("pop_search") < out.index("joint_pop")
    assert verify_record_folder(root / "sim1" / "joint_pop").unverified == []


# ---- refusals ------------------------------------------------------------------------------------------------------


def _mean(value):
    return lambda r: r["metrics"]["rec"]["R@10"].update(mean=value)


def test_a_forged_metric_is_refused_naming_the_mismatch(mine, official, capsys):
    source = mine / "sim1" / "joint_pop"
    _edit_json(source, _mean(0.99))
    before = _tree(official)
    assert _submit(source, "--official", official) == 1
    out = capsys.readouterr().out
    line = _refused_line(out)
    assert str(source) in line and "does not verify" in line
    assert "record.json: $.metrics.rec['R@10'].mean: stored 0.99" in line
    assert "submit: 0 of 1 record(s) packed, 1 REFUSED" in out and "git add" not in out
    assert _tree(official) == before


def test_a_forged_run_file_is_refused_naming_the_mismatch(mine, official, capsys):
    source = mine / "sim1" / "joint_pop"
    _edit_lines(source / "rec.seed0.run", _replace_first_hit(source))
    assert _submit(source, "--official", official) == 1
    line = _refused_line(capsys.readouterr().out)
    assert "does not verify" in line and "per_query.parquet" in line and "(rec, seed 0)" in line
    assert not (official / "sim1" / "joint_pop").exists()


def _fingerprint(value: str):
    def edit(record):
        record["dataset"]["fingerprint"] = value
        for rows in record["significance"].values():
            for row in rows:
                row["reference_fingerprint"] = value
    return edit


def test_a_record_of_another_build_of_the_data_is_refused_as_foreign(mine, official, capsys):
    source = mine / "sim1" / "joint_pop"
    theirs = ResultRecord.read(source / "record.json").dataset.fingerprint
    ours = "sha256:" + "ab12" * 16
    _edit_json(source, _fingerprint(ours))  # consistently: every number still verifies
    for unit in (source / "units").glob("seed*/unit.json"):
        data = json.loads(unit.read_text())
        data["key"]["fingerprint"] = ours
        unit.write_text(json.dumps(data))
    assert verify_record_folder(source).ok
    assert _submit(source, "--official", official) == 1
    line = _refused_line(capsys.readouterr().out)
    assert "foreign record" in line and "sim1" in line
    assert "sha256:ab12ab12ab12" in line and theirs[:19] in line and theirs not in line  # both, short
    assert not (official / "sim1" / "joint_pop").exists()


def test_a_dataset_the_official_results_lack_is_refused(mine, official, capsys):
    source = mine / "sim1" / "joint_pop"
    _edit_json(source, lambda r: r["dataset"].update(name="sim2"))
    assert _submit(source, "--official", official) == 1
    line = _refused_line(capsys.readouterr().out)
    assert "dataset 'sim2' has no official results" in line and "'sim1'" in line
    assert not (official / "sim2").exists()


def test_another_protocol_version_is_refused(mine, official, capsys):
    source = mine / "sim1" / "joint_pop"
    _edit_json(source, lambda r: r["protocol"].update(version="0"))
    assert _submit(source, "--official", official) == 1
    line = _refused_line(capsys.readouterr().out)
    assert "$.protocol.version: '0'" in line and "protocol '1'" in line


def test_a_record_with_failed_units_is_refused(mine, official):
    source = mine / "sim1" / "joint_pop"
    error = {"type": "RuntimeError", "message": "loss became NaN", "traceback": None}
    _edit_json(source, lambda r: r["units"][-1].update(status="failed", error=error))
    with pytest.raises(HarnessError, match=r"\$\.units: seed\(s\) \[2\] failed \(seed 2: RuntimeError: loss became"):
        check_submittable(source, official)
    with pytest.raises(HarnessError, match="failed"):
        pack_record(source, official)


def test_a_record_whose_numbers_cannot_be_recomputed_is_refused(mine, official):
    """Without the run files of a task its per-query values would be taken on trust: verify cannot see that."""
    source = mine / "sim1" / "joint_pop"

    def drop_search_runs(record):
        record["files"]["runs"]["search"] = ["search.seed0.run"]
    _edit_json(source, drop_search_runs)
    with pytest.raises(HarnessError, match=r"\$\.files\.runs\.search: no run file of seed\(s\) \[2\]"):
        check_submittable(source, official)


def test_an_existing_official_record_is_replaced_only_when_asked(mine, official, capsys):
    source = mine / "sim1" / "pop_rec"
    packed = official / "sim1" / "pop_rec"
    before = _tree(official)
    assert _submit(source, "--official", official) == 1
    line = _refused_line(capsys.readouterr().out)
    assert f"{packed}: already holds the official record of 'pop_rec'" in line and "--replace" in line
    assert _tree(official) == before

    (packed / "stale.txt").write_text("not part of the record\n")
    assert _submit(source, "--official", official, "--replace") == 0
    assert "packed" in capsys.readouterr().out
    assert _files(packed) == _files(source) and verify_record_folder(packed).ok  # swapped: the stale file is gone
    assert not [p for p in packed.parent.iterdir() if p.name.startswith(".")]


def test_a_dry_run_writes_nothing(mine, official, capsys):
    source = mine / "sim1" / "joint_pop"
    before = _tree(official, folders_untouched=True)
    assert _submit(source, "--official", official, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"would pack {source} -> {official / 'sim1' / 'joint_pop'}" in out
    assert "(dry run: nothing written)" in out and "without --dry-run" in out
    assert _tree(official, folders_untouched=True) == before

    _edit_json(source, _mean(0.99))  # a dry run refuses what a real one would
    assert _submit(source, "--official", official, "--dry-run") == 1
    assert "stored 0.99" in _refused_line(capsys.readouterr().out)
    assert _tree(official, folders_untouched=True) == before


def test_a_path_without_a_record_is_an_error(official, tmp_path, capsys):
    assert _submit(tmp_path / "nothing", "--official", official) == 2
    assert "no result record (record.json) there" in capsys.readouterr().err


def test_a_missing_official_folder_is_named(mine, tmp_path, capsys):
    assert _submit(mine / "sim1" / "joint_pop", "--official", tmp_path / "missing") == 1
    assert "no official results folder" in _refused_line(capsys.readouterr().out)


def test_the_default_official_folder_is_relative_to_the_working_directory(mine, official, monkeypatch, capsys):
    monkeypatch.chdir(official.parent.parent)
    assert _submit(mine / "sim1" / "joint_pop") == 0
    assert "next: git add leaderboard/official/sim1/joint_pop and open a pull request" in capsys.readouterr().out


def test_the_command_module_imports_stay_light():
    code = ("import sys, harness.cli.submit; heavy = [m for m in ('pyarrow', 'numpy', 'scipy', 'torch') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout.strip() == "[]"


def test_tests_computed_against_another_reference_are_refused_and_nothing_is_left(mine, official, capsys):
    """The packed copy is verified where it lands: its paired tests recomputed from the official reference's values
    (here Pop_R's as officially published differ from the submitter's own run of it)."""
    table = pq.read_table(official / "sim1" / "pop_rec" / "per_query.parquet")
    column = table["R@10"].to_numpy(zero_copy_only=False).astype(np.float64)
    column = np.where(np.isnan(column), np.nan, 1.0 - column)
    table = table.set_column(table.column_names.index("R@10"), "R@10", pa.array(column, mask=np.isnan(column)))
    pq.write_table(table, official / "sim1" / "pop_rec" / "per_query.parquet")
    before = _tree(official)
    source = mine / "sim1" / "joint_pop"
    assert verify_record_folder(source).ok
    assert _submit(source, "--official", official) == 1
    line = _refused_line(capsys.readouterr().out)
    assert "the packed copy does not verify" in line and "$.significance.rec[0]" in line
    assert str(official / "sim1" / "joint_pop" / "record.json") in line  # named where it would have gone
    assert "reference record other than the official one" in line
    assert _tree(official) == before  # no destination, no staging folder


def test_replacing_without_an_atomic_exchange_still_swaps_whole_folders(mine, official, monkeypatch):
    import harness.io

    monkeypatch.setattr(harness.io, "exchange_paths", lambda a, b: False)
    packed = official / "sim1" / "pop_rec"
    (packed / "stale.txt").write_text("old\n")
    assert pack_record(mine / "sim1" / "pop_rec", official, replace=True) == packed
    assert not (packed / "stale.txt").exists() and verify_record_folder(packed).ok
    assert not [p for p in packed.parent.iterdir() if p.name.startswith(".")]


def test_a_replace_killed_between_its_renames_gets_the_old_record_back(mine, official):
    """The fallback moves the old folder aside before moving the new one in; a packer killed in between leaves it
    hidden, and the next packer of that destination puts it back before anything else."""
    packed = official / "sim1" / "pop_rec"
    aside = official / "sim1" / ".pop_rec.pack-999999999-oldxyz"
    aside.mkdir()
    os.rename(packed, aside / "record")
    with pytest.raises(HarnessError, match="already holds the official record"):
        pack_record(mine / "sim1" / "pop_rec", official)
    assert verify_record_folder(packed).ok and not aside.exists()
