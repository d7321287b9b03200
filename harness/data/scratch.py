"""What a compile writes besides its result, named so that a killed compile's leftovers are recognised and removed.

A compile of `<cache>/datasets/NAME.duckdb` writes, beside it:

    .NAME.duckdb.compile-HOST-PID-START-RANDOM.tmp        the new DuckDB file (and DuckDB's `.tmp.wal` beside it)
    .NAME.duckdb.compile-HOST-PID-START-RANDOM.scratch/   DuckDB's spill folder and the source's temporary files

HOST is this machine's name (letters and digits), PID the compiling process, START that process's start time
(clock ticks since boot, from /proc; 0 where unknown), so a leftover whose PID was reused by another process is not
taken for a live compile's. On success the new file is flushed to disk and renamed over NAME.duckdb (os.replace:
readers see the old file or the new one, and the previous good file stays usable until that instant); on an error
both temporaries are removed. SIGKILL skips every cleanup, so each compile first removes, from the whole folder,
the leftovers of compiles of this machine whose process is gone (`remove_debris`), and never another live
process's. Leftovers of older harness versions (`harness-duckdb-*` spill folders, `.NAME.duckdb.XXXXXXXX.tmp`) carry
no PID: they are removed once an hour old, as those versions did.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

from harness.io import process_alive, process_start_time, remove_stale_temporaries

_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
_OURS = re.compile(r"^\..+\.compile-(?P<host>[A-Za-z0-9]+)-(?P<pid>[0-9]+)-(?P<start>[0-9]+)-[a-z0-9]+"
                   r"(?:\.tmp|\.tmp\.wal|\.scratch)$")
_LEGACY_FILE = re.compile(r"^\..+\.duckdb\.[A-Za-z0-9_]{8}\.tmp(?:\.wal)?$")
_LEGACY_SPILL = re.compile(r"^harness-duckdb-[A-Za-z0-9_]+$")
_LEGACY_AGE_S = 3600


def build_token() -> str:
    return f"compile-{_HOST}-{os.getpid()}-{process_start_time(os.getpid()) or 0}-{secrets.token_hex(4)}"


def remove_debris(folder: str | os.PathLike) -> list[Path]:
    """Remove what killed compiles left in `folder` (see the module docstring); the paths removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    cutoff = time.time() - _LEGACY_AGE_S
    for path in folder.iterdir():
        stale = False
        ours = _OURS.match(path.name)
        if ours:
            stale = ours["host"] == _HOST and not process_alive(int(ours["pid"]), int(ours["start"]))
        elif _LEGACY_FILE.match(path.name) or _LEGACY_SPILL.match(path.name):
            with contextlib.suppress(OSError):
                stale = path.stat().st_mtime < cutoff
        if stale and _remove(path):
            removed.append(path)
    return removed + remove_stale_temporaries(folder)  # atomic_path's (a compile used it before)


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False  # someone else's file we may not remove: left for its owner
    return True


@contextlib.contextmanager
def compile_target(dest: Path) -> Iterator[tuple[Path, Path]]:
    """(temporary DuckDB file, scratch folder) beside `dest`; on success the file replaces `dest` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    token = build_token()
    tmp = dest.parent / f".{dest.name}.{token}.tmp"
    scratch = dest.parent / f".{dest.name}.{token}.scratch"
    scratch.mkdir()
    try:
        yield tmp, scratch
        _fsync(tmp)
        os.replace(tmp, dest)
        _fsync(dest.parent)
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal"), scratch):
            if leftover.exists():
                _remove(leftover)


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, so a crash after the rename never leaves a hollow file."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
