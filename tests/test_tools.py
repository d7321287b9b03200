"""tools/: the preset-sizing script runs on a compiled dataset and prints a curve the harness's own scoring agrees with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.data.compile import build_dataset

REPO = Path(__file__).resolve().parents[1]


def test_t5_learning_curves_prints_one_line_per_epoch(tmp_path):
    build_dataset("sim2")
    out = tmp_path / "curve.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "t5_learning_curves.py"), "--dataset", "sim2", "--tasks", "rec,search",
         "--epochs", "2", "--d", "32", "--layers", "1", "--source-eos", "0", "--beam", "--eos-attention",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["examples"] == 1992  # SIM2's rec training instances + search pairs, as the adapter trains on
    epochs = lines[1:]
    assert [row["epoch"] for row in epochs] == [1, 2]
    for name in ("rec/valid", "rec/test", "search/valid", "search/test"):
        all_, head, torso = epochs[-1][f"{name} R@10 (first step)"]
        assert 0.0 <= all_ <= 1.0
    assert 1 <= epochs[-1]["rec/test distinct items"] <= 10  # the diverse beam search's distinct items of K = 10
    (weights,) = epochs[-1]["cross-attention on the last input token"]  # one decoder layer
    assert len(weights) == 4 and all(0.0 <= w <= 1.0 for w in weights)  # one mean softmax weight per head
    assert json.loads(out.read_text())["curve"] == epochs


def test_no_import_cycle_among_the_harness_modules():
    """`python tools/check_imports.py` is the check anyone can run; every import counts, inside functions too."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import check_imports
    finally:
        sys.path.pop(0)
    assert check_imports.cycles(check_imports.import_graph()) == []
    done = subprocess.run([sys.executable, str(REPO / "tools" / "check_imports.py")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0 and "no import cycle and no import against the layers" in done.stdout


def test_the_cycle_check_finds_cycles_through_function_level_and_relative_imports(tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import check_imports
    finally:
        sys.path.pop(0)
    pkg = tmp_path / "harness"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from harness.sub import b\n")  # inside a function: still an edge
    (pkg / "sub" / "b.py").write_text("from .. import a\n")  # relative, one level up
    (pkg / "sub" / "c.py").write_text("import harness.a\n")
    graph = check_imports.import_graph(tmp_path)
    assert graph["harness.a"] == {"harness.sub.b"} and graph["harness.sub.b"] == {"harness.a"}
    assert check_imports.cycles(graph) == [["harness.a", "harness.sub.b"]]


def test_the_layer_check_finds_upward_imports_and_unplaced_packages():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import check_imports
    finally:
        sys.path.pop(0)
    assert check_imports.upward_imports(check_imports.import_graph()) == []
    graph = {
        "harness.data.store": {"harness.errors", "harness.records.files"},  # data below records: upward
        "harness.records.files": {"harness.data.store"},  # downward: fine
        "harness.gate.compare": {"harness.leaderboard.tables"},  # one layer: fine
        "harness.newthing.x": set(),  # a package no layer names
    }
    layers = [{"errors"}, {"data"}, {"records"}, {"gate", "leaderboard"}]
    assert check_imports.upward_imports(graph, layers) == [
        "harness.data.store -> harness.records.files",
        "harness.newthing.x: its package 'newthing' is in no layer of LAYERS",
    ]


def _tool(name: str):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "tools"))


def test_tune_baseline_parses_a_grid_of_toml_literals_and_bare_words():
    tune = _tool("tune_baseline")
    grid = tune.parse_grid(["dims=[300],[200, 600]", "loss=ce,bce", "lr=0.001", "reweight=true"])
    assert grid == {"dims": [[300], [200, 600]], "loss": ["ce", "bce"], "lr": [0.001], "reweight": [True]}


def test_tune_baseline_writes_the_submission_with_changed_params_only(tmp_path):
    tune = _tool("tune_baseline")
    tune.write_config(REPO / "submissions" / "sasrec", {"loss": "bce", "max_epochs": 2, "weight_decay": 0.1}, tmp_path)
    import tomllib

    new = tomllib.loads((tmp_path / "config.toml").read_text())
    old = tomllib.loads((REPO / "submissions" / "sasrec" / "config.toml").read_text())
    assert new["params"] == {**old["params"], "loss": "bce", "max_epochs": 2, "weight_decay": 0.1}
    assert new["submission"] == old["submission"]


def test_tune_baseline_runs_a_grid_and_seed_table_recomputes_mean_and_sd(tmp_path):
    build_dataset("sim3")
    work = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "tune_baseline.py"), "submissions/diffrec", "sim3", "dims=[16],[32]",
         "max_epochs=2", "min_epoch_steps=1", "--seeds", "0", "1", "--work", str(work)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| {")]
    assert len(rows) == 2 and all("failed" not in row for row in rows)
    results = work / "results"
    record = json.loads(next(results.glob("sim3/diffrec-dims16-*/record.json")).read_text())
    per_seed = record["metrics"]["rec"]["R@10"]["per_seed"]
    assert sorted(per_seed) == ["0", "1"]
    table = subprocess.run([sys.executable, str(REPO / "tools" / "seed_table.py"), str(results),
                            "--compare", str(results)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert table.returncode == 0, table.stderr[-2000:]
    line = next(row for row in table.stdout.splitlines() if "diffrec-dims16" in row)
    import statistics

    values = list(per_seed.values())
    assert f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" in line
    assert line.rstrip().endswith("0.000 (0, 1) |")  # compared with itself
