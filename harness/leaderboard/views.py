"""Small view values for the templates: file-safe slugs, free-form JSON as a tree, figures, number formats.

Templates only lay out what these functions computed, so every rule here has a test and no page
depends on Python's dict order or on the machine the site is built on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$")
FIGURE_SUFFIXES = (".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp")


def slugs(names: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """A file-name-safe, case-insensitively unique slug per name, the same for the same set of names.

    Safe names keep their spelling; a name that had to change, that collides with another after
    lower-casing (case-insensitive file systems), or that would take a `reserved` slug (a folder's
    index page), gets a short hash of the original appended."""
    names = sorted(set(names))
    plain = {name: _UNSAFE.sub("-", name).strip("-.") or "x" for name in names}
    counts: dict[str, int] = {r.lower(): 1 for r in reserved}
    for slug in plain.values():
        counts[slug.lower()] = counts.get(slug.lower(), 0) + 1
    out = {}
    for name, slug in plain.items():
        if slug != name or counts[slug.lower()] > 1:
            slug = f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        out[name] = slug
    return out


def short_fingerprint(fingerprint: str) -> str:
    """sha256:ed2a40c96edc… -> "ed2a40c96edc" (12 hex digits: enough to tell fingerprints apart on a page)."""
    return fingerprint.split(":", 1)[-1][:12]


def format_scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if value != int(value) or abs(value) >= 1e6 else f"{value:,.1f}"
    return str(value)


def format_seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return format_scalar(value)
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, seconds = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)} min {seconds:02.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes):02d} min"


# --- free-form JSON (diagnostics, adapter info, params) as a tree ---------------------------------


@dataclass
class Node:
    """One value of a free-form JSON object, ready to lay out.

    kind: "scalar" (text), "figure" (src, alt), "mapping" (items: [(key, Node)]), "list" (children),
    "table" (headers, rows of texts): a list of flat objects sharing their keys, shown as a table."""

    kind: str
    text: str = ""
    src: str = ""
    items: list[tuple[str, "Node"]] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class FigureCopy:
    """A figure a record names, to be copied into the site: `source` (file) -> `target` (site-relative)."""

    source: Path
    target: str


class FigureFinder:
    """Turns strings naming image files inside a record's folder into figures copied into the site.

    Only files that resolve to a path inside the record folder are used (a record from someone else must
    not pull /etc/... into the site); figures are shown with <img>, so scripts inside an SVG never run."""

    def __init__(self, record_folder: Path, site_prefix: str) -> None:
        self.record_folder = record_folder.resolve()
        self.site_prefix = site_prefix
        self.copies: list[FigureCopy] = []

    def find(self, text: str) -> str | None:
        """The site-relative target for `text` if it names a figure in the record folder, else None."""
        if not text.lower().endswith(FIGURE_SUFFIXES) or "\n" in text:
            return None
        source = (self.record_folder / text).resolve()
        if not source.is_file() or not source.is_relative_to(self.record_folder):
            return None
        parts = PurePosixPath(source.relative_to(self.record_folder).as_posix()).parts
        safe = [p if _SAFE_PART.match(p) else _UNSAFE.sub("-", p) for p in parts]
        target = "/".join([self.site_prefix, *safe])
        if all(c.target != target for c in self.copies):
            self.copies.append(FigureCopy(source, target))
        return target


def to_tree(value: Any, figures: FigureFinder | None = None) -> Node:
    """A JSON value as a Node tree; mapping keys sorted, so the page never depends on dict order."""
    if isinstance(value, dict):
        return Node("mapping", items=[(str(k), to_tree(value[k], figures)) for k in sorted(value, key=str)])
    if isinstance(value, list):
        table = _as_table(value)
        if table is not None:
            return table
        if value and all(_is_scalar(v) for v in value) and not (figures and any(isinstance(v, str) and figures.find(v) for v in value)):
            return Node("scalar", text=", ".join(format_scalar(v) for v in value))  # [1, 5, 10] reads as "1, 5, 10"
        return Node("list", children=[to_tree(v, figures) for v in value])
    if isinstance(value, str) and figures is not None:
        target = figures.find(value)
        if target is not None:
            return Node("figure", src=target, text=value)
    return Node("scalar", text=format_scalar(value))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _as_table(values: list) -> Node | None:
    """A list of at least two flat objects sharing one set of keys reads best as a table."""
    if len(values) < 2 or not all(isinstance(v, dict) and v for v in values):
        return None
    keys = set(values[0])
    if any(set(v) != keys for v in values):
        return None
    if any(isinstance(x, (dict, list)) for v in values for x in v.values()):
        return None
    keys = sorted(keys)
    return Node("table", headers=keys, rows=[[format_scalar(v[k]) for k in keys] for v in values])
