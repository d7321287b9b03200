"""Does one task still help the other when items are named by Semantic IDs? (paper §8; Penha et al., RecSys'25)

For each item-ID scheme -- atomic (the paper's one token per item) and semantic IDs built from each vector source
(content, collaborative, concat, multitask: harness.generative.item_vectors) at each codebook size -- the joint
submission and its two task-specific references are run as variants with `item_ids` / `semantic_ids` in their
[params] (own names, config hashes and work folders), the joint variant compared with the references of the same
scheme: the paired tests ask the paper's question once per way of naming items.

All three models of one scheme name the items alike: the codes are cached per dataset fingerprint, source and
settings (harness.generative.semantic_ids), so a difference is the training data's, not the identifiers'.
"""

from __future__ import annotations

from typing import Any, Sequence

from harness.diagnostics.figures import Series, plot_id_schemes, plot_sweep
from harness.errors import HarnessError
from harness.experiments.context import (Context, decoding_note, distinct_items, metric_values,
                                         minimum_detectable_difference, power_note, variant)
from harness.experiments.summary import Summary
from harness.generative.item_vectors import SOURCES

DEFAULT_DATASETS = ("sim1", "sim2", "sim3")
DEFAULT_SOURCES = SOURCES
# Codes per level when --codes is not given: the simulations' 30-80 items fit 8 x 8 prefixes; ml-small's 9,691 items
# get 3 levels of 32 (32,768 prefixes; with multitask vectors 76 % of items still share theirs: docs/generative.md).
DEFAULT_CODES = {"ml-small": {"levels": 3, "codes": 32}}
SIM_CODES = {"levels": 2, "codes": 8}
TASK_TITLE = {"rec": "recommendation", "search": "search"}


def scheme_params(source: str | None, codes: int | None, base_params: dict[str, Any]) -> dict[str, Any] | None:
    """The [params] a variant of a submission sets for one scheme, merged over the submission's own (its
    semantic_ids settings, e.g. the vector source's training budget, carry over; by_dataset tables are merged);
    None where the submission itself is that scheme (atomic IDs of an atomic submission)."""
    base_ids = dict(base_params.get("semantic_ids", {}))
    by_dataset = {name: dict(table) for name, table in base_params.get("by_dataset", {}).items()}
    if source is None:
        if base_params.get("item_ids", "atomic") == "atomic":
            return None
        for table in by_dataset.values():
            table.pop("semantic_ids", None)
        return {"item_ids": "atomic", "semantic_ids": {}, "by_dataset": by_dataset}
    chosen = {"source": source, **({"codes": codes} if codes else {})}
    top = {**SIM_CODES, **base_ids, **chosen}
    for name in {*DEFAULT_CODES, *(n for n, t in by_dataset.items() if "semantic_ids" in t)}:
        table = by_dataset.setdefault(name, {})
        table["semantic_ids"] = {**top, **table.get("semantic_ids", DEFAULT_CODES.get(name, {})), **chosen}
    return {"item_ids": "semantic", "semantic_ids": top, "by_dataset": by_dataset}


def _shipped_semantic(ctx: Context, base, source: str | None, codes: int | None):
    """`NAME_semantic` beside an atomic submission NAME when it is exactly this scheme (its source, its own codebook):
    its records are then the shipped submission's own (comparable with published ones), not a variant's."""
    if source is None or codes is not None or base.params.get("item_ids", "atomic") != "atomic":
        return None
    folder = ctx.submissions_dir / f"{base.name}_semantic"
    if not (folder / "config.toml").is_file():
        return None
    shipped = ctx.submission(folder.name)
    ids = shipped.params.get("semantic_ids", {})
    return shipped if shipped.params.get("item_ids") == "semantic" and ids.get("source") == source else None


