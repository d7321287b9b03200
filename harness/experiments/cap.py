"""Figure 4: the joint model when the added task may contribute at most N training instances per item.

"By restricting the training data to a fixed number of instances per item we effectively remove the popularity
bias in the dataset" (paper §7). For target task T the added task is the other one: the joint submission is run
again with `cap_per_item = {other: N}` in its [params] (a variant with its own name, config hash and work folder),
for each cap, and compared with the uncapped joint model and T's task-specific reference.

The paper ran this on Podcasts, which is not public; the default here is SIM1, whose only signal is popularity,
and `-d ml-small` runs it on real data (slow on a CPU).
"""

from __future__ import annotations

from typing import Sequence

from harness.diagnostics.figures import Series, plot_cap
from harness.errors import HarnessError
from harness.experiments.context import (Context, decoding_note, distinct_items, metric_values,
                                         minimum_detectable_difference, power_note, variant)
from harness.experiments.summary import Summary

DEFAULT_CAPS = (5, 10, 50, 500)
DEFAULT_DATASET = "sim1"
OTHER = {"rec": "search", "search": "rec"}
TASK_TITLE = {"rec": "recommendation", "search": "search"}


def run_cap(ctx: Context, *, dataset: str = DEFAULT_DATASET, caps: Sequence[int] = DEFAULT_CAPS,
            tasks: Sequence[str] = ("rec", "search"), command: str = "") -> Summary:
    if not caps or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in caps):
        raise HarnessError(f"cap: caps {list(caps)!r} must be positive integers")
    for task in tasks:
        if task not in OTHER:
            raise HarnessError(f"cap: unknown task {task!r}; give rec and/or search")
    joint = ctx.joint_submission()
    name = ctx.dataset(dataset)
    references = {task: ctx.reference(task) for task in tasks}
    records = {ref.name: ctx.run(ref, name) for ref in {r.name: r for r in references.values()}.values()}
    records[joint.name] = ctx.run(joint, name)
    capped: dict[tuple[str, int], object] = {}
    for task in tasks:
        added = OTHER[task]
        for cap in caps:
            sub = variant(joint, suffix=f"cap-{added}{cap}", display_suffix=f"({added} capped at {cap}/item)",
                          params={"cap_per_item": {added: cap}}, references={task: references[task].name})
            records[sub.name] = ctx.run(sub, name)
            capped[(task, cap)] = sub

    metric = f"R@{records[joint.name].dataset.headline_k}"
    summary = Summary(
        "cap", f"Training instances per item from the added task ({name})", "Figure 4, §7",
        "The joint model with the added task's training data capped at N instances per item, which removes most "
        "of that task's popularity signal (H1), against the uncapped joint model and the task-specific reference.",
        command,
        [("task", "Target task"), ("model", "Model"), ("cap", "Cap per item (added task)"), (metric, metric),
         ("seeds", "Seeds"), ("delta", "Δ vs reference"), ("p", "p (Holm)"), ("mde", "MDE"), ("distinct", "Distinct")],
        metric_key=metric,
    )
    for task in tasks:
        ref = references[task]
        ref_mean, ref_seeds = metric_values(records[ref.name], task, metric)
        joint_mean, joint_seeds = metric_values(records[joint.name], task, metric)
        summary.rows.append({"task": TASK_TITLE[task], "model": ref.display_name, "cap": f"no {OTHER[task]} data",
                             metric: ref_mean, "seeds": len(ref_seeds), "distinct": distinct_items(records[ref.name], task),
                             "record": ctx.record_path(ref, name)})
        summary.rows.append(_row(ctx, joint, records[joint.name], task, metric, "none", ref_mean, name))
        xs, ys = [], []
        for cap in caps:
            sub = capped[(task, cap)]
            summary.rows.append(_row(ctx, sub, records[sub.name], task, metric, cap, ref_mean, name))
            values = metric_values(records[sub.name], task, metric)[1]
            if values:
                xs.append(cap)
                ys.append(values)
        path = ctx.out / "figures" / f"cap-{task}.svg"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_cap([Series(f"{joint.display_name}, {OTHER[task]} capped", xs, ys)], path, metric=metric,
                 references={f"{joint.display_name}, uncapped": joint_seeds, ref.display_name: ref_seeds},
                 title=f"{name}: {TASK_TITLE[task]} with the {OTHER[task]} data capped per item")
        summary.figures.append({
            "file": path.relative_to(ctx.out).as_posix(),
            "alt": f"{metric} on {TASK_TITLE[task]} against the cap on {OTHER[task]} training instances per item, "
                   f"with the uncapped {joint.display_name} and {ref.display_name} as dashed lines",
        })
    summary.notes.append(decoding_note(ctx))
    summary.notes.append(power_note(summary.rows, metric))
    summary.notes.append("p is Holm-corrected within each record: the uncapped joint record tests both tasks (six "
                         "tests), a capped variant only its target task (three), so the same difference can get a "
                         "different p (e.g. a cap above every item's count, which trains the uncapped model again).")
    summary.notes.append("Which instances a cap keeps is drawn from the unit seed (docs/generative.md, cap_per_item); "
                         "items with fewer instances than the cap keep them all, so a cap above the largest item count "
                         "equals the uncapped model's data.")
    return summary


def _row(ctx, sub, record, task, metric, cap, ref_mean, dataset) -> dict:
    mean, seeds = metric_values(record, task, metric)
    tested = record.significance_row(task, metric)
    test = tested.to_dict() if tested is not None else {}
    return {"task": TASK_TITLE[task], "model": sub.display_name, "cap": cap, metric: mean, "seeds": len(seeds),
            "delta": None if mean is None or ref_mean is None else mean - ref_mean, "p": test.get("p_holm"),
            "significant": test.get("significant"), "mde": minimum_detectable_difference(test) if test else None,
            "distinct": distinct_items(record, task),
            "record": ctx.record_path(sub, dataset)}
