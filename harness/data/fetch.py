"""Finding raw archives: pinned by MD5 in downloads.json, looked up in the data directory, downloaded when
allowed and reachable, and unpacked with every failure turned into a HarnessError naming the file.

Data directory: --data-dir, then $HARNESS_DATA_DIR, then <user cache>/jsr-harness/data (harness.settings).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_path

DOWNLOADS_JSON = Path(__file__).with_name("sources") / "downloads.json"
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Download:
    """One pinned raw archive (an entry of harness/data/sources/downloads.json)."""

    name: str  # the file name looked for in the data directory
    md5: str
    url: str | None = None
    page: str | None = None  # the human page to fetch it from
    bytes: int | None = None
    auto_download: bool = False  # True: fetched from `url` when missing (and the network is reachable)
    rows: dict[str, int] | None = None  # expected data rows per archive member (header excluded)


@lru_cache(maxsize=1)
def downloads() -> dict[str, Download]:
    raw = json.loads(DOWNLOADS_JSON.read_text(encoding="utf-8"))
    return {name: Download(name=name, **entry) for name, entry in raw.items()}


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path, md5: str | None = None, name: str | None = None) -> dict[str, Any]:
    """The SourceResult.files entry of a raw input; `path` is used only to skip up-to-date rebuilds."""
    return {
        "name": name or path.name,
        "md5": md5 or md5_file(path),
        "bytes": path.stat().st_size,
        "path": str(path.resolve()),
    }


def _how_to_supply(download: Download, data_dir: Path) -> str:
    where = download.url or download.page or "its publisher"
    return (
        f"put {download.name} (MD5 {download.md5}) in {data_dir} (download it from {where}), "
        f"or point --data-dir / $HARNESS_DATA_DIR at the folder that holds it"
    )


def verify(path: Path, download: Download, *, allow_download: bool = True) -> str:
    """The file's MD5 if it matches the pin; a HarnessError naming expected and found otherwise, and what to do:
    delete it and run again (an auto-downloaded archive, downloads allowed), else replace the local file."""
    found = md5_file(path)
    if found != download.md5:
        where = download.url or download.page or "its publisher"
        if download.auto_download and allow_download:
            todo = f"Delete it and run again to download it ({where})"
        else:  # offline, or a file the user supplies: the local file is what has to change
            todo = (f"replace {path} with the official {download.name} (MD5 {download.md5}, from {where}), "
                    "or point --data-dir / $HARNESS_DATA_DIR at a folder that holds it")
            todo = f"Downloads are off (--offline): {todo}" if download.auto_download else todo[0].upper() + todo[1:]
        raise HarnessError(f"checksum mismatch for {path}: expected MD5 {download.md5}, found {found}. {todo}")
    return found


def locate(download: Download, data_dir: Path, *, allow_download: bool) -> tuple[Path, str]:
    """(path, md5) of a verified archive in `data_dir`, downloading it first when allowed and possible."""
    path = Path(data_dir) / download.name
    if path.exists():
        return path, verify(path, download, allow_download=allow_download)
    if not (allow_download and download.auto_download and download.url):
        reason = "downloads are off (--offline)" if download.auto_download and not allow_download else "it is missing"
        raise HarnessError(f"{download.name} not found in {data_dir} ({reason}): {_how_to_supply(download, data_dir)}")
    _download(download, path, data_dir)
    return path, verify(path, download)


def _open_url(url: str):  # a seam for tests: never touch the network there
    return urllib.request.urlopen(url, timeout=_TIMEOUT_S)  # noqa: S310 (fixed https URL from downloads.json)


def _download(download: Download, path: Path, data_dir: Path) -> None:
    """Stream to a temporary file beside `path`, check the MD5, then rename (a bad download never lands)."""
    try:
        with atomic_path(path) as tmp:
            with _open_url(download.url) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            found = md5_file(tmp)
            if found != download.md5:
                raise HarnessError(
                    f"checksum mismatch for {download.name} downloaded from {download.url}: "
                    f"expected MD5 {download.md5}, found {found}"
                )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise HarnessError(
            f"{download.name} not found in {data_dir} and downloading it failed ({exc}); "
            f"offline? {_how_to_supply(download, data_dir)}"
        ) from exc


# --------------------------------------------------------------------------------------------------
# Unpacking archive members and reading CSVs with errors that name the file and line.


def extract_members(archive: Path, members: list[str], dest: Path) -> dict[str, Path]:
    """Extract `members` of a zip into `dest` (flat); CRC-checked, errors name the archive and member."""
    out: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for member in members:
                if member not in names:
                    raise HarnessError(f"{archive}: member {member} is missing from the archive")
                target = dest / Path(member).name
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                out[member] = target
    except HarnessError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise HarnessError(f"{archive} is truncated or not a valid zip archive ({exc})") from exc
    return out


def check_csv_header(path: Path, expected: list[str], label: str) -> None:
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    if first.split(",") != expected:
        raise HarnessError(f"{label} line 1: header is {first!r}, expected {','.join(expected)!r}")


def csv_error(exc: Exception, label: str, path: Path | None = None,
              archive: Path | None = None) -> HarnessError:
    """A DuckDB CSV reading error as a HarnessError naming the file and line, and what to do about it. DuckDB's
    advice to turn its strict mode off is dropped (a user cannot); mixed line endings, which DuckDB reports without
    a line, are found in `path` (the file read) and named with their line. `archive`: the zip it came from."""
    text = str(exc)
    ending = line_ending_problem(path) if path is not None else None
    if ending is not None:
        line, what = ending
        fix = f"convert {path.name} to one kind of line ending (e.g. `dos2unix {path.name}`)"
        if archive is not None:
            fix += f" and re-pack {archive.name}, then build again with --path pointing at it"
        else:
            fix += " and build again"
        return HarnessError(f"{label} line {line}: mixed line endings ({what}); {fix}")
    match = re.search(r"CSV Error on Line: (\d+)", text)
    detail = [ln.strip() for ln in text.splitlines()[1:4]
              if ln.strip() and not ln.startswith("Possible") and "strict_mode" not in ln]
    where = f"{label} line {match.group(1)}" if match else label
    return HarnessError(f"{where}: malformed CSV ({'; '.join(detail) or text.splitlines()[0]})")


_ENDINGS = {b"\r\n": "CRLF (\\r\\n)", b"\n": "LF (\\n)", b"\r": "CR (\\r)"}
# After a first line ending of one kind, where another kind starts:
_OTHER = {b"\r\n": re.compile(rb"(?<!\r)\n|\r(?!\n)"), b"\n": re.compile(rb"\r"), b"\r": re.compile(rb"\n")}


def line_ending_problem(path: Path, chunk: int = 1 << 24) -> tuple[int, str] | None:
    """(line number, description) of the first line whose ending differs from line 1's; None when the file uses one
    kind throughout (or has at most one line). Reads the file in chunks with C-level searches: seconds at
    ML-25M's 650 MB, and only ever on an error path. A line break inside a quoted value counts as a line ending."""
    with open(path, "rb") as fh:
        data = b""
        while True:  # line 1's ending (a CR at the end of what was read may be half of a CRLF: read on)
            more = fh.read(chunk)
            data += more
            first = re.search(rb"\r\n|\r|\n", data)
            if not more or (first is not None and first.end() < len(data)):
                break
        if first is None:
            return None
        kind = first.group()
        counted = b"\r" if kind == b"\r" else b"\n"
        lines_before = 0
        while data:
            held = b""
            more = fh.read(chunk)
            if more and data.endswith(b"\r"):  # keep a CR for the next chunk: it may be followed by LF
                data, held = data[:-1], b"\r"
            odd = _OTHER[kind].search(data)
            if odd is not None:
                line = lines_before + data.count(counted, 0, odd.start()) + 1
                found = "CRLF (\\r\\n)" if data[odd.start():odd.start() + 2] == b"\r\n" else _ENDINGS[odd.group()]
                return line, f"line 1 ends with {_ENDINGS[kind]}, line {line} with {found}"
            lines_before += data.count(counted)
            data = held + more
    return None
