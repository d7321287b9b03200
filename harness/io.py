"""Atomic file writes: nothing is ever left half-written.

Every writer goes through a temporary file in the destination folder, then os.replace(): a reader sees
the old file or the new one, never a mix, and a SIGKILL mid-write leaves the previous good file usable.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest`, on error it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers such as DuckDB want to create the file themselves
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        for leftover in (tmp_path, Path(str(tmp_path) + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def write_text_atomic(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def canonical_json(obj: Any) -> str:
    """The one JSON rendering used for hashing and for files people diff: sorted keys, fixed spacing."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json_atomic(dest: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(dest, canonical_json(obj))
