"""Put a built site in place at `--out` in one atomic step, and clean up after builds that were killed.

    prepare(out_dir) -> Path     before a build: refuse a foreign folder, recover, remove dead builds' debris
    publish(out_dir, write)      write(staging) fills a folder beside out_dir, which then replaces out_dir

A build writes the whole site into a staging folder beside `out_dir`, `.NAME.building-PID-START-RANDOM` (PID and
START, the process's start time in clock ticks where /proc has it, say whose it is), then swaps it in:

- **One atomic step.** `out_dir` and the staging folder are exchanged with Linux's `renameat2(...,
  RENAME_EXCHANGE)` (glibc >= 2.28, called through ctypes): at every instant `out_dir` is either the previous
  complete site or the new complete one, and the previous one is then removed under the staging name. We chose this
  over making `out_dir` a symlink to a versioned folder replaced with os.replace (also atomic) because a symlink
  changes what users hold: `cp -r`, `git add`, rsync, zip and static hosts would see a link, not the site, and the
  versioned folders would sit beside it. With the exchange, `out_dir` stays a plain folder whose file:// links work.
- **A fallback** where the exchange is not available (another OS, an old C library, a file system that refuses it):
  two renames, the previous site aside as `.NAME.old-PID-START-RANDOM`, then the new one in. A build killed between
  the two leaves no `out_dir`; the next build (or `prepare`) renames the previous site back before anything else.
- **No debris.** `prepare` removes every `.NAME.building-*` and `.NAME.old-*` folder whose builder is gone (its PID
  is not running, or runs another process: the start time differs), never a live build's. Folders of the older
  naming (`.NAME.building-XXXXXXXX`, no PID) are removed once they are an hour old.

A folder is only ever replaced if it holds the site marker (SITE_MARKER) that every build writes, so a mistyped
`--out` never deletes anything.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import HarnessError
from harness.io import exchange_paths, process_alive, process_start_time
from harness.leaderboard.collect import SITE_MARKER

BUILDING, OLD = "building", "old"
_OWNED = re.compile(r"^(?P<kind>building|old)-(?P<pid>[0-9]+)-(?P<start>[0-9]+)-[a-z0-9_]+$")
_LEGACY = re.compile(r"^(?P<kind>building|old)-[a-z0-9_]{8}$")  # tempfile.mkdtemp names of builds before PIDs
_LEGACY_AGE_S = 3600.0  # a legacy staging folder this old is no live build's


def prepare(out_dir: str | Path) -> Path:
    """Check that `out_dir` may be replaced, put back a site a killed build left aside, and remove the folders of
    builds that were killed; the resolved `out_dir`."""
    out_dir = Path(out_dir)
    check_replaceable(out_dir)
    out_dir = out_dir.resolve()
    if out_dir.parent.is_dir():
        recover(out_dir)
        remove_debris(out_dir)
    return out_dir


def publish(out_dir: Path, write: Callable[[Path], None]) -> None:
    """Call write(staging) on a fresh folder beside `out_dir`, then swap it in (see the module's docstring). On any
    failure, or an interruption, the staging folder is removed and `out_dir` is as it was."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _new_folder(out_dir, BUILDING)
    try:
        write(staging)
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_replaceable(out_dir: Path) -> None:
    """Refuse to replace a folder this command did not build (a mistyped --out must not delete work)."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / SITE_MARKER).is_file())):
        raise HarnessError(
            f"{out_dir}: exists and is not a site built by `harness leaderboard build` (no {SITE_MARKER} file); "
            "refusing to replace it: choose another --out or remove it yourself"
        )


def _swap_in(staging: Path, out_dir: Path) -> None:
    if not os.path.lexists(out_dir):
        os.rename(staging, out_dir)  # nothing to replace: one rename
        return
    if exchange_paths(staging, out_dir):
        shutil.rmtree(staging, ignore_errors=True)  # the previous site, now under the staging name
        return
    aside = _new_folder(out_dir, OLD)
    os.rmdir(aside)
    os.rename(out_dir, aside)  # killed from here ...
    try:
        os.rename(staging, out_dir)  # ... to here: no out_dir, and the next build's `recover` puts `aside` back
    except BaseException:
        os.rename(aside, out_dir)  # failed or interrupted (not killed): put it back now
        raise
    shutil.rmtree(aside, ignore_errors=True)


# --- whose folder is it ---------------------------------------------------------------------------


def _new_folder(out_dir: Path, kind: str) -> Path:
    """An empty folder `.NAME.KIND-PID-START-RANDOM` beside out_dir, owned by this process."""
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{kind}-{pid}-{process_start_time(pid) or 0}-", dir=out_dir.parent))


def builder_alive(pid: int, start: int) -> bool:
    """Whether the process that made a folder still runs (harness.io.process_alive: a reused PID is not it)."""
    return process_alive(pid, start)


@dataclass(frozen=True)
class Leftover:
    """A staging (`building`) or aside (`old`) folder of `out_dir` found beside it."""

    path: Path
    kind: str
    gone: bool  # its builder is no longer running (legacy naming: it is over an hour old)
    legacy: bool = False  # named before folders carried their builder's PID


def leftovers(out_dir: Path) -> list[Leftover]:
    """Every staging or aside folder of `out_dir`, by name."""
    prefix = f".{out_dir.name}."
    out = []
    for path in sorted(out_dir.parent.iterdir()):
        if not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
            continue
        rest = path.name[len(prefix):]
        if match := _OWNED.match(rest):
            out.append(Leftover(path, match["kind"], not builder_alive(int(match["pid"]), int(match["start"]))))
        elif match := _LEGACY.match(rest):
            out.append(Leftover(path, match["kind"], _age_s(path) > _LEGACY_AGE_S, legacy=True))
    return out


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def recover(out_dir: Path) -> Path | None:
    """If `out_dir` is missing because a build was killed between the fallback's two renames, put the previous site
    back: the newest aside folder holding a site whose builder is gone (a legacy one at any age: with `out_dir`
    missing, its build was killed). The folder restored, or None."""
    if os.path.lexists(out_dir):
        return None
    candidates = [left.path for left in leftovers(out_dir)
                  if left.kind == OLD and (left.gone or left.legacy) and (left.path / SITE_MARKER).is_file()]
    if not candidates:
        return None
    newest = max(candidates, key=lambda p: ((p / SITE_MARKER).stat().st_mtime, p.name))
    try:
        os.rename(newest, out_dir)
    except OSError:
        return None  # another build got there first
    return newest


def remove_debris(out_dir: Path) -> list[Path]:
    """Remove the staging and aside folders of builds that are gone; the folders removed."""
    removed = []
    for left in leftovers(out_dir):
        if left.gone:
            shutil.rmtree(left.path, ignore_errors=True)
            removed.append(left.path)
    return removed
