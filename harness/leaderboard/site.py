"""Build the static leaderboard site from a folder of result records.

    build_site(records_dir, out_dir) -> BuildReport

The site is self-contained (inline CSS and script, no CDN, relative links: it works from file:// and
from any static host) and deterministic: the same records give the same bytes, so it can be committed
and diffed. Nothing on it depends on the build's date or machine; the only times shown come from the
records. Every string taken from a record goes through Jinja2's autoescaping.

Experiment summaries (`experiment.json`) found under `records_dir` get pages of their own under
experiments/ (harness.leaderboard.experiments), linked from the nav when there is at least one.

The site is built in a staging folder beside `out_dir` and swapped in, in one atomic step, when complete
(harness.leaderboard.publish): a failed or killed build never leaves a half-written site, or none, and the next
build removes what a killed one left behind. A folder that was not built by this command is never replaced.
"""

from __future__ import annotations

import functools
import os
import shutil
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jinja2
import markupsafe

from harness import __version__
from harness.data.stats import TABLE3_COLUMNS
from harness.io import canonical_json
from harness.leaderboard.collect import SITE_MARKER, Collection, Group, LoadedRecord, Skipped, collect
from harness.leaderboard.diagnostics import DiagnosticsView, diagnostics_view
from harness.leaderboard.experiments import ExperimentView, build_experiment_view, experiment_ids, experiment_page
from harness.leaderboard.publish import prepare, publish
from harness.leaderboard.record_views import RecordView, data_files, metric_rows, significance_rows, unit_rows
from harness.leaderboard.tables import (
    SIGNIFICANT_MARK,
    SMALL_N,
    TASK_TITLES,
    Table,
    build_table,
    seed_spreads,
)
from harness.leaderboard.views import FigureCopy, FigureFinder, format_scalar, format_seconds, short_fingerprint, slugs, to_tree
from harness.metrics.measures import HEADLINE_MEASURE, registry
from harness.protocol.decodings import DEFAULT as DEFAULT_DECODING
from harness.records.record import ProtocolParams

# SITE_MARKER (collect.py): a file at the top of every built site; its presence is what allows a rebuild to
# replace the folder, and the records walk never enters a folder holding it.
_MARKER_TEXT = "Built by `python -m harness leaderboard build`; rebuilt from the records, never edited by hand.\n"


