"""Where things live on disk. Every location can be set on the command line or by an environment variable.

- data dir (raw archives the user supplies or we download): --data-dir, $HARNESS_DATA_DIR,
  then <user cache>/jsr-harness/data
- cache dir (compiled DuckDB datasets, embeddings, checkpoints): --cache-dir, $HARNESS_CACHE_DIR,
  then <user cache>/jsr-harness
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jsr-harness"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("HARNESS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_root() / "data"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_root()


def compiled_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_dir(cache) / "datasets"
