"""The numbers of one leaderboard table, in the shape of the paper's Table 5, as plain values for templates.

A table shows one group of records (one dataset fingerprint, protocol version and decoding) in one measure at one
cutoff K: rows are submissions, columns are the measure at K (Recall, the paper's headline, or a secondary one:
nDCG, reciprocal rank) over all / head / torso targets for recommendation, then for search. Rules, each stated on
the page as well:

- "n/a": the submission does not serve the task; "—": it serves it but has no value (no query in the
  segment, no finished seed, or K not measured by its protocol parameters).
- Bold: the best value of the column over every row of the table, compared as shown (3 decimals), so
  ties are all bold.
- Improvement: for a submission that declares a reference for the task, (mean - reference mean) /
  reference mean in %, with the reference's record from the same group; if that record is not there,
  the reference mean stored in the significance row (headline K only).
- Significance mark (‡): the record's paired t-test against its reference for that metric has
  p_holm < alpha (the record's `significant`). Records test Recall at the headline K only, so secondary
  measures carry no mark; their improvement over the reference is computed the same way.
- Spread over seeds: where a record has two or more finished seeds, the mean is followed by the sample standard
  deviation (ddof=1) of the per-seed means; each row says over how many seeds its values are.
- Queries: each column's header gives its number of test queries (n); a segment with fewer than SMALL_N is marked
  as a caveat, since its values move by 1/n a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from harness.leaderboard.collect import Group, LoadedRecord
from harness.metrics.measures import HEADLINE_MEASURE, SEGMENTS, Metric, registry
from harness.records.per_query import over_seeds
from harness.records.record import SignificanceRow

TASKS = ("rec", "search")
TASK_TITLES = {"rec": "Recommendation", "search": "Search"}
SEGMENT_TITLES = {"all": "All", "head": "Head", "torso": "Torso"}
SIGNIFICANT_MARK = "‡"
# Blocks of rows, in page order; a kind not listed here gets a block of its own after these.
BLOCK_TITLES = {"generative": "Generative retrieval methods", "baseline": "Baselines (for reference)"}
DECIMALS = 3
SMALL_N = 30  # a column over fewer test queries is marked: its values are noisy


@dataclass(frozen=True)
class Column:
    task: str
    segment: str
    metric: str  # the metric's name, e.g. "R@30/head": the key in records and the column on the page
    n: int | None  # queries in the segment (the same for every record of a group), None if no record has it

    @property
    def small(self) -> bool:
        """Fewer than SMALL_N queries: the header marks it."""
        return self.n is not None and self.n < SMALL_N


@dataclass
class Cell:
    text: str  # what the page shows: "0.119", "n/a" or "—"
    sort_value: str  # data-sort: the value for the sorting script ("" sorts last)
    value: float | None = None
    best: bool = False
    significant: bool = False
    improvement: str | None = None  # "+16%", "−18%", "±0%"; "–" when the reference scores 0
    spread: str | None = None  # "± 0.012": the sample sd over seeds, when two or more seeds give a value
    title: str = ""  # the tooltip: what the number is and its test
    css: str = ""  # class attribute: gap (first column of a task), na, best, sig

    @property
    def trend(self) -> str:
        """"up" / "down" for a positive / negative improvement (coloured on the page), else ""."""
        if self.improvement is None:
            return ""
        return "up" if self.improvement.startswith("+") else "down" if self.improvement.startswith("−") else ""


@dataclass
class Row:
    name: str
    display_name: str
    kind: str
    cells: list[Cell]
    failed_seeds: int = 0
    seeds: int = 0
    finished_seeds: tuple[int, ...] = ()  # the seeds its values are over

    @property
    def seeds_text(self) -> str:
        """"3 seeds", "1 seed", "no seed" (finished: the values are over these)."""
        n = len(self.finished_seeds)
        return "no seed" if n == 0 else f"{n} seed{'' if n == 1 else 's'}"


@dataclass
class Block:
    title: str
    rows: list[Row]


@dataclass
class Table:
    id: str
    k: int
    columns: list[Column]
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)
    measure: str = HEADLINE_MEASURE  # its code: "R", "nDCG", "RR"
    title: str = "Recall"  # what the caption calls it
    spread_columns: list[bool] = field(default_factory=list)  # per column: some cell shows a spread over seeds

    @property
    def rows(self) -> list[Row]:
        return [row for block in self.blocks for row in block.rows]


def format_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.{DECIMALS}f}"


def format_percent(change: float) -> str:
    """+16%, −18% (a true minus sign, as typeset in the paper); ±0% when it rounds to no change."""
    rounded = round(change)
    if rounded == 0:
        return "±0%"
    sign = "+" if rounded > 0 else "−"
    return f"{sign}{abs(rounded):,}%"


def seed_spreads(group: Group) -> list[dict[tuple[str, str], float]]:
    """Per record of the group, in its order: {(task, metric): the sample standard deviation (ddof=1) of the per-seed
    means} for every value with two or more finished seeds. One polars pass over the whole group
    (harness.records.per_query.over_seeds, as tools/seed_table.py)."""
    per_seed = pl.DataFrame(
        [(i, task, name, seed, x) for i, r in enumerate(group.records) for task, block in r.record.metrics.items()
         for name, value in block.items() for seed, x in value.per_seed.items()],
        schema={"record": pl.Int64, "task": pl.String, "metric": pl.String, "seed": pl.Int64, "value": pl.Float64},
        orient="row",
    )
    spreads: list[dict[tuple[str, str], float]] = [{} for _ in group.records]
    for i, task, metric, _, sd in over_seeds(per_seed, ["record", "task", "metric"], mean=False).iter_rows():
        if sd is not None:
            spreads[i][(task, metric)] = sd
    return spreads


def build_table(group: Group, k: int, table_id: str, measure: str = HEADLINE_MEASURE,
                spreads: list[dict[tuple[str, str], float]] | None = None) -> Table:
    """The table of one measure at one cutoff (a registered measure: harness.metrics.measures.registry).
    `spreads`: the group's seed_spreads, when already computed for another of its tables."""
    names = {(task, segment): str(Metric(measure, k, segment)) for task in TASKS for segment in SEGMENTS}
    columns = [Column(task, segment, name, _segment_size(group, task, name)) for (task, segment), name in names.items()]
    by_name = group.by_name()
    notes: list[str] = []
    spreads = seed_spreads(group) if spreads is None else spreads
    rows = [_row(r, columns, by_name, notes, spread) for r, spread in zip(group.records, spreads, strict=True)]
    _mark_best(rows, len(columns))
    for row in rows:
        for cell, column in zip(row.cells, columns):
            cell.css = _classes(cell, column)
    spread = [any(row.cells[i].spread for row in rows) for i in range(len(columns))]
    return Table(table_id, k, columns, _blocks(rows, group.records), notes=sorted(set(notes)), measure=measure,
                 title=registry()[measure].title, spread_columns=spread)


