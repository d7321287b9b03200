"""Shared pytest settings for the benchmark suites in bench/.

The suites are named bench_*.py so that the unit-test run (`python -m pytest`, testpaths = tests) never
picks them up. pytest collects a file named on the command line whatever its name, but not a bench_*.py
found by walking a folder; this hook makes the one runner command work on the whole folder:

    python -m pytest bench --benchmark-only [--benchmark-save=NAME | --benchmark-compare=NNNN ...]

(docs/gate.md: saving a baseline, comparing with it, and the CI speed gate).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest's own python plugin already collects it
    return pytest.Module.from_parent(parent, path=file_path)
