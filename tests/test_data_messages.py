"""Messages a user can act on: mixed line endings in a CSV (file, line, what to do; never DuckDB's advice to turn
its strict mode off) and a checksum mismatch while downloads are off (replace the local file, not download)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from harness.cli import main
from harness.data.compile import compile_dataset
from harness.data.fetch import line_ending_problem
from harness.errors import HarnessError
from test_data_movielens import fixture_csvs, make_ml25m_zip

ML_SMALL_MD5 = "31a303aabbc519bd33d025e44d6c2570"
LOGS = Path(__file__).parent / "fixtures" / "logs"


@pytest.mark.parametrize("data, expected", [
    (b"a\nb\nc\n", None),
    (b"a\r\nb\r\nc\r\n", None),
    (b"a\rb\rc", None),
    (b"no line end", None),
    (b"a\r\nb\r\nc\nd\r\n", (3, "line 1 ends with CRLF (\\r\\n), line 3 with LF (\\n)")),
    (b"a\nb\nc\r\nd\n", (3, "line 1 ends with LF (\\n), line 3 with CRLF (\\r\\n)")),
    (b"a\r\nb\rc\r\n", (2, "line 1 ends with CRLF (\\r\\n), line 2 with CR (\\r)")),
    (b"a\rb\rc\nd", (3, "line 1 ends with CR (\\r), line 3 with LF (\\n)")),
])
def test_line_ending_problem_at_every_chunk_boundary(tmp_path, data, expected):
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    assert {line_ending_problem(path, chunk=n) for n in (1, 2, 3, 5, 1 << 20)} == {expected}


def test_mixed_line_endings_in_an_archive_name_file_line_and_fix(tmp_path):
    lines = fixture_csvs()["tags.csv"]
    mixed = "\r\n".join(lines[:3]) + "\r\n" + "\n".join(lines[3:]) + "\n"  # CRLF, then LF from line 4 on
    archive = make_ml25m_zip(tmp_path / "ml-25m.zip", replace={"tags.csv": mixed})
    with pytest.raises(HarnessError) as caught:
        compile_dataset("ml-25m:min_user_interactions=3", path=archive, dest=tmp_path / "x.duckdb")
    message = str(caught.value)
    assert message.startswith("ml-25m.zip:ml-25m/tags.csv line 4: mixed line endings (line 1 ends with CRLF")
    assert "`dos2unix tags.csv`" in message and "re-pack ml-25m.zip" in message
    assert "strict" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-25m.zip"]  # nothing left behind


def test_other_csv_errors_drop_duckdbs_strict_mode_advice(tmp_path):
    lines = fixture_csvs()["tags.csv"]
    broken = "\n".join(lines[:2] + ['1,2,"unterminated,3'] + lines[2:]) + "\n"
    archive = make_ml25m_zip(tmp_path / "ml-25m.zip", replace={"tags.csv": broken})
    with pytest.raises(HarnessError, match=r"ml-25m.zip:ml-25m/tags.csv.*malformed CSV") as caught:
        compile_dataset("ml-25m:min_user_interactions=3", path=archive, dest=tmp_path / "x.duckdb")
    assert "strict_mode" not in str(caught.value)


def test_logs_read_mixed_line_endings_as_the_same_rows(tmp_path):
    """pyarrow's reader (harness.data.sources.logs) ends a line at LF, CRLF or CR alike."""
    mixed = tmp_path / "mixed"
    shutil.copytree(LOGS, mixed)
    for name in ("interactions.csv", "queries.csv"):
        lines = (LOGS / name).read_bytes().split(b"\n")
        (mixed / name).write_bytes(b"\r\n".join(lines[:4]) + b"\r\n" + b"\n".join(lines[4:]))
    assert line_ending_problem(mixed / "queries.csv") is not None
    plain = compile_dataset("logs", path=LOGS, dest=tmp_path / "a.duckdb")
    other = compile_dataset("logs", path=mixed, dest=tmp_path / "b.duckdb")
    for table in ("sequences", "queries", "qrels", "items"):
        assert rows(plain.path, table) == rows(other.path, table)


def rows(path: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_checksum_mismatch_offline_says_replace_the_local_file(tmp_path, capsys):
    bad = tmp_path / "ml-latest-small.zip"
    bad.write_bytes(b"not the archive")
    found = hashlib.md5(b"not the archive").hexdigest()
    code = main(["data", "build", "ml-small", "--offline", "--data-dir", str(tmp_path), "--cache-dir",
                 str(tmp_path / "cache")])
    assert code == 2
    err = capsys.readouterr().err
    assert (f"checksum mismatch for {bad}: expected MD5 {ML_SMALL_MD5}, found {found}. Downloads are off (--offline): "
            f"replace {bad} with the official ml-latest-small.zip (MD5 {ML_SMALL_MD5}, from https://") in err
    assert "download it" not in err and "run again" not in err
    # downloads allowed: deleting it lets the next run download it
    with pytest.raises(HarnessError, match=r"Delete it and run again to download it"):
        compile_dataset("ml-small", data_dir=tmp_path, allow_download=True, dest=tmp_path / "x.duckdb")


def test_checksum_mismatch_of_a_user_supplied_archive_says_replace_it(tmp_path):
    make_ml25m_zip(tmp_path / "ml-25m.zip")
    with pytest.raises(HarnessError, match=rf"Replace {tmp_path / 'ml-25m.zip'} with the official ml-25m.zip "
                                           r"\(MD5 6b51fb2759a8657d3bfcbfc42b592ada, from https://"):
        compile_dataset("ml-25m", data_dir=tmp_path, allow_download=True, dest=tmp_path / "x.duckdb")
