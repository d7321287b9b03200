"""The simulation sweeps (paper §6): SIM1 over its shuffle levels against the KL divergence of the two popularity
distributions (Figure 2, H1), SIM2 over % of query match (Table 4, H2 S→R) and SIM3 over % of pairs in qrels
(Table 4, H2 R→S), each at the full and a 65% sample of the target task's training data.

At every (sample, level) the task-specific reference(s) run first, then the joint submission, on the same compiled
dataset, so the joint record carries its significance test and H1/H2 diagnostics against them. The reference runs
again at every level although its own task's data does not change with the level (tested in the simulations): the
dataset's fingerprint does, and a test is only ever made on one fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from harness.diagnostics.figures import SIM1_X, SIM2_X, SIM3_X, Series, plot_sweep
from harness.errors import HarnessError
from harness.experiments.context import (Context, decoding_note, distinct_items, format_level, metric_values,
                                         minimum_detectable_difference, power_note)
from harness.experiments.summary import Summary
from harness.records.record import ResultRecord

TASK_TITLE = {"rec": "recommendation", "search": "search"}
DEFAULT_SAMPLES = (1.0, 0.65)

# The paper's Table 4 (R@10), for the table's "paper" column: (sample, level) -> value; level None = the reference.
PAPER_TABLE4: dict[str, dict[tuple[float, float | None], float]] = {
    "sim2": {(1.0, None): 0.907, (1.0, 0.0): 0.842, (1.0, 0.25): 0.880, (1.0, 0.5): 0.938, (1.0, 0.75): 0.944,
             (1.0, 1.0): 0.985, (0.65, None): 0.717, (0.65, 0.0): 0.732, (0.65, 0.25): 0.752, (0.65, 0.5): 0.708,
             (0.65, 0.75): 0.903, (0.65, 1.0): 0.897},
    "sim3": {(1.0, None): 0.580, (1.0, 0.0): 0.240, (1.0, 0.25): 0.280, (1.0, 0.5): 0.280, (1.0, 0.75): 0.460,
             (1.0, 1.0): 0.640, (0.65, None): 0.320, (0.65, 0.0): 0.200, (0.65, 0.25): 0.260, (0.65, 0.5): 0.220,
             (0.65, 0.75): 0.400, (0.65, 1.0): 0.380},
}


@dataclass(frozen=True)
class SweepDesign:
    name: str
    param: str  # the simulation's sweep parameter
    levels: tuple[float, ...]
    target_tasks: tuple[str, ...]
    title: str
    paper: str
    description: str
    level_label: str
    x_label: str
    x_is_kl: bool  # SIM1: x is the compiled data's KL(S‖R); otherwise the level in %
    changed_task: str  # the task whose training data the level changes (the simulation's docstring says which)

    def level_text(self, level: float) -> str:
        return f"{self.param} {format_level(level)}" if self.x_is_kl else f"{level * 100:g}%"


SWEEPS: dict[str, SweepDesign] = {
    "sim1": SweepDesign(
        "sim1", "shuffle", (0.0, 0.1, 0.25, 0.5, 0.75, 1.0), ("rec", "search"),
        "SIM1 (H1): item popularity, search popularity shuffled away from recommendation's",
        "Figure 2, §6.1",
        "Zipf item popularity shared by both tasks, with a growing share of the search popularities shuffled; the "
        "x axis is the compiled data's KL(S‖R) between the two training popularity distributions. H1 predicts the "
        "joint model's gain shrinks as the distributions diverge.",
        "Shuffle", SIM1_X, True, "search",
    ),
    "sim2": SweepDesign(
        "sim2", "q_match", (0.0, 0.25, 0.5, 0.75, 1.0), ("rec",),
        "SIM2 (H2, search → recommendation): % of query match",
        "Table 4 (left), §6.2",
        "Five clusters of six co-occurring items; a share of each item's queries are its cluster's shared queries. "
        "H2 predicts the joint model beats Gen_R on recommendation when queries match within clusters (100%) and not "
        "when they do not (0%).",
        "% of q. match", SIM2_X, False, "search",
    ),
    "sim3": SweepDesign(
        "sim3", "pairs_in_qrels", (0.0, 0.25, 0.5, 0.75, 1.0), ("search",),
        "SIM3 (H2, recommendation → search): % of pairs in qrels",
        "Table 4 (right), §6.3",
        "Topical queries; a share of the item pairs co-occurring in user histories are relevant together for a "
        "query. H2 predicts the joint model beats Gen_S on search when that share is high and not when it is low.",
        "% pairs in qrels", SIM3_X, False, "rec",
    ),
}


def dataset_spec(design: SweepDesign, level: float, sample: float) -> str:
    spec = f"{design.name}:{design.param}={format_level(level)}"
    return spec if sample == 1.0 else f"{spec},sample={format_level(sample)}"


def run_sweep(design: SweepDesign, ctx: Context, *, levels: Sequence[float] | None = None,
              samples: Sequence[float] = DEFAULT_SAMPLES, command: str = "") -> Summary:
    levels = tuple(levels if levels is not None else design.levels)
    _check_fractions(levels, f"{design.name} levels ({design.param})", allow_zero=True)
    _check_fractions(samples, "samples", allow_zero=False)
    joint = ctx.joint_submission()
    references = {task: ctx.reference(task) for task in design.target_tasks}

    points: list[dict[str, Any]] = []
    for sample in samples:
        for level in levels:
            dataset = ctx.dataset(dataset_spec(design, level, sample))
            records: dict[str, ResultRecord] = {}
            for reference in {ref.name: ref for ref in references.values()}.values():  # one serving both runs once
                records[reference.name] = ctx.run(reference, dataset)
            records[joint.name] = ctx.run(joint, dataset)
            points.append({"sample": sample, "level": level, "dataset": dataset, "records": records})
    return _summarize(design, ctx, joint, references, points, samples, command)


def _check_fractions(values: Sequence[float], what: str, *, allow_zero: bool) -> None:
    if not values:
        raise HarnessError(f"{what}: give at least one value")
    for value in values:
        low_ok = value >= 0 if allow_zero else value > 0
        if not (low_ok and value <= 1):
            raise HarnessError(f"{what}: {value!r} is outside {'[0, 1]' if allow_zero else '(0, 1]'}")


def _summarize(design, ctx, joint, references, points, samples, command) -> Summary:
    headline_k = points[0]["records"][joint.name].dataset.headline_k
    metric = f"R@{headline_k}"
    diag_label = "ΔPop % (H1)" if design.x_is_kl else "Δ H2 metric %"
    columns = [("sample", "Sample"), ("level", design.level_label)]
    if design.x_is_kl:
        columns.append(("kl", "KL(S‖R)"))
    columns += [("task", "Task"), ("model", "Model"), (metric, metric), ("seeds", "Seeds"),
                ("delta", "Δ vs reference"), ("p", "p (Holm)"), ("mde", "MDE"), ("distinct", "Distinct"),
                ("diagnostic", diag_label)]
    paper = PAPER_TABLE4.get(design.name)
    if paper:
        columns.append(("paper", f"Paper {metric}"))
    summary = Summary(design.name, design.title, design.paper, design.description, command, columns, metric_key=metric)

    series: dict[str, dict[str, tuple[list[float], list[list[float]]]]] = {t: {} for t in design.target_tasks}
    for point in points:
        joint_record = point["records"][joint.name]
        kl = joint_record.dataset.stats.get("kld_sr")
        x = kl if design.x_is_kl else point["level"] * 100
        for task, reference in references.items():
            ref_record = point["records"][reference.name]
            base = {"sample": f"{point['sample'] * 100:g}%", "level": design.level_text(point["level"]), "kl": kl,
                    "task": TASK_TITLE[task]}
            ref_mean, ref_seeds = metric_values(ref_record, task, metric)
            joint_mean, joint_seeds = metric_values(joint_record, task, metric)
            tested = joint_record.significance_row(task, metric)  # against this reference, or it is not this row's
            test = tested.to_dict() if tested is not None and tested.reference == reference.name else {}
            summary.rows.append({**base, "model": reference.display_name, metric: ref_mean, "seeds": len(ref_seeds),
                                 "distinct": distinct_items(ref_record, task),
                                 "paper": paper.get((point["sample"], None)) if paper else None,
                                 "record": ctx.record_path(reference, point["dataset"])})
            summary.rows.append({**base, "model": joint.display_name, metric: joint_mean, "seeds": len(joint_seeds),
                                 "delta": None if joint_mean is None or ref_mean is None else joint_mean - ref_mean,
                                 "p": test.get("p_holm"), "significant": test.get("significant"),
                                 "mde": minimum_detectable_difference(test),
                                 "distinct": distinct_items(joint_record, task),
                                 "diagnostic": _diagnostic(joint_record, task, design.x_is_kl),
                                 "paper": paper.get((point["sample"], point["level"])) if paper else None,
                                 "record": ctx.record_path(joint, point["dataset"])})
            sample_label = f"{point['sample'] * 100:g}% sample"
            for model, values in ((joint.display_name, joint_seeds), (reference.display_name, ref_seeds)):
                xs, ys = series[task].setdefault(f"{model}, {sample_label}", ([], []))
                if values and x is not None:
                    xs.append(x)
                    ys.append(values)

    for task in design.target_tasks:
        path = ctx.out / "figures" / f"{design.name}-{task}.svg"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_sweep([Series(label, xs, ys) for label, (xs, ys) in series[task].items() if xs], path,
                   x_label=design.x_label, y_label=f"{metric} on {TASK_TITLE[task]} (test set)",
                   title=f"{design.title.split(':')[0]}: {TASK_TITLE[task]}")
        summary.figures.append({
            "file": path.relative_to(ctx.out).as_posix(),
            "alt": f"{metric} on {TASK_TITLE[task]} of {joint.display_name} and {references[task].display_name} "
                   f"against {design.x_label}, one line per model and sample",
        })
    summary.notes += _notes(design, joint, references, points, metric)
    summary.notes.append(decoding_note(ctx))
    summary.notes.append(power_note(summary.rows, metric))
    if design.x_is_kl:
        summary.notes += slope_notes(summary.rows, metric)
    return summary


def kl_slope(kl: Sequence[float], delta: Sequence[float], alpha: float = 0.05) -> dict[str, float] | None:
    """Least-squares slope of the joint model's gain on KL(S‖R) over the sweep's levels, with its (1 - alpha)
    confidence interval from the t distribution on n - 2 degrees of freedom (one point per level: the levels
    are the independent units; seeds are already averaged into each)."""
    from scipy import stats

    x, y = np.asarray(kl, dtype=float), np.asarray(delta, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    fit = stats.linregress(x, y)
    half = stats.t.ppf(1 - alpha / 2, len(x) - 2) * fit.stderr
    return {"slope": float(fit.slope), "ci_low": float(fit.slope - half), "ci_high": float(fit.slope + half),
            "p": float(fit.pvalue), "n": len(x)}


def slope_notes(rows: list[dict], metric: str) -> list[str]:
    """Figure 2's claim as a number: H1 predicts the gain falls as the distributions diverge (slope < 0)."""
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        if row.get("delta") is not None and row.get("kl") is not None:
            points.setdefault((row["task"], row["sample"]), []).append((row["kl"], row["delta"]))
    notes = []
    for (task, sample), xy in points.items():
        fit = kl_slope([x for x, _ in xy], [y for _, y in xy])
        if fit is None:
            continue
        notes.append(f"Slope of the {task} gain (Δ {metric}) on KL(S‖R), {sample} sample: {fit['slope']:+.4f} per "
                     f"nat (95% CI {fit['ci_low']:+.4f} to {fit['ci_high']:+.4f}, p = {fit['p']:.3g}, {fit['n']} "
                     "levels); H1 predicts a negative slope.")
    return notes