@dataclass
class BuildReport:
    out: Path
    records: int
    skipped: list[Skipped]
    groups: int
    pages: int
    notes: list[str] = field(default_factory=list)
    experiments: int = 0
    skipped_experiments: list[Skipped] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the CLI prints: one line per skipped record or experiment summary, then a summary."""
        skipped = [*self.skipped, *self.skipped_experiments]
        out = [f"skipped {s.reason}" if s.reason.startswith(s.path) else f"skipped {s.path}: {s.reason}" for s in skipped]
        out += [f"note: {note}" for note in self.notes]
        experiments = ""
        if self.experiments or self.skipped_experiments:
            plural = "" if self.experiments == 1 else "s"
            experiments = f", {self.experiments} experiment{plural} ({len(self.skipped_experiments)} skipped)"
        out.append(
            f"built {self.pages} pages from {self.records} records ({len(self.skipped)} skipped) "
            f"in {self.groups} tables{experiments} -> {self.out / 'index.html'}"
        )
        return out


# --- page values ---------------------------------------------------------------------------------


@dataclass
class GroupView:
    id: str
    group: Group
    dataset_href: str
    tables: list[Table]
    sig_rule: str
    params: dict  # as the records hold them
    stats: list[tuple[str, str, str]] | None
    diagnostics: list[DiagnosticsView] = field(default_factory=list)  # §7 tables of the records that carry them
    html: markupsafe.Markup = markupsafe.Markup("")  # the rendered tables, shared by the index and dataset pages
    measures: list[tuple[str, str]] = field(default_factory=list)  # (code, title) of every measure shown, headline first

    @property
    def short_fingerprint(self) -> str:
        return short_fingerprint(self.group.fingerprint)

    @property
    def default_k(self) -> int:
        return self.group.headline_k

    @property
    def default_measure(self) -> str:
        return HEADLINE_MEASURE

    @property
    def ks(self) -> list[int]:
        return self.group.ks


@dataclass
class Site:
    """Everything the pages need, computed once: slugs, group views, per-submission record views."""

    collection: Collection
    dataset_slugs: dict[str, str]
    submission_slugs: dict[str, str]
    group_views: dict[int, GroupView] = field(default_factory=dict)
    record_views: dict[str, list[RecordView]] = field(default_factory=dict)
    figures: list[FigureCopy] = field(default_factory=list)
    copies: list[tuple[LoadedRecord, str]] = field(default_factory=list)  # (record, site path of its JSON copy)
    data_files: list[FigureCopy] = field(default_factory=list)  # run, qrels and per-query files beside those copies
    experiment_views: list[ExperimentView] = field(default_factory=list)

    def group_view(self, group: Group) -> GroupView:
        return self.group_views[id(group)]


def build_site(records_dir: str | Path | Sequence[str | Path], out_dir: str | Path) -> BuildReport:
    """Validate every record under `records_dir` (one folder or several: harness.leaderboard.collect.collect)
    and write the site to `out_dir` (replaced when complete)."""
    out_dir = prepare(out_dir)  # refuses a foreign folder; recovers from, and clears up after, killed builds
    collection = collect(records_dir)
    site = _prepare(collection)
    pages = _render_pages(site)
    _write_site(out_dir, pages, site)
    return BuildReport(out_dir, len(collection.records), collection.skipped, len(collection.groups), len(pages),
                       _all_notes(site), len(collection.experiments), collection.skipped_experiments)


def _prepare(collection: Collection) -> Site:
    site = Site(
        collection,
        dataset_slugs=slugs(g.dataset for g in collection.groups),
        submission_slugs=slugs((r.name for r in collection.records), reserved=_INDEX),
    )
    for group in collection.groups:
        site.group_views[id(group)] = _group_view(site, group)
    for group in collection.groups:
        for loaded in group.records:
            site.record_views.setdefault(loaded.name, []).append(_record_view(site, group, loaded))
    _prepare_experiments(site)
    return site


_INDEX = ("index",)  # submissions/index.html and experiments/index.html list the others: no slug may take it


def _prepare_experiments(site: Site) -> None:
    experiments = site.collection.experiments
    ids = experiment_ids(experiments)
    slug_of = slugs(ids.values(), reserved=_INDEX)
    link = functools.partial(_record_link, site, _records_by_path(site), {s.path for s in site.collection.skipped})
    for loaded in experiments:
        view = build_experiment_view(loaded, slug_of[ids[loaded.path]], link)
        site.experiment_views.append(view)
        site.figures.extend(view.copies)


def _records_by_path(site: Site) -> dict[str, RecordView]:
    return {view.loaded.path: view for views in site.record_views.values() for view in views}


def _record_link(site: Site, by_path: dict[str, RecordView], skipped: set[str], path: str | None) -> tuple[str | None, str]:
    """(site-root-relative href, text) for an experiment row's record (`path` relative to the records
    folder); no href when the build did not use that record (the text says why)."""
    view = by_path.get(path) if path is not None else None
    if view is not None:
        loaded = view.loaded
        href = f"submissions/{site.submission_slugs[loaded.name]}.html#{view.group_id}"
        return href, f"{loaded.display_name} on {loaded.dataset}"
    if path in skipped:
        return None, "record skipped (see the build report)"
    return None, "record not found under the records folder"


def dataset_page(slug: str) -> str:
    """Dataset pages sit beside index.html, so a group's tables render once and serve both pages."""
    return f"dataset-{slug}.html"


def _group_id(site: Site, group: Group) -> str:
    version = "".join(c if c.isalnum() else "-" for c in group.protocol_version)
    decoding = "" if group.decoding == DEFAULT_DECODING else f"-{group.decoding}"  # the paper's keeps its old anchors
    return f"{site.dataset_slugs[group.dataset]}-{short_fingerprint(group.fingerprint)}-p{version}{decoding}"


def _group_view(site: Site, group: Group) -> GroupView:
    gid = _group_id(site, group)
    params = group.protocol_params()
    # Measures this harness knows (a record from a harness with more measures shows those it can name).
    measures = [code for code in group.measures if code in registry()]
    spreads = seed_spreads(group)
    tables = [build_table(group, k, _table_id(gid, measure, k), measure, spreads) for measure in measures
              for k in headline_first(group.ks, group.headline_k)]
    return GroupView(
        measures=[(code, registry()[code].title) for code in measures],
        id=gid,
        group=group,
        dataset_href=dataset_page(site.dataset_slugs[group.dataset]),
        tables=tables,
        sig_rule=_significance_rule(params),
        params=params.to_dict(),
        stats=_stats_rows(group),
        diagnostics=[view for view in map(diagnostics_view, group.records) if view is not None],
    )


def headline_first(ks: list[int], headline_k: int) -> list[int]:
    """The order of a measure's tables in the page: the headline K first (what a reader without scripts sees
    first), then the other cutoffs ascending. The cutoff switch keeps its buttons ascending."""
    return [k for k in ks if k == headline_k] + [k for k in ks if k != headline_k]


def _table_id(group_id: str, measure: str, k: int) -> str:
    """Recall's tables keep the ids they had before secondary measures (links and anchors stay valid)."""
    return f"{group_id}-k{k}" if measure == HEADLINE_MEASURE else f"{group_id}-{measure}-k{k}"