def _segment_size(group: Group, task: str, metric: str) -> int | None:
    for r in group.records:
        value = r.record.metric(task, metric)
        if value is not None:
            return value.n
    return None


def _row(r: LoadedRecord, columns: list[Column], by_name: dict[str, LoadedRecord], notes: list[str],
         spreads: dict[tuple[str, str], float]) -> Row:
    cells = [_cell(r, column, by_name, notes, spreads) for column in columns]
    return Row(r.name, r.display_name, r.kind, cells, failed_seeds=len(r.failed_units), seeds=len(r.record.seeds),
               finished_seeds=tuple(r.record.ok_seeds))


def _cell(r: LoadedRecord, column: Column, by_name: dict[str, LoadedRecord], notes: list[str],
          spreads: dict[tuple[str, str], float]) -> Cell:
    task, metric = column.task, column.metric
    if task not in r.tasks:
        return Cell("n/a", "", title=f"{r.display_name} does not serve {TASK_TITLES[task].lower()}")
    value = r.record.metric(task, metric)
    if value is None or value.mean is None:
        why = "not measured" if value is None else "no query in this segment"
        if value is not None and not value.per_seed:
            why = "no seed finished"
        return Cell("—", "", title=f"{metric} ({TASK_TITLES[task].lower()}): {why}")
    mean = float(value.mean)
    cell = Cell(format_value(mean), repr(round(mean, DECIMALS)), value=mean)
    lines = [f"{r.display_name}, {TASK_TITLES[task].lower()} {metric} = {mean:.4f} over {value.n:,} queries"]
    per_seed = {seed: float(x) for seed, x in sorted(value.per_seed.items()) if x is not None}
    if len(per_seed) >= 2:
        sd = spreads[(task, metric)]
        cell.spread = f"± {sd:.{DECIMALS}f}"
        lines.append(f"mean of {len(per_seed)} seeds, sample sd {sd:.4f} (seeds: "
                     + ", ".join(f"{seed}: {x:.4f}" for seed, x in per_seed.items()) + ")")
    lists = r.record.lists.get(task)
    if lists and lists.mean_distinct_items is not None and column.segment == "all":
        lines.append(f"lists hold {lists.mean_distinct_items:.2f} distinct items of {lists.depth} on average "
                     f"(decoding {r.decoding})")
    reference = r.references.get(task)
    test = r.record.significance_row(task, metric)
    if reference is not None:
        ref_mean = _reference_mean(reference, task, metric, by_name, test)
        if ref_mean is None:
            notes.append(
                f"{r.display_name} names {reference!r} as its {TASK_TITLES[task].lower()} reference, "
                "which has no record on this fingerprint and protocol version: no improvement shown"
                + "".join(f" ({why})" for why in _comparison_notes(r, task, missing=True))
            )
        elif ref_mean == 0:
            cell.improvement = "–"
            lines.append(f"its reference {reference} scores 0: no relative improvement")
        else:
            cell.improvement = format_percent((mean - ref_mean) / ref_mean * 100.0)
            lines.append(f"{cell.improvement} over its reference {reference} ({ref_mean:.4f})")
    if test is not None:
        cell.significant = bool(test.significant)
        lines.append(_describe_test(test))
        notes.extend(f"{r.display_name}, {TASK_TITLES[task].lower()}: {why}"
                     for why in _comparison_notes(r, task, missing=False))
    cell.title = "\n".join(lines)
    return cell