def _diagnostic(record: ResultRecord, task: str, h1: bool) -> float | None:
    diag = record.diagnostics.get(task) or {}
    if h1:
        return ((diag.get("h1") or {}).get("all") or {}).get("delta_pct")
    return (diag.get("h2") or {}).get("delta_pct")


def _reference_note(design: SweepDesign, task: str, name: str, sample: float, records: list[ResultRecord],
                    metric: str) -> str:
    """Why the task-specific reference's score does or does not move along the sweep.

    Its own training data changes with the level only when its task is the one the sweep changes (SIM1's
    search). Otherwise a difference has one expected cause on the offline preset: the tokenizer is trained on
    both tasks' training text, so that the three models share one vocabulary, and the level changes that
    text; levels that got the same tokenizer must then score the same. Anything else is non-reproducible
    training and is said so."""
    label = f"{name} ({TASK_TITLE[task]}, {sample * 100:g}% sample)"
    values = [metric_values(record, task, metric)[0] for record in records]
    known = [v for v in values if v is not None]
    spread = f"{min(known):.4f} to {max(known):.4f}" if known else "no values"
    if task == design.changed_task:
        return (f"{label} trains on the {TASK_TITLE[task]} data the level changes, so it is a different model at "
                f"each level ({spread}).")
    if len(set(values)) == 1:
        return f"{label} scored the same at every level, as it must: its training data does not change with the level."
    tokenizers = [_tokenizer_hashes(record) for record in records]
    by_tokenizer: dict[tuple, set] = {}
    for hashes, value in zip(tokenizers, values):
        by_tokenizer.setdefault(hashes, set()).add(value)
    if len(by_tokenizer) > 1 and all(h and len(v) == 1 for h, v in by_tokenizer.items()):
        return (f"{label} varied across levels ({spread}) although its training data is the same: the offline "
                "tokenizer is trained on both tasks' training text (one vocabulary for all three models) and the "
                f"level changes the {TASK_TITLE[design.changed_task]} text, which gave {len(by_tokenizer)} different "
                "tokenizers here, hence different vocabularies and initial weights; levels with the same tokenizer "
                "scored identically.")
    return (f"{label} varied across levels ({spread}) although its training data and tokenizer are the same: "
            "training was not bit-reproducible across these runs.")