def _significance_rule(params: ProtocolParams) -> str:
    """How the group's records decide significance, for the legend under its tables."""
    corrected = "Holm-corrected p" if params.correction == "holm" else "uncorrected p"
    return f"{corrected} < {params.alpha:g}"


def _stats_rows(group: Group) -> list[tuple[str, str, str]] | None:
    """Table 3's row as (header, shown value, sort value), from the first record that carries the stats;
    None if none does (the page then says "not recorded")."""
    for loaded in group.records:
        stats = loaded.record.dataset.stats
        if stats:
            rows = []
            for key, header, spec in _table3_columns():
                value = stats.get(key)
                known = isinstance(value, (int, float)) and not isinstance(value, bool)
                rows.append((header, spec.format(value) if known else "not recorded", repr(value) if known else ""))
            return rows
    return None


def _table3_columns() -> tuple[tuple[str, str, str], ...]:
    return TABLE3_COLUMNS  # the one list of Table 3 columns, headers and formats (harness.data.stats)


def _record_view(site: Site, group: Group, loaded: LoadedRecord) -> RecordView:
    record = loaded.record
    dataset_slug = site.dataset_slugs[group.dataset]
    sub_slug = site.submission_slugs[loaded.name]
    gid = _group_id(site, group)
    folder = site.collection.root / Path(loaded.path).parent
    figures = FigureFinder(folder, f"figures/{gid}/{sub_slug}")
    files = data_files(record, folder, f"records/{gid}/{sub_slug}")  # beside the JSON copy, records/GROUP/SUB.json
    diagnostics = record.diagnostics
    view = RecordView(
        loaded=loaded,
        group_id=gid,
        dataset_href=f"../{dataset_page(dataset_slug)}#{gid}",
        download=f"records/{gid}/{sub_slug}.json",
        config_json=canonical_json(record.submission.config),
        metrics=metric_rows(record),
        significance=significance_rows(record),
        units=unit_rows(record),
        environment=[(k, format_scalar(v)) for k, v in sorted(record.environment.items())],
        diagnostics=to_tree(diagnostics, figures) if diagnostics else None,
        diagnostics_tables=diagnostics_view(loaded),
        adapter_params=to_tree(record.submission.params),
        files=files.links,
    )
    site.figures.extend(figures.copies)
    site.data_files.extend(files.copies)
    site.copies.append((loaded, view.download))
    return view


# --- rendering -----------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.leaderboard", "templates"),
        autoescape=True,  # every page and include: a record's strings are always escaped
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["seconds"] = format_seconds
    env.filters["scalar"] = format_scalar
    env.filters["short_fp"] = short_fingerprint
    env.filters["tree"] = to_tree
    return env


def _asset(name: str) -> markupsafe.Markup:
    """The inline CSS or script, verbatim (not a template: its braces are not Jinja's)."""
    text = resources.files("harness.leaderboard").joinpath("templates", name).read_text(encoding="utf-8")
    return markupsafe.Markup(text.strip())


def _render_pages(site: Site) -> dict[str, str]:
    """{site-relative path: HTML} for every page."""
    env = _environment()
    collection = site.collection
    common = {
        "harness_version": __version__,
        "mark": SIGNIFICANT_MARK,
        "small_n": SMALL_N,
        "n_records": len(collection.records),
        "n_skipped": len(collection.skipped),
        "n_skipped_experiments": len(collection.skipped_experiments),
        "n_experiments": len(collection.experiments),
        "latest": _latest_finish(collection.records),
        "task_titles": TASK_TITLES,
        "css": _asset("style.css"),
        "js": _asset("site.js"),
    }
    macros = env.get_template("macros.html").make_module({**common, "root": ""})
    for view in site.group_views.values():
        view.html = markupsafe.Markup(str(macros.group_tables(view, site.submission_slugs)))
    pages = {"index.html": _render(env, "index.html", common, root="", sections=_index_sections(site))}
    pages["datasets.html"] = _render(env, "datasets.html", common, root="", dataset_rows=_dataset_rows(site),
                                     stat_headers=[header for _, header, _ in _table3_columns()])
    pages.update(_dataset_pages(env, common, site))
    pages.update(_submission_pages(env, common, site))
    pages.update(_experiment_pages(env, common, site))
    pages["report.html"] = _render(env, "report.html", common, root="", skipped=collection.skipped,
                                   skipped_experiments=collection.skipped_experiments, notes=_all_notes(site))
    return pages


