"""The speed gate (`python -m harness.gate.speed`): ratios measured in one run against committed ones, a
failure confirmed by a second measurement, --update writing the baselines; limits-file errors name the key."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.gate import speed

REPO = Path(__file__).resolve().parents[1]

TINY_BENCH = """
import time

def test_fast(benchmark):
    benchmark.pedantic(time.sleep, args=(0.01,), rounds=3)

def test_slow(benchmark):
    benchmark.pedantic(time.sleep, args=({slow},), rounds=3)
"""


def write_limits(path: Path, checks: list[dict], statistic: str = "min") -> Path:
    path.write_text(json.dumps({"statistic": statistic, "checks": checks}))
    return path


def check(name="ratio", numerator="bench_tiny.py::test_slow", denominator="bench_tiny.py::test_fast",
          baseline=None, max_increase=1.0) -> dict:
    return {"name": name, "numerator": numerator, "denominator": denominator, "baseline": baseline,
            "max_increase": max_increase}


def test_update_then_gate_with_real_benchmarks(tmp_path, monkeypatch, capsys):
    """pytest-benchmark runs for real: --update stores the ratio (about 3), a same-speed rerun passes, and a
    numerator made 4x slower fails even after the confirming second measurement."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench_tiny.py").write_text(textwrap.dedent(TINY_BENCH.format(slow=0.03)))
    limits = write_limits(tmp_path / "speed.json", [check(max_increase=1.0)])
    assert speed.main(["--limits", str(limits), "--update"]) == 0
    saved = json.loads(limits.read_text())
    assert 2.0 < saved["checks"][0]["baseline"] < 4.5  # 30 ms / 10 ms, plus sleep overshoot
    bench_json = json.loads((tmp_path / "speed-benchmarks.json").read_text())
    assert {b["fullname"] for b in bench_json["benchmarks"]} == {"bench_tiny.py::test_fast", "bench_tiny.py::test_slow"}
    assert speed.main(["--limits", str(limits), "--json", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["checks"][0]["verdict"] in ("ok", "faster")

    (tmp_path / "bench_tiny.py").write_text(textwrap.dedent(TINY_BENCH.format(slow=0.12)))
    capsys.readouterr()
    assert speed.main(["--limits", str(limits)]) == 1
    out = capsys.readouterr()
    assert "measuring them once more" in out.err and "FAIL: slower than allowed: ratio" in out.out


def fake_measure(results: list[dict[str, float]]):
    calls = []

    def measure(checks, statistic, passes, calibration_rounds):
        calls.append([c.name for c in checks])
        return dict(results[len(calls) - 1]), {"benchmarks": []}, []

    return measure, calls


def run(tmp_path, checks, monkeypatch, results) -> tuple[int, list]:
    limits = write_limits(tmp_path / "speed.json", checks)
    measure, calls = fake_measure(results)
    monkeypatch.setattr(speed, "measure", measure)
    return speed.main(["--limits", str(limits)]), calls


def test_a_slow_first_measurement_is_confirmed_before_failing(tmp_path, monkeypatch):
    checks = [check(baseline=2.0, max_increase=0.5),
              check(name="other", numerator="b.py::test_n", denominator="b.py::test_d", baseline=1.0)]
    steady = {"b.py::test_n": 1.0, "b.py::test_d": 1.0}
    noisy = {"bench_tiny.py::test_slow": 4.0, "bench_tiny.py::test_fast": 1.0, **steady}  # ratio 4 > limit 3
    calm = {"bench_tiny.py::test_slow": 2.1, "bench_tiny.py::test_fast": 1.0}
    rc, calls = run(tmp_path, checks, monkeypatch, [noisy, calm])
    assert rc == 0
    assert calls == [["ratio", "other"], ["ratio"]]  # only the failing check is measured again
    rc, _ = run(tmp_path, checks, monkeypatch, [noisy, noisy])
    assert rc == 1


def test_missing_baseline_fails_and_says_update(tmp_path, monkeypatch, capsys):
    rc, _ = run(tmp_path, [check(baseline=None)], monkeypatch,
                [{"bench_tiny.py::test_slow": 2.0, "bench_tiny.py::test_fast": 1.0}])
    assert rc == 1
    assert "run with --update" in capsys.readouterr().out


def test_a_renamed_benchmark_is_named_in_the_error(tmp_path, monkeypatch, capsys):
    rc, _ = run(tmp_path, [check(baseline=1.0)], monkeypatch, [{"bench_tiny.py::test_fast": 1.0}])
    assert rc == 2
    assert "no result for ['bench_tiny.py::test_slow']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"statistic": "p99", "checks": [check()]}, "$.statistic: 'p99'"),
        ({"statistic": "min", "checks": []}, "$.checks is empty"),
        ({"statistic": "min", "checks": [{"name": "x"}]}, "$.checks[0]: missing ['denominator', 'max_increase', 'numerator']"),
        ({"statistic": "min", "checks": [check(baseline=-1)]}, "$.checks[0].baseline: -1"),
        ({"statistic": "min", "checks": [check(max_increase="x")]}, "$.checks[0].max_increase: 'x'"),
    ],
)
def test_limits_file_errors_name_the_key(tmp_path, spec, message):
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(HarnessError) as err:
        speed.load_limits(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_ids_match_fullnames_relative_to_a_deeper_rootdir():
    bench_json = {"benchmarks": [{"fullname": "bench_x.py::test_a", "stats": {"min": 1.5}}]}
    assert speed.statistic_by_id(bench_json, "min", ["bench/bench_x.py::test_a", "bench/other.py::test_b"]) == {
        "bench/bench_x.py::test_a": 1.5
    }


def test_committed_limits_name_existing_benchmarks():
    """Every node id in bench/baselines/speed.json is a benchmark pytest collects in bench/, parameters included
    (so a rename or a new parametrisation fails here, not only in CI's speed gate), and every check has a
    committed baseline."""
    _, checks = speed.load_limits(REPO / speed.DEFAULT_LIMITS)
    node_ids = speed.benchmark_ids(checks)
    files = sorted({node.partition("::")[0] for node in node_ids})
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert node_ids and set(node_ids) <= set(collected), sorted(set(node_ids) - set(collected))
    assert all(c.baseline is not None for c in checks)


def test_calibration_workload_runs():
    speed.calibration_workload(n_rows=1000)