def _tokenizer_hashes(record: ResultRecord) -> tuple:
    """The tokenizers a record's units used (adapter_info.backbone.tokenizer_hash), () when not recorded."""
    hashes = {(unit.adapter_info.get("backbone") or {}).get("tokenizer_hash") for unit in record.units}
    return tuple(sorted(h for h in hashes if h))


def _notes(design, joint, references, points, metric) -> list[str]:
    seeds = sorted({s for p in points for s in p["records"][joint.name].metric(design.target_tasks[0], metric).per_seed})
    notes = [
        f"Seeds {', '.join(map(str, seeds))}; values are means over seeds; p is the paired t-test of "
        f"{joint.display_name} against the reference on per-query {metric} (seed-averaged), Holm-corrected within "
        "the joint record.",
        "Sample = share of the target task's training data kept (the other task is never thinned), "
        "as in Table 4's 100% and 65% rows.",
    ]
    for task, reference in references.items():
        for sample in dict.fromkeys(p["sample"] for p in points):
            records = [p["records"][reference.name] for p in points if p["sample"] == sample]
            notes.append(_reference_note(design, task, reference.display_name, sample, records, metric))
    notes.append(f"Δ columns: {joint.display_name} minus reference. Diagnostic: "
                 + ("H1 ΔPop % of predicted items by the other task's training popularity (Table 6's measure)."
                    if design.x_is_kl else "H2 Δ % (Table 7's measure: mean metric where the joint model's changed "
                    "prediction wins vs where the reference's wins; docs/diagnostics.md)."))
    diagnostic_seeds = sorted({str(diag["seed"]) for p in points for task in design.target_tasks
                               if "seed" in (diag := p["records"][joint.name].diagnostics.get(task) or {})})
    if diagnostic_seeds and len(seeds) > 1:
        # The record's diagnostics compare one seed's ranking pair (docs/diagnostics.md, "Seeds"), not the mean.
        notes.append(f"The diagnostic column is computed on seed {', '.join(diagnostic_seeds)}'s predictions "
                     "(the seed the joint record's diagnostics compare), not averaged over seeds.")
    return notes
