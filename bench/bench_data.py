"""Compile speed and memory as a user waits for it: `python -m harness data build logs --path FOLDER` end to end
(raw Parquet files in -> compiled, fingerprinted DuckDB file out) against a pandas implementation of the same
protocol doing the same job (bench/pandas_compile.py: same files in, the same six tables out as Parquet), and
ml-small end to end in-process (the CI speed gate's `ml-small-compile` check).

    python -m pytest bench/bench_data.py --benchmark-only            # 2.5M interactions (a tenth of ML-25M)
    HARNESS_BENCH_FULL=1 python -m pytest bench/bench_data.py --benchmark-only   # also the full 25M
    PYTHONPATH=. python bench/bench_data.py [--rounds N] [SCALE ...]  # printed table; SCALE 0.1 (default), 1.0

The input is a synthetic log the size of ML-25M (bench/synthetic_logs.py: 25M interactions, 162,541 users,
59,047 items, 50,000 queries, 350k qrels; Parquet, integer ids), generated once per scale into
$HARNESS_BENCH_DIR (default: <tmp>/jsr-harness-bench) and reused; generating is not timed.

Every run is a fresh subprocess (Python start-up and imports included: what a user waits for), timed from the
parent: wall time, CPU seconds (user + system of the child and everything it waited for, from os.wait4) and the
child's peak RSS. The two sides alternate (pandas, harness, pandas, harness, ...) so that a change in the
machine's load hits both alike; each test times one side with pytest-benchmark and runs the other as its
untimed `setup`, and both sides' measurements, the ratios and the row counts go into extra_info. The row counts
of every compiled table (per split too) must be equal on both sides, or the test fails: that is what shows the
pandas reference implements the same protocol. Rounds per test: $HARNESS_BENCH_ROUNDS (default 3 at a tenth,
1 at full size).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_logs import generate_logs  # noqa: E402

SCALES = {"2.5M": 0.1, "25M": 1.0}


def bench_dir() -> Path:
    return Path(os.environ.get("HARNESS_BENCH_DIR") or Path(tempfile.gettempdir()) / "jsr-harness-bench")


def logs_folder(scale: float) -> Path:
    return generate_logs(bench_dir() / f"logs-{scale:g}", scale)


def measure(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `command` in a fresh process: wall s, CPU s (user + sys, children included), peak RSS MiB, stdout."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0), err.seek(0)
    stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "stdout": stdout}


def run_harness(folder: Path, work: Path) -> dict:
    cache = work / "harness-cache"
    r = measure([sys.executable, "-m", "harness", "data", "build", "logs", "--path", str(folder),
                 "--cache-dir", str(cache), "--force"])
    import duckdb

    con = duckdb.connect(str(cache / "datasets" / "logs.duckdb"), read_only=True)
    try:
        manifest = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM manifest").fetchall()}
    finally:
        con.close()
    r.pop("stdout")
    return {**r, "counts": _normalised(manifest["counts"]), "fingerprint": manifest["fingerprint"]}


def run_pandas(folder: Path, work: Path) -> dict:
    out = work / "pandas-out"
    shutil.rmtree(out, ignore_errors=True)
    r = measure([sys.executable, str(REPO / "bench" / "pandas_compile.py"), str(folder), str(out)],
                env={"PYTHONPATH": str(REPO)})
    counts = json.loads(r.pop("stdout").strip().splitlines()[-1])
    return {**r, "counts": _normalised(counts)}


def _normalised(counts: dict) -> dict:
    return {k: ({s: int(n) for s, n in sorted(v.items())} if isinstance(v, dict) else int(v))
            for k, v in sorted(counts.items())}


SIDES = {"harness": run_harness, "pandas": run_pandas}


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Best (minimum) wall / CPU / peak RSS per side and the harness / pandas ratios (below 1: harness faster)."""
    best = {side: {m: min(r[m] for r in rs) for m in ("wall_s", "cpu_s", "peak_rss_mib")} for side, rs in runs.items()}
    ratio = {m: round(best["harness"][m] / best["pandas"][m], 3) for m in ("wall_s", "cpu_s", "peak_rss_mib")}
    return {"best": best, "harness_over_pandas": ratio}


