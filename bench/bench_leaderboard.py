"""Leaderboard build speed: 1,000 result records -> the whole static site.

    python -m pytest bench/bench_leaderboard.py --benchmark-only     # pytest-benchmark table
    PYTHONPATH=. python bench/bench_leaderboard.py                  # wall and CPU time per stage, printed

The records are synthetic (harness.leaderboard.synthetic): 112 datasets x the paper's 9-submission line-up
(Gen_R, Gen_S, Gen_R+S with its paired tests, 6 baselines), 2 seeds each, 4 cutoffs on half the datasets
and 3 on the others: 1,008 records, as many as a sweep over simulation parameters produces. The build
validates every record against the schema (the largest share of the time: ~10 ms a record in pure
Python jsonschema, spread over the machine's cores from 64 records on), computes the tables, renders
124 pages and swaps the site in.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.leaderboard import build_site
from harness.leaderboard.collect import collect
from harness.leaderboard.site import _prepare, _render_pages, _write_site
from harness.leaderboard.synthetic import synthetic_records, write_records

N_DATASETS = 112  # x 9 submissions = 1,008 records


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("records")
    write_records(root, synthetic_records(N_DATASETS))
    return root


def test_build_site_from_1000_records(benchmark, records_dir, tmp_path):
    report = benchmark.pedantic(build_site, args=(records_dir, tmp_path / "site"), rounds=3, iterations=1)
    assert report.records == N_DATASETS * 9 and not report.skipped


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (validation's worker processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stages(records_dir: Path, out: Path) -> dict[str, tuple[float, float]]:
    """(wall s, CPU s) per stage. On a shared, loaded machine the CPU time is the steadier number: wall
    time there mostly measures waiting for a core."""
    timings = {}

    def timed(name, fn, *args):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        result = fn(*args)
        timings[name] = (time.perf_counter() - wall, _cpu_seconds() - cpu)
        return result

    collection = timed("read + validate", collect, records_dir)
    site = timed("tables + views", _prepare, collection)
    pages = timed("render pages", _render_pages, site)
    timed("write + swap", _write_site, out, pages, site)
    return timings


if __name__ == "__main__":
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "records"
        write_records(root, synthetic_records(N_DATASETS))
        stages = _stages(root, Path(tmp) / "site")
        for name, (wall, cpu) in stages.items():
            print(f"{name:<16} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
        print(f"{'total':<16} wall {sum(w for w, _ in stages.values()):6.2f} s   "
              f"cpu {sum(c for _, c in stages.values()):6.2f} s   ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
