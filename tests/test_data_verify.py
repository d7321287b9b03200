"""Compiled datasets are verified, not trusted (harness.data.integrity): an edited or truncated file is refused by
CompiledDataset.open and `run`, `data verify` exits 1 naming it, `data list` marks it, `data build` rebuilds it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from harness.cli import main
from harness.data import integrity
from harness.data.compile import compile_dataset
from harness.data.integrity import DamagedDatasetError, verify_file
from harness.data.store import CompiledDataset

SIM2 = "sha256:da45368efc49f106b37aac5111e146863274f40b65615ca8e6fc15cfa50d5d97"  # bench/baselines/quick/sim2


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def build(name: str, cache: Path, **kw):
    return compile_dataset(name, cache_dir=cache, **kw)


def edit(path: Path, sql: str) -> None:
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()


def test_compiled_file_verifies_and_is_remembered_until_it_changes(cache):
    out = build("sim2", cache)
    assert out.fingerprint == SIM2  # the digest is a manifest key outside the fingerprint: fingerprints unchanged
    digest = out.manifest["content_digest"]
    assert digest["fingerprint"] == SIM2 and set(digest["tables"]) == {
        "items", "users", "sequences", "rec_examples", "queries", "qrels"}
    integrity.forget_verified()
    assert verify_file(out.path)[1].how == "content digest"
    assert verify_file(out.path)[1].how == "already verified"
    assert verify_file(out.path, full=True)[1].how == "fingerprint"  # data verify never takes the shortcut
    with CompiledDataset.open("sim2", cache_dir=cache) as ds:
        assert ds.fingerprint == SIM2
    before = out.path.stat().st_mtime_ns
    edit(out.path, "UPDATE qrels SET item_id = item_id + 100 WHERE query_id = 0")  # written, then undone:
    edit(out.path, "UPDATE qrels SET item_id = item_id - 100 WHERE query_id = 0")  # same content, a changed file
    assert out.path.stat().st_mtime_ns != before
    assert verify_file(out.path)[1].how == "content digest"  # checked again (and still fine)


def test_digest_of_another_duckdb_version_falls_back_to_the_fingerprint(cache):
    out = build("sim2", cache)
    digest = {**out.manifest["content_digest"], "duckdb_version": "0.0.1", "tables": {}}
    edit(out.path, f"UPDATE manifest SET value = '{json.dumps(digest)}' WHERE key = 'content_digest'")
    assert verify_file(out.path)[1].how == "fingerprint"
    edit(out.path, "DELETE FROM manifest WHERE key = 'content_digest'")  # compiled before digests existed
    assert verify_file(out.path)[1].how == "fingerprint"


def test_edited_qrels_row_is_refused_by_open_run_and_verify(cache, tmp_path, capsys):
    out = build("sim2", cache)
    with CompiledDataset.open("sim2", cache_dir=cache):  # verified and remembered before the edit
        pass
    edit(out.path, "UPDATE qrels SET item_id = (item_id + 1) % 30 WHERE query_id = 0 AND item_id = "
                   "(SELECT min(item_id) FROM qrels WHERE query_id = 0)")
    rebuild = f"`python -m harness data build sim2 --force --cache-dir {cache}`"
    with pytest.raises(DamagedDatasetError) as caught:
        CompiledDataset.open("sim2", cache_dir=cache)
    message = str(caught.value)
    assert str(out.path) in message and rebuild in message
    assert f"its manifest records {SIM2}, its tables give sha256:" in message
    assert "qrels (1,200 rows when compiled, 1,200 now)" in message

    assert main(["data", "verify", "sim2", "--cache-dir", str(cache)]) == 1
    err = capsys.readouterr().err
    assert f"sim2: FAILED: {out.path} does not match its fingerprint" in err and SIM2 in err and rebuild in err

    # `python -m harness run` opens every dataset in its plan, before anything trains
    code = main(["run", "submissions/pop_rec", "-d", "sim2", "--cache-dir", str(cache), "--out",
                 str(tmp_path / "results"), "--no-site", "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err
    assert str(out.path) in err and "does not match its fingerprint" in err
    assert not (tmp_path / "results").exists()

    # data build does not call it "already compiled": it is rebuilt, and then verifies
    assert main(["data", "build", "sim2", "--cache-dir", str(cache)]) == 0
    printed = capsys.readouterr().out
    assert "the compiled file was damaged, so it was rebuilt" in printed and "already compiled" not in printed
    assert main(["data", "verify", "sim2", "--cache-dir", str(cache)]) == 0
    assert f"sim2: OK, its tables give the fingerprint its manifest records ({SIM2}" in capsys.readouterr().out


def test_edited_manifest_is_refused(cache):
    out = build("sim2:q_match=0.5", cache)
    edit(out.path, """UPDATE manifest SET value = '"sim2:q_match=0.75"' WHERE key = 'dataset'""")
    with pytest.raises(DamagedDatasetError, match=r"dataset, parameters or input files changed"):
        CompiledDataset.open(out.path)


def test_truncated_file_is_marked_damaged_and_rebuilt(cache, capsys):
    out = build("sim1", cache)
    build("sim3", cache)
    os.truncate(out.path, out.path.stat().st_size * 6 // 10)

    assert main(["data", "list", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert "[damaged: sim1.duckdb]" in listing and "[compiled: sim3.duckdb]" in listing
    assert f"damaged: {out.path} is damaged or truncated: DuckDB cannot read it" in listing
    with pytest.raises(DamagedDatasetError, match=r"sim1.duckdb is damaged or truncated.*data build sim1 --force"):
        CompiledDataset.open("sim1", cache_dir=cache)
    assert main(["data", "verify", "sim1", "sim3", "--cache-dir", str(cache)]) == 1
    captured = capsys.readouterr()
    assert "sim1: FAILED" in captured.err and "sim3: OK" in captured.out

    assert main(["data", "build", "sim1", "--cache-dir", str(cache)]) == 0
    printed = capsys.readouterr().out
    assert "sim1: the compiled file was damaged, so it was rebuilt" in printed and "compiled in" in printed
    assert main(["data", "list", "--cache-dir", str(cache)]) == 0
    assert "[compiled: sim1.duckdb]" in capsys.readouterr().out
    with CompiledDataset.open("sim1", cache_dir=cache) as ds:
        assert ds.fingerprint == out.fingerprint


def test_verify_names_a_missing_file_and_takes_paths(cache, capsys):
    out = build("sim3", cache)
    assert main(["data", "verify", str(out.path)]) == 0
    assert "sim3: OK" in capsys.readouterr().out
    assert main(["data", "verify", "sim1", "--cache-dir", str(cache)]) == 1
    assert "no compiled file" in capsys.readouterr().err