def check_same_counts(runs: dict[str, list[dict]]) -> dict:
    counts = {side: [r["counts"] for r in rs] for side, rs in runs.items()}
    first = counts["harness"][0]
    for side, seen in counts.items():
        for c in seen:
            assert c == first, f"row counts differ ({side}):\n{json.dumps(c)}\nvs harness:\n{json.dumps(first)}"
    return first


# ---- pytest -----------------------------------------------------------------------------------------------
_RUNS: dict[str, dict[str, list[dict]]] = {}


def _rounds(label: str) -> int:
    return int(os.environ.get("HARNESS_BENCH_ROUNDS") or (3 if SCALES[label] < 1 else 1))


@pytest.fixture(scope="module")
def work_dir():
    with tempfile.TemporaryDirectory(prefix="bench-data-") as folder:
        yield Path(folder)


@pytest.mark.parametrize("label", list(SCALES))
@pytest.mark.parametrize("side", ["harness", "pandas"])
def test_logs_end_to_end(benchmark, side, label, work_dir):
    """One side timed by pytest-benchmark; the other run (untimed) before each round, so they alternate."""
    if SCALES[label] >= 1 and os.environ.get("HARNESS_BENCH_FULL") != "1":
        pytest.skip("25M interactions only on demand (HARNESS_BENCH_FULL=1): ~1 min to generate, minutes to run")
    folder = logs_folder(SCALES[label])
    other = "pandas" if side == "harness" else "harness"
    runs = _RUNS.setdefault(label, {"harness": [], "pandas": []})

    def setup():
        runs[other].append(SIDES[other](folder, work_dir))

    def timed():
        runs[side].append(SIDES[side](folder, work_dir))

    benchmark.pedantic(timed, setup=setup, rounds=_rounds(label), iterations=1)
    counts = check_same_counts(runs)
    summary = summarise(runs)
    benchmark.extra_info.update({"rows": label, "counts": counts, **summary,
                                 "runs": {s: [{k: v for k, v in r.items() if k != "counts"} for r in rs]
                                          for s, rs in runs.items()}})
    print(f"\n{label}: {json.dumps(summary)}")


def _ml_small_zip() -> Path:
    folder = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "data")
    return folder / "ml-latest-small.zip"


def test_ml_small_end_to_end(benchmark, tmp_path):
    from harness.data.compile import compile_dataset

    archive = _ml_small_zip()
    if not archive.exists():
        pytest.skip(f"{archive} is not available")
    compile_dataset("ml-small", data_dir=archive.parent, dest=tmp_path / "warm.duckdb", allow_download=False)

    def once():
        return compile_dataset("ml-small", data_dir=archive.parent, dest=tmp_path / "ml-small.duckdb",
                               allow_download=False, force=True)

    benchmark.pedantic(once, rounds=5, iterations=1)


# ---- command line -----------------------------------------------------------------------------------------
def main(argv: list[str]) -> None:
    rounds = 3
    if "--rounds" in argv:
        i = argv.index("--rounds")
        rounds = int(argv[i + 1])
        del argv[i:i + 2]
    scales = [float(a) for a in argv] or [0.1]
    with tempfile.TemporaryDirectory(prefix="bench-data-") as work:
        for scale in scales:
            t0 = time.perf_counter()
            folder = logs_folder(scale)
            print(f"scale {scale:g}: input {folder} ready in {time.perf_counter() - t0:.1f} s (not timed)", flush=True)
            runs: dict[str, list[dict]] = {"harness": [], "pandas": []}
            for i in range(rounds):
                for side in (("pandas", "harness") if i % 2 == 0 else ("harness", "pandas")):
                    r = SIDES[side](folder, Path(work))
                    runs[side].append(r)
                    print(f"  {side:8s} {r['wall_s']:7.2f} s wall {r['cpu_s']:7.2f} CPU-s "
                          f"{r['peak_rss_mib']:7.0f} MiB  (load {os.getloadavg()[0]:.1f})", flush=True)
            counts = check_same_counts(runs)
            print(f"  row counts equal on both sides: {json.dumps(counts)}")
            print(f"  best of {rounds}: {json.dumps(summarise(runs))}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
