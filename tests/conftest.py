"""Shared test settings: compiled datasets and caches go to a per-session temporary folder; archives are
read from $HARNESS_DATA_DIR (CI points it at ../shared/data) or from ../shared/data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("harness-cache")
    old = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(cache)
    if not os.environ.get("HARNESS_DATA_DIR") and SHARED_DATA.is_dir():
        os.environ["HARNESS_DATA_DIR"] = str(SHARED_DATA)
    yield cache
    if old is None:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    else:
        os.environ["HARNESS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def ml_small_zip() -> Path:
    path = Path(os.environ.get("HARNESS_DATA_DIR", SHARED_DATA)) / "ml-latest-small.zip"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path
