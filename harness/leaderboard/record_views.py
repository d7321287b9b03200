"""What a submission page shows of one record: its metrics, its significance tests and its units, as rows of
formatted strings for the templates (harness.leaderboard.site lays them out)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.leaderboard.collect import LoadedRecord
from harness.leaderboard.diagnostics import DiagnosticsView
from harness.leaderboard.tables import TASK_TITLES
from harness.leaderboard.views import FigureCopy, Node, format_scalar, format_seconds, slugs, to_tree
from harness.metrics.measures import Metric, measure_order
from harness.records.record import ResultRecord


@dataclass
class RecordView:
    loaded: LoadedRecord
    group_id: str
    dataset_href: str
    download: str
    config_json: str
    metrics: list[dict]
    significance: list[dict]
    units: list[dict]
    environment: list[tuple[str, str]]
    diagnostics: Node | None  # the raw object, as the record holds it
    diagnostics_tables: DiagnosticsView | None
    adapter_params: Node
    files: list[dict] = field(default_factory=list)  # the record's data files as copied into the site (data_files)


@dataclass(frozen=True)
class DataFiles:
    links: list[dict]  # {"label", "name", "href" (site-root-relative), "size"} in page order
    copies: list[FigureCopy]


def data_files(record: ResultRecord, folder: Path, site_prefix: str) -> DataFiles:
    """The files a record names beside its record.json (per-query Parquet, TREC qrels, runs, head items), to be
    copied into the site under `site_prefix`/ and linked from the record's section.

    The record names only what its folder holds (the validator checks it), so a record with fewer files links
    fewer. Each target name is a slug of the file name (harness.leaderboard.views.slugs: file-name-safe, unique
    even on a case-insensitive file system), and a name is only copied if it is a file inside `folder`."""
    files = record.files
    named: list[tuple[str, str]] = []  # (label, file name)
    if files.per_query is not None:
        named.append(("per-query values (Parquet)", files.per_query))
    for task in sorted(set(files.qrels) | set(files.runs) | set(files.heads)):
        title = TASK_TITLES.get(task, task).lower()
        if task in files.qrels:
            named.append((f"{title} qrels (TREC)", files.qrels[task]))
        if task in files.heads:
            named.append((f"{title} head items", files.heads[task]))
        for name in files.runs.get(task, ()):
            named.append((f"{title} run (TREC)", name))
    if not named:
        return DataFiles([], [])
    slug_of = slugs(name for _, name in named)
    folder = folder.resolve()
    links, copies = [], []
    for label, name in named:
        source = (folder / name).resolve()
        if not source.is_file() or not source.is_relative_to(folder):
            continue
        slug = slug_of[name]
        extension = name.rpartition(".")[2]
        if slug != name and extension.isalnum():  # a hash was appended: the type stays last, for browsers and tools
            slug = f"{slug}.{extension}"
        target = f"{site_prefix}/{slug}"
        links.append({"label": label, "name": name, "href": target, "size": format_bytes(source.stat().st_size)})
        if all(c.target != target for c in copies):
            copies.append(FigureCopy(source, target))
    return DataFiles(links, copies)


def format_bytes(size: int) -> str:
    """1,234 bytes, 12.3 kB, 4.5 MB (powers of 1000, as file managers show them)."""
    if size < 1000:
        return f"{size:,} byte{'' if size == 1 else 's'}"
    for unit in ("kB", "MB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} GB"


def metric_rows(record: ResultRecord) -> list[dict]:
    rows = []
    for task in sorted(record.metric_tasks):
        for name in sorted(record.metrics[task], key=metric_order):
            value = record.metrics[task][name]
            rows.append({
                "task": TASK_TITLES.get(task, task),
                "metric": name,
                "mean": format_scalar(value.mean) if value.mean is None else f"{value.mean:.4f}",
                "n": f"{value.n:,}",
                "per_seed": ["—" if value.per_seed.get(s) is None else f"{value.per_seed[s]:.4f}" for s in record.seeds],
            })
    return rows


@functools.lru_cache(maxsize=4096)  # a site sorts the same few dozen names for every record
def metric_order(name: str) -> tuple:
    """Metrics this harness knows by measure (Recall first), cutoff and segment (R@1, R@1/head, ..., nDCG@1, ...);
    others (a measure the schema allows but this harness does not compute) after them, by name."""
    try:
        metric = Metric.parse(name)
    except HarnessError:
        return (1, (), 0, "", name)
    return (0, measure_order(metric.measure), metric.k, metric.segment, "")


def significance_rows(record: ResultRecord) -> list[dict]:
    def num(x, spec):
        return "—" if x is None else format(x, spec)

    rows = []
    for task in sorted(record.significance):
        for row in record.significance[task]:
            rows.append({
                "task": TASK_TITLES.get(task, task),
                "metric": row.metric,
                "reference": row.reference,
                "n": f"{row.n:,}",
                "mean": num(row.mean, ".4f"),
                "reference_mean": num(row.reference_mean, ".4f"),
                "diff": num(row.diff, "+.4f"),
                "ci": f"[{num(row.ci_low, '.4f')}, {num(row.ci_high, '.4f')}]",
                "t": num(row.t, ".3f"),
                "p": num(row.p, ".3g"),
                "p_holm": num(row.p_holm, ".3g"),
                "significant": bool(row.significant),
            })
    return rows


def unit_rows(record: ResultRecord) -> list[dict]:
    rows = []
    for unit in sorted(record.units, key=lambda u: u.seed):
        retrieve = unit.retrieve_s
        rows.append({
            "seed": unit.seed,
            "status": unit.status,
            "fit": format_seconds(unit.fit_s),
            "retrieve": ", ".join(f"{TASK_TITLES.get(t, t).lower()} {format_seconds(retrieve[t])}" for t in sorted(retrieve)) or "—",
            "info": to_tree(unit.adapter_info),
            "error": unit.error,
        })
    return rows
