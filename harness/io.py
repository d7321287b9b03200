"""Atomic file writes: nothing is ever left half-written.

Every writer goes through a temporary file in the destination folder, then os.replace(): a reader sees
the old file or the new one, never a mix, and a SIGKILL mid-write leaves the previous good file usable.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

# ".NAME.PID.RANDOM.tmp" (and DuckDB's ".wal" beside it): what atomic_path writes; PID says whose it is.
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp(?:\.wal)?$")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest`, on error it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=suffix + ".tmp", dir=dest.parent)
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


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a temporary file of a live writer is not debris)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files atomic_path left in `folder` when its process was killed (those whose writer is
    no longer alive); the removed paths."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not process_alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
    return removed


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
