"""The CI speed gate: ratios of benchmark times measured in one run, checked against committed ratios.

    python -m harness.gate.speed [--limits bench/baselines/speed.json] [--update] [--json FILE]

Why ratios and not times: a time saved on one machine says little on another (CPU model, clock, and on
a shared 2-core CI box, whatever else is running). Each check here divides one benchmark by a reference
measured in the same run on the same machine: our metrics by pytrec_eval on the same rankings, our decoder
by the bare forward passes it makes, the ml-small compile by a fixed DuckDB + numpy workload
(`calibration`, measured right before and right after the benchmarks). Machine speed cancels out of the
ratio; what is left moves when our code gets slower relative to the reference. The statistic is each
benchmark's minimum over its rounds: interference from other processes only ever adds time, so the
fastest round is the best estimate of the undisturbed cost.

Against the rest of the noise: the two sides of a ratio run back to back, with one math-library thread;
a check over its limit is measured once more and fails only if the best of both runs is still over.

A check fails when its ratio exceeds `baseline * (1 + max_increase)`; `--update` measures twice, writes the
best ratios as the new baselines (keeping each check's max_increase), and the run's pytest-benchmark JSON
beside them (for `--benchmark-compare` on a comparable machine; see docs/gate.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.io import write_json_atomic

DEFAULT_LIMITS = Path("bench") / "baselines" / "speed.json"  # node ids in it are relative to the working folder
CALIBRATION = "calibration"
STATISTICS = ("min", "median", "mean")


@dataclass(frozen=True)
class Check:
    name: str
    numerator: str  # a pytest node id, e.g. bench/bench_metrics.py::test_harness
    denominator: str  # a node id, or "calibration"
    baseline: float | None  # the committed ratio; None before the first --update
    max_increase: float  # fail above baseline * (1 + max_increase)
    why: str = ""

    @property
    def limit(self) -> float | None:
        return None if self.baseline is None else self.baseline * (1.0 + self.max_increase)


@dataclass(frozen=True)
class Outcome:
    check: Check
    numerator_s: float
    denominator_s: float

    @property
    def ratio(self) -> float:
        return self.numerator_s / self.denominator_s

    @property
    def verdict(self) -> str:
        if self.check.limit is None:
            return "no baseline"
        if self.ratio > self.check.limit:
            return "SLOWER"
        if self.ratio < self.check.baseline / (1.0 + self.check.max_increase):
            return "faster"
        return "ok"


# ---- the limits file -----------------------------------------------------------------------------------
def load_limits(path: Path) -> tuple[dict, list[Check]]:
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such speed-limits file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read the speed limits ({exc})") from None
    statistic = spec.get("statistic")
    if statistic not in STATISTICS:
        raise HarnessError(f"{path}: $.statistic: {statistic!r}; give one of {', '.join(STATISTICS)}")
    checks = []
    for i, entry in enumerate(spec.get("checks") or []):
        where = f"{path}: $.checks[{i}]"
        missing = {"name", "numerator", "denominator", "max_increase"} - set(entry)
        if missing:
            raise HarnessError(f"{where}: missing {sorted(missing)}")
        baseline, max_increase = entry.get("baseline"), entry["max_increase"]
        if baseline is not None and not (isinstance(baseline, (int, float)) and baseline > 0):
            raise HarnessError(f"{where}.baseline: {baseline!r} must be a positive number or null")
        if not (isinstance(max_increase, (int, float)) and max_increase >= 0):
            raise HarnessError(f"{where}.max_increase: {max_increase!r} must be a number >= 0")
        checks.append(Check(entry["name"], entry["numerator"], entry["denominator"], baseline, float(max_increase),
                            entry.get("why", "")))
    if not checks:
        raise HarnessError(f"{path}: $.checks is empty")
    return spec, checks


def benchmark_ids(checks: list[Check]) -> list[str]:
    """Each check's numerator then its denominator: pytest runs them in this order, so the two sides of a
    ratio are measured back to back, under the same load as far as the machine allows."""
    ids = [node for c in checks for node in (c.numerator, c.denominator) if node != CALIBRATION]
    return list(dict.fromkeys(ids))


# ---- measuring -----------------------------------------------------------------------------------------
def calibration_workload(n_rows: int = 1_000_000) -> None:
    """A fixed DuckDB + numpy job shaped like the compiler's work (window over users, group-by popularity,
    a sort and a hash of a column): the yardstick the ml-small compile is divided by."""
    import hashlib

    import duckdb
    import numpy as np

    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE TABLE t AS SELECT (i * 2654435761) % 5003 AS u, (i * 40503) % 10007 AS item, i AS ts "
            f"FROM range({n_rows}) r(i)"
        )
        con.execute("SELECT sum(r) FROM (SELECT row_number() OVER (PARTITION BY u ORDER BY ts) AS r FROM t)").fetchall()
        con.execute("SELECT item, count(*) AS c FROM t GROUP BY item ORDER BY c DESC, item").fetchall()
        items = con.execute("SELECT item FROM t").fetchnumpy()["item"]
    finally:
        con.close()
    np.argsort(items, kind="stable")
    hashlib.sha256(np.ascontiguousarray(items).tobytes()).hexdigest()


def time_calibration(rounds: int) -> list[float]:
    calibration_workload(n_rows=10_000)  # warm-up: imports and DuckDB start-up are not the yardstick
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        calibration_workload()
        times.append(time.perf_counter() - started)
    return times


def run_benchmarks(node_ids: list[str], json_path: Path) -> dict:
    """Run the named pytest-benchmark tests in a fresh interpreter; the benchmark JSON it writes."""
    command = [sys.executable, "-m", "pytest", *node_ids, "--benchmark-only", f"--benchmark-json={json_path}",
               "-q", "-p", "no:cacheprovider"]
    print("speed gate: " + " ".join(command[1:]), file=sys.stderr, flush=True)
    proc = subprocess.run(command, env=benchmark_environment())
    if proc.returncode != 0:
        raise HarnessError(f"the benchmarks failed (pytest exit status {proc.returncode}); see the output above")
    return json.loads(json_path.read_text(encoding="utf-8"))


def benchmark_environment() -> dict[str, str]:
    """One math-library thread (unless the caller set it): on a 2-core box a second busy core then slows a
    benchmark and its reference alike, instead of only whichever was running multi-threaded at the time."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


