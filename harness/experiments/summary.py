"""The summary an experiment leaves beside its records: `experiment.json` (what the leaderboard's experiment
pages read; format in docs/leaderboard.md) and `table.md` (the same table for a terminal or a note)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.io import write_json_atomic, write_text_atomic

SUMMARY_FILE = "experiment.json"
TABLE_FILE = "table.md"
KIND = "jsr-harness experiment"
VERSION = 1


@dataclass
class Summary:
    name: str
    title: str
    paper: str
    description: str
    command: str
    columns: list[tuple[str, str]]  # (row key, label)
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, str]] = field(default_factory=list)  # {"file": relative path, "alt": text}
    notes: list[str] = field(default_factory=list)
    metric_key: str = ""  # the column that carries the ‡ of a row's "significant"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": VERSION,
            "name": self.name,
            "title": self.title,
            "paper": self.paper,
            "description": self.description,
            "command": self.command,
            "columns": [{"key": key, "label": label} for key, label in self.columns],
            "rows": [{k: _clean(v) for k, v in row.items()} for row in self.rows],
            "figures": self.figures,
            "notes": self.notes,
            "harness_version": __version__,
            **({"metric_key": self.metric_key} if self.metric_key else {}),
        }

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", f"{self.paper}. {self.description}", "", f"    {self.command}", ""]
        lines.append("| " + " | ".join(label for _, label in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            cells = []
            for key, _ in self.columns:
                text = format_cell(row.get(key))
                if key == self.metric_key and row.get("significant"):
                    text += " ‡"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if any(row.get("significant") is not None for row in self.rows):
            lines += ["‡: significantly different from the task-specific reference (paired t-test, Holm, α = 0.05).", ""]
        lines += [f"- {note}" for note in self.notes]
        lines += [f"- figure: {fig['file']}" for fig in self.figures]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> Path:
        write_json_atomic(folder / SUMMARY_FILE, self.to_json())
        write_text_atomic(folder / TABLE_FILE, self.markdown())
        return folder / SUMMARY_FILE


def format_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _clean(value: Any) -> Any:
    """JSON has no NaN: undefined numbers are null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