def _experiment_pages(env: jinja2.Environment, common: dict, site: Site) -> dict[str, str]:
    """experiments/index.html and one page per experiment; none at all when there is no experiment."""
    if not site.experiment_views:
        return {}
    pages = {experiment_page(view.slug): _render(env, "experiment.html", common, root="../", experiment=view)
             for view in site.experiment_views}
    pages["experiments/index.html"] = _render(env, "experiments.html", common, root="../",
                                              experiments=site.experiment_views)
    return pages


def _dataset_pages(env: jinja2.Environment, common: dict, site: Site) -> dict[str, str]:
    pages = {}
    for dataset in site.collection.datasets():
        views = [site.group_view(g) for g in site.collection.groups_of(dataset)]
        latest = max(views[0].group.records, key=lambda r: r.finished_at).record.dataset.to_dict()
        pages[dataset_page(site.dataset_slugs[dataset])] = _render(
            env, "dataset.html", common, root="", dataset=dataset, groups=views,
            dataset_info=to_tree({k: v for k, v in latest.items() if k not in ("stats", "name", "fingerprint")}),
            submission_slugs=site.submission_slugs,
        )
    return pages


def _submission_pages(env: jinja2.Environment, common: dict, site: Site) -> dict[str, str]:
    pages = {}
    for name in sorted(site.record_views):
        views = site.record_views[name]
        pages[f"submissions/{site.submission_slugs[name]}.html"] = _render(
            env, "submission.html", common, root="../", name=name, records=views,
            display_name=max(views, key=lambda v: v.loaded.finished_at).loaded.display_name,
            submission_slugs=site.submission_slugs,
        )
    pages["submissions/index.html"] = _render(env, "submissions.html", common, root="../",
                                              submissions=_submission_list(site))
    return pages


def _latest_finish(records: list[LoadedRecord]) -> str | None:
    """The latest `finished_at` among the records, as written there: the site's only date."""
    return max(records, key=lambda r: r.finished_at).record.timing.finished_at if records else None


def _render(env: jinja2.Environment, template: str, common: dict, **context) -> str:
    return env.get_template(template).render(**common, **context)


def _index_sections(site: Site) -> list[dict]:
    sections = []
    for dataset in site.collection.datasets():
        groups = site.collection.groups_of(dataset)
        sections.append({"dataset": dataset, "view": site.group_view(groups[0]), "others": len(groups) - 1,
                         "submission_slugs": site.submission_slugs})
    return sections


def _dataset_rows(site: Site) -> list[dict]:
    rows = []
    for dataset in site.collection.datasets():
        groups = site.collection.groups_of(dataset)
        view = site.group_view(groups[0])
        stats = view.stats or [(header, "—", "") for _, header, _ in _table3_columns()]
        rows.append({
            "name": dataset, "href": view.dataset_href, "fingerprint": view.short_fingerprint,
            "protocol": view.group.protocol_version, "submissions": len(view.group.records), "tables": len(groups),
            "stats": [("—" if text == "not recorded" else text, value) for _, text, value in stats],
        })
    return rows


def _submission_list(site: Site) -> list[dict]:
    out = []
    for name in sorted(site.record_views, key=lambda n: (site.record_views[n][0].loaded.display_name.casefold(), n)):
        views = site.record_views[name]
        latest = max(views, key=lambda v: v.loaded.finished_at).loaded
        out.append({
            "name": name, "slug": site.submission_slugs[name], "display_name": latest.display_name,
            "kind": latest.kind, "tasks": latest.tasks, "datasets": sorted({v.loaded.dataset for v in views}),
            "failed": sum(len(v.loaded.failed_units) for v in views),
        })
    return out


def _all_notes(site: Site) -> list[str]:
    """Every group's and table's notes, each prefixed with where it applies."""
    notes = set()
    for view in site.group_views.values():
        where = (f"{view.group.dataset} ({view.short_fingerprint}, protocol {view.group.protocol_version}, "
                 f"decoding {view.group.decoding})")
        for note in [*view.group.notes, *(note for table in view.tables for note in table.notes)]:
            notes.add(f"{where}: {note}")
    return sorted(notes)


# --- writing -------------------------------------------------------------------------------------


def _write_site(out_dir: Path, pages: dict[str, str], site: Site) -> None:
    """Write everything into a staging folder beside `out_dir`, then swap it in atomically (leaderboard.publish)."""
    publish(out_dir, lambda staging: _write_files(staging, pages, site))


def _write_files(staging: Path, pages: dict[str, str], site: Site) -> None:
    (staging / SITE_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
    for rel, html in pages.items():
        _write_text(staging / rel, html)
    for loaded, rel in site.copies:
        _write_text(staging / rel, loaded.record.to_json())
    for figure in [*site.figures, *site.data_files]:
        target = staging / figure.target
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure.source, target)
    os.chmod(staging, 0o755)  # mkdtemp makes it 0700; a static host must be able to read it


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))  # bytes: no platform newline translation
