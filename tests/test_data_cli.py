"""`python -m harness data ...` (harness.cli.data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def cache(tmp_path):
    return str(tmp_path / "cache")


def test_build_then_skip_then_force(capsys, cache, ml_small_zip):
    data = str(ml_small_zip.parent)
    assert main(["data", "build", "ml-small", "--data-dir", data, "--cache-dir", cache, "--offline"]) == 0
    out = capsys.readouterr().out
    assert "ml-small: compiled in" in out and "fingerprint sha256:" in out and "9,691 items, 610 users" in out
    assert main(["data", "build", "ml-small", "--data-dir", data, "--cache-dir", cache]) == 0
    assert "already compiled with the same inputs" in capsys.readouterr().out
    assert main(["data", "build", "ml-small", "--data-dir", data, "--cache-dir", cache, "--force"]) == 0
    assert "compiled in" in capsys.readouterr().out

    assert main(["data", "stats", "ml-small", "--cache-dir", cache]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:3] == ["R", "#", "items"]
    assert table[2].split() == ["9,691", "610", "0.01705", "0.72", "9,437", "1,473", "17.07", "0.32", "0.60",
                                "0.67", "0.71"]
    assert main(["data", "stats", "ml-small", "--cache-dir", cache, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["rec_users"] == 610 and row["fingerprint"].startswith("sha256:")

    assert main(["data", "show", "ml-small", "--cache-dir", cache]) == 0
    shown = capsys.readouterr().out
    assert "input        ml-latest-small.zip  md5 31a303aabbc519bd33d025e44d6c2570  978,202 bytes" in shown
    assert "rec_test_target_not_in_training" in shown
    assert main(["data", "show", "ml-small", "--cache-dir", cache, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"]["queries_by_split"] == {"train": 1179, "valid": 147, "test": 147}
    assert info["split_params"]["split_seed"] == 0

    assert main(["data", "list", "--cache-dir", cache]) == 0
    listing = capsys.readouterr().out
    assert "[compiled: ml-small.duckdb]" in listing and "sim1" in listing and "not compiled" in listing


def test_errors_exit_2_with_a_message(capsys, cache, tmp_path):
    assert main(["data", "stats", "ml-small", "--cache-dir", cache]) == 2
    assert "`python -m harness data build ml-small`" in capsys.readouterr().err
    assert main(["data", "build", "ml-smal", "--cache-dir", cache]) == 2
    assert "unknown dataset 'ml-smal'. Did you mean 'ml-small'" in capsys.readouterr().err
    assert main(["data", "build", "ml-small", "--offline", "--data-dir", str(tmp_path / "empty"),
                 "--cache-dir", cache]) == 2
    assert "put ml-latest-small.zip (MD5 31a303aabbc519bd33d025e44d6c2570) in" in capsys.readouterr().err


def test_cli_module_imports_stay_light():
    code = ("import sys, harness.cli.data; heavy = [m for m in ('duckdb', 'numpy', 'torch', 'scipy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