def run_ids(ctx: Context, *, datasets: Sequence[str] = DEFAULT_DATASETS, sources: Sequence[str] = DEFAULT_SOURCES,
            codes: Sequence[int] = (), atomic: bool = True, command: str = "") -> Summary:
    bad = [s for s in sources if s not in SOURCES]
    if bad:
        raise HarnessError(f"ids: unknown vector source(s) {bad}; known: {', '.join(SOURCES)}")
    if any(not isinstance(c, int) or isinstance(c, bool) or c < 2 for c in codes):
        raise HarnessError(f"ids: codes {list(codes)!r} must be integers >= 2 (codes per level)")
    joint = ctx.joint_submission()
    refs = {task: ctx.reference(task) for task in ("rec", "search")}
    schemes: list[tuple[str, str | None, int | None]] = [("atomic", None, None)] if atomic else []
    schemes += [(f"semantic:{s}" + (f"/{c}" if c else ""), s, c) for s in sources for c in (codes or [None])]

    summary = Summary(
        "ids", "Joint vs task-specific, per item-ID scheme", "§8 (open question); Penha et al. RecSys'25",
        "Each ID scheme's joint model (Gen_R+S) against its own task-specific models (Gen_R, Gen_S) trained with "
        "the same item IDs; semantic IDs are RQ-k-means codes of item vectors from the named source.",
        command,
        [("dataset", "Dataset"), ("task", "Task"), ("ids", "Item IDs"), ("levels", "Levels × codes"),
         ("collision", "Collision rate"), ("specific", "Task-specific"), ("joint", "Joint"), ("delta", "Δ joint"),
         ("p", "p (Holm)"), ("mde", "MDE"), ("seeds", "Seeds")],
        metric_key="joint",
    )
    for dataset in datasets:
        name = ctx.dataset(dataset)
        metric = None
        by_scheme: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for label, source, c in schemes:
            suffix = "ids-" + label.replace(":", "-").replace("/", "-c")
            subs = {}
            for role, base in (("rec", refs["rec"]), ("search", refs["search"]), ("joint", joint)):
                shipped = _shipped_semantic(ctx, base, source, c)
                if shipped and role == "joint" and shipped.references != {t: subs[t].name for t in refs}:
                    shipped = None  # its references are not this scheme's models: use a variant that names them
                params = None if shipped else scheme_params(source, c, base.params)
                references = {t: subs[t].name for t in refs} if role == "joint" else None
                subs[role] = shipped or (base if params is None else variant(
                    base, suffix=suffix, display_suffix=f"({label})", params=params, references=references))
            records = {role: ctx.run(sub, name) for role, sub in subs.items()}
            metric = metric or f"R@{records['joint'].dataset.headline_k}"
            for task in ("rec", "search"):
                row, seeds = _row(ctx, subs, records, task, metric, name, label)
                summary.rows.append(row)
                by_scheme.setdefault(task, {})[label] = seeds
        _figures(ctx, summary, name, metric, by_scheme, schemes)
    summary.notes.append(decoding_note(ctx))
    summary.notes.append(power_note([{**r, "task": f"{r['dataset']} {r['task']}"} for r in summary.rows], "R@K"))
    summary.notes.append("Semantic IDs of one scheme are built once per dataset and shared by its three models "
                         "(cached by dataset fingerprint, source and settings); atomic rows are the shipped submissions.")
    return summary


def _row(ctx, subs, records, task, metric, dataset, label) -> tuple[dict, tuple[list[float], list[float]]]:
    specific_mean, specific_seeds = metric_values(records[task], task, metric)
    joint_mean, joint_seeds = metric_values(records["joint"], task, metric)
    tested = records["joint"].significance_row(task, metric)
    test = tested.to_dict() if tested is not None else {}
    ids = _item_ids_info(records["joint"])
    row = {
        "dataset": dataset, "task": TASK_TITLE[task], "ids": label,
        "levels": f"{ids['levels']} × {ids['codes_per_level']}" if ids else "1 token/item",
        "collision": ids.get("collision_rate") if ids else None,
        "specific": specific_mean, "joint": joint_mean,
        "delta": None if joint_mean is None or specific_mean is None else joint_mean - specific_mean,
        "p": test.get("p_holm"), "significant": test.get("significant"),
        "mde": minimum_detectable_difference(test) if test else None, "seeds": len(joint_seeds),
        "distinct": distinct_items(records["joint"], task),
        "record": ctx.record_path(subs["joint"], dataset), "reference_record": ctx.record_path(subs[task], dataset),
    }
    return row, (specific_seeds, joint_seeds)


def _item_ids_info(record) -> dict | None:
    """What the first finished unit's adapter said about its semantic IDs (None for atomic IDs)."""
    for unit in record.units:
        info = unit.adapter_info.get("item_ids")
        if isinstance(info, dict):
            return info
    return None


def _figures(ctx, summary, dataset, metric, by_scheme, schemes) -> None:
    folder = ctx.out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    safe = dataset.replace(":", "_").replace("=", "-")
    for task, values in by_scheme.items():
        path = folder / f"ids-{safe}-{task}.svg"
        plot_id_schemes(values, path, metric=metric, title=f"{dataset}: {TASK_TITLE[task]} by item-ID scheme")
        summary.figures.append({"file": path.relative_to(ctx.out).as_posix(),
                                "alt": f"{metric} on {TASK_TITLE[task]} ({dataset}) for each item-ID scheme, "
                                       "task-specific and joint side by side, ± 1 sd over seeds"})
        sizes = sorted({c for _, _, c in schemes if c})
        if len(sizes) < 2:
            continue
        for source in sorted({s for _, s, c in schemes if s and c}):
            series = []
            for role, index in (("task-specific", 0), ("joint", 1)):
                labels = [lbl for lbl, s, c in schemes if s == source and c]
                series.append(Series(f"{role} ({source})", [c for _, s, c in schemes if s == source and c],
                                     [values[lbl][index] for lbl in labels]))
            path = folder / f"ids-{safe}-{task}-{source}-codes.svg"
            plot_sweep(series, path, x_label="codes per level", y_label=f"{metric} on the test set",
                       title=f"{dataset}: {TASK_TITLE[task]}, {source} IDs by codebook size", log_x=True)
            summary.figures.append({"file": path.relative_to(ctx.out).as_posix(),
                                    "alt": f"{metric} on {TASK_TITLE[task]} ({dataset}) against codes per level, "
                                           f"{source} semantic IDs, task-specific and joint"})