def statistic_by_id(bench_json: dict, statistic: str, node_ids: list[str]) -> dict[str, float]:
    """{node id as the limits name it: statistic}. pytest names a test relative to its rootdir, which is the
    working folder when that holds the project's pyproject.toml / pytest.ini, but may be deeper without one:
    an id also matches a fullname it ends with."""
    by_fullname = {bench["fullname"]: float(bench["stats"][statistic]) for bench in bench_json["benchmarks"]}
    out = {}
    for node_id in node_ids:
        if node_id in by_fullname:
            out[node_id] = by_fullname[node_id]
            continue
        matches = [name for name in by_fullname if node_id.endswith("/" + name)]
        if len(matches) == 1:
            out[node_id] = by_fullname[matches[0]]
    return out


def evaluate(checks: list[Check], seconds: dict[str, float]) -> list[Outcome]:
    outcomes = []
    for check in checks:
        missing = [b for b in (check.numerator, check.denominator) if b not in seconds]
        if missing:
            raise HarnessError(
                f"speed check {check.name!r}: no result for {missing} (renamed or skipped benchmark?); "
                f"measured: {sorted(seconds)}"
            )
        outcomes.append(Outcome(check, seconds[check.numerator], seconds[check.denominator]))
    return outcomes


def format_outcomes(outcomes: list[Outcome], statistic: str) -> str:
    header = ("check", "numerator", "denominator", "ratio", "baseline", "limit", "change", "verdict")
    rows = [header]
    for o in outcomes:
        base = o.check.baseline
        rows.append((
            o.check.name, f"{o.numerator_s:.3f} s", f"{o.denominator_s:.3f} s", f"{o.ratio:.4g}",
            "-" if base is None else f"{base:.4g}", "-" if o.check.limit is None else f"{o.check.limit:.4g}",
            "-" if base is None else f"{100 * (o.ratio / base - 1):+.0f}%", o.verdict,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"speed gate ({statistic} of each benchmark's rounds; ratio = numerator / denominator, same run):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def updated_limits(spec: dict, outcomes: list[Outcome]) -> dict:
    ratios = {o.check.name: o.ratio for o in outcomes}
    out = dict(spec)
    out["checks"] = [{**entry, "baseline": float(f"{ratios[entry['name']]:.6g}")} for entry in spec["checks"]]
    return out


# ---- command line --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.gate.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", type=Path, default=DEFAULT_LIMITS, help=f"checks and baselines (default {DEFAULT_LIMITS}); run from the folder its node ids are relative to")
    parser.add_argument("--update", action="store_true", help="write the measured ratios as the new baselines")
    parser.add_argument("--calibration-rounds", type=int, default=3, help="rounds before and after the benchmarks (default 3)")
    parser.add_argument("--passes", type=int, help="run the benchmarks this many times, keep each one's best "
                        "(default 1; 2 with --update, so a baseline is not set in a noisy moment)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the outcome as JSON")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    spec, checks = load_limits(args.limits)
    statistic = spec["statistic"]
    passes = args.passes or (2 if args.update else 1)
    seconds, bench_json, calibration = measure(checks, statistic, passes, args.calibration_rounds)
    outcomes = evaluate(checks, seconds)
    slower = [o.check for o in outcomes if o.verdict == "SLOWER"]
    if slower and not args.update:
        # A busy neighbour can slow one benchmark and not its reference: a failure must repeat to count.
        print(format_outcomes(outcomes, statistic))
        print(f"speed gate: {', '.join(c.name for c in slower)} over the limit; measuring them once more", file=sys.stderr)
        again, _, more = measure(slower, statistic, 1, args.calibration_rounds)
        seconds = {key: min(value, again.get(key, value)) for key, value in seconds.items()}
        calibration += more
        outcomes = evaluate(checks, seconds)
    print(format_outcomes(outcomes, statistic))
    if args.json:
        write_json_atomic(args.json, {
            "statistic": statistic,
            "calibration_s": calibration,
            "checks": [{"name": o.check.name, "numerator_s": o.numerator_s, "denominator_s": o.denominator_s,
                        "ratio": o.ratio, "baseline": o.check.baseline, "limit": o.check.limit,
                        "verdict": o.verdict} for o in outcomes],
        })
    if args.update:
        write_json_atomic(args.limits, updated_limits(spec, outcomes))
        benchmarks_file = args.limits.with_name(args.limits.stem + "-benchmarks.json")
        write_json_atomic(benchmarks_file, bench_json)
        print(f"baselines written: {args.limits} (ratios) and {benchmarks_file} (pytest-benchmark JSON); commit both")
        return 0
    unset = [o.check.name for o in outcomes if o.verdict == "no baseline"]
    if unset:
        print(f"FAIL: no committed baseline for {unset}; run with --update and commit {args.limits}")
        return 1
    slower_names = [o.check.name for o in outcomes if o.verdict == "SLOWER"]
    print(f"FAIL: slower than allowed: {', '.join(slower_names)}" if slower_names else "PASS")
    return 1 if slower_names else 0


def measure(checks: list[Check], statistic: str, passes: int, calibration_rounds: int
            ) -> tuple[dict[str, float], dict, list[float]]:
    """({benchmark id: seconds, best over `passes`}, the last pass's pytest-benchmark JSON, calibration times).

    The calibration workload runs right before and right after each pass of the benchmarks."""
    needs_calibration = any(c.denominator == CALIBRATION for c in checks)
    seconds: dict[str, float] = {}
    calibration: list[float] = []
    bench_json: dict = {}
    for _ in range(max(1, passes)):
        before = time_calibration(calibration_rounds) if needs_calibration else []
        node_ids = benchmark_ids(checks)
        with tempfile.TemporaryDirectory(prefix="harness-speed-") as tmp:
            bench_json = run_benchmarks(node_ids, Path(tmp) / "benchmarks.json")
        after = time_calibration(calibration_rounds) if needs_calibration else []
        calibration += before + after
        for key, value in statistic_by_id(bench_json, statistic, node_ids).items():
            seconds[key] = min(value, seconds.get(key, math.inf))
    if needs_calibration:
        seconds[CALIBRATION] = _statistic(calibration, statistic)
    return seconds, bench_json, calibration


def _statistic(values: list[float], statistic: str) -> float:
    import statistics

    if not values:
        return math.nan
    return {"min": min, "median": statistics.median, "mean": statistics.fmean}[statistic](values)


if __name__ == "__main__":
    sys.exit(main())