def _comparison_notes(r: LoadedRecord, task: str, *, missing: bool) -> list[str]:
    """What the record says about its comparison for `task` (harness.evaluation.significance: missing, or made over
    other seeds than the submission's)."""
    return [n.note for n in r.record.comparison_notes if n.task == task and n.missing == missing]


def _reference_mean(
    reference: str, task: str, metric: str, by_name: dict[str, LoadedRecord], test: SignificanceRow | None
) -> float | None:
    ref = by_name.get(reference)
    if ref is not None:
        value = ref.record.metric(task, metric)
        if value is not None and value.mean is not None:
            return float(value.mean)
    if test is not None and test.reference_mean is not None:
        return float(test.reference_mean)
    return None


def _describe_test(test: SignificanceRow) -> str:
    """The tooltip line for one paired t-test row."""
    def num(x, spec=".4f"):
        return "n/a" if x is None else format(x, spec)

    verdict = "significant" if test.significant else "not significant"
    return (
        f"paired t-test vs {test.reference}: diff {num(test.diff, '+.4f')} "
        f"[{num(test.ci_low)}, {num(test.ci_high)}], p = {num(test.p, '.3g')}, "
        f"Holm p = {num(test.p_holm, '.3g')}, {verdict} at α = {test.alpha:g} (n = {test.n:,})"
    )


def _mark_best(rows: list[Row], n_columns: int) -> None:
    """Bold the best shown value of each column (ties included)."""
    for i in range(n_columns):
        shown = [round(row.cells[i].value, DECIMALS) for row in rows if row.cells[i].value is not None]
        if not shown:
            continue
        best = max(shown)
        for row in rows:
            cell = row.cells[i]
            cell.best = cell.value is not None and round(cell.value, DECIMALS) == best


def _classes(cell: Cell, column: Column) -> str:
    flags = {"gap": column.segment == SEGMENTS[0], "na": cell.value is None, "best": cell.best, "sig": cell.significant}
    return " ".join(name for name, on in flags.items() if on)


def _blocks(rows: list[Row], records: list[LoadedRecord]) -> list[Block]:
    """Rows by kind (generative, baselines, then any other kind); inside a block, submissions that serve as
    someone's reference first (task-specific models before the joint one, as in Table 5), then by name."""
    referenced = {ref for r in records for ref in r.references.values()}
    has_reference = {r.name for r in records if r.references}
    kinds = list(BLOCK_TITLES) + sorted({row.kind for row in rows} - set(BLOCK_TITLES))
    blocks = []
    for kind in kinds:
        members = [row for row in rows if row.kind == kind]
        if not members:
            continue
        members.sort(key=lambda row: (row.name in has_reference and row.name not in referenced,
                                      row.display_name.casefold(), row.name))
        blocks.append(Block(BLOCK_TITLES.get(kind, f"Other submissions ({kind})"), members))
    return blocks
