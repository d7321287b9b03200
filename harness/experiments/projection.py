"""Figures 1 and 3: the learned item ID embeddings of the task-specific and joint models projected to 2-D,
coloured by training popularity (Figure 1: popularity is encoded in both models' IDs) and, on simulations, by
the simulated cluster (Figure 3: on SIM2 at 100% query match the joint model groups items by cluster).

Embeddings come from `Adapter.item_embeddings()`, stored by the runner beside each unit's rankings. Two numbers
make the pictures checkable without eyes, both measured in the full embedding space (cosine), not the projection:
- cluster purity: the share of each item's 5 nearest neighbours in its own cluster (chance = cluster size / items);
- popularity locality: Spearman's rho between an item's log popularity and its 5 nearest neighbours' mean.
"""

from __future__ import annotations

import numpy as np

from harness.data.spec import DatasetSpec
from harness.data.store import CompiledDataset
from harness.diagnostics.figures import plot_embedding_projection
from harness.errors import HarnessError
from harness.experiments.context import Context, minimum_detectable_difference
from harness.experiments.summary import Summary
from harness.metrics.significance import paired_ttest
from harness.protocol.units import EMBEDDINGS_FILE, INITIAL_EMBEDDINGS_FILE

DEFAULT_DATASET = "sim2"
NEIGHBOURS = 5


def run_projection(ctx: Context, *, dataset: str = DEFAULT_DATASET, method: str = "auto",
                   command: str = "") -> Summary:
    joint = ctx.joint_submission()
    name = ctx.dataset(dataset)
    models = [ctx.reference(task) for task in sorted(joint.references)]
    models = list({sub.name: sub for sub in models}.values()) + [joint]
    embeddings: dict[str, np.ndarray] = {}  # the figure's: each model's lowest seed
    all_seeds: dict[str, dict[int, np.ndarray]] = {}  # the table's: every seed, averaged
    changes: dict[str, dict[int, np.ndarray]] = {}  # what training changed (trained - initial), where stored
    for sub in models:
        record = ctx.run(sub, name)
        by_seed = {}
        for seed in sorted(record.ok_seeds):
            path = ctx.record_folder(sub, name) / "units" / f"seed{seed}" / EMBEDDINGS_FILE
            if not path.is_file():
                raise HarnessError(
                    f"{path}: missing: {sub.name}'s unit finished without storing item embeddings (an adapter without "
                    f"item_embeddings(), or a unit from before the harness stored them); delete {path.parent} and run "
                    "again to retrain it"
                )
            by_seed[seed] = np.load(path)
            initial = path.with_name(INITIAL_EMBEDDINGS_FILE)
            if initial.is_file():
                changes.setdefault(sub.display_name, {})[seed] = by_seed[seed] - np.load(initial)
        all_seeds[sub.display_name] = by_seed
        embeddings[sub.display_name] = by_seed[min(by_seed)]

    with CompiledDataset.open(name, cache_dir=ctx.cache_dir) as ds:
        catalogue = ds.catalogue()
    cluster = catalogue.cluster if catalogue.cluster is not None and (catalogue.cluster >= 0).any() else None
    slug = DatasetSpec.parse(name).slug
    summary = Summary(
        "projection", f"Item ID embeddings ({name})", "Figures 1 and 3, §3 and §6.2",
        "The item ID token embeddings of each model projected to 2-D, coloured by training popularity and, for "
        "simulations, by cluster.",
        command,
        [("model", "Model"), ("items", "Items"), ("dim", "Dimensions"), ("purity", f"Cluster purity @{NEIGHBOURS}"),
         ("chance", "Purity by chance"), ("rho_rec", "Popularity locality ρ (rec)"),
         ("rho_search", "Popularity locality ρ (search)"), ("seeds", "Seeds"),
         ("delta", f"Δ purity vs {models[0].display_name}"), ("p", "p (paired over items)"),
         ("purity_change", f"Purity @{NEIGHBOURS} of the learned change"), ("delta_change", "Δ"),
         ("p_change", "p (items)")],
    )
    per_seed_purity = []
    item_purities: dict[str, list[np.ndarray]] = {}  # per seed, per item
    for model, by_seed in all_seeds.items():
        values = {key: [] for key in ("purity", "rho_rec", "rho_search")}
        for matrix in by_seed.values():
            neighbours = nearest_neighbours(matrix, NEIGHBOURS)
            values["purity"].append(None if cluster is None else cluster_purity(neighbours, cluster))
            values["rho_rec"].append(popularity_locality(neighbours, catalogue.pop_rec))
            values["rho_search"].append(popularity_locality(neighbours, catalogue.pop_search))
            if cluster is not None:
                item_purities.setdefault(model, []).append(per_item_purity(neighbours, cluster))
        matrix = embeddings[model]
        summary.rows.append({
            "model": model, "items": int(matrix.shape[0]), "dim": int(matrix.shape[1]), "seeds": len(by_seed),
            "chance": None if cluster is None else chance_purity(cluster),
            **{key: _mean(vals) for key, vals in values.items()},
        })
        if cluster is not None:
            per_seed_purity.append(f"{model} " + ", ".join(f"{v:.3f}" for v in values["purity"]))
    if cluster is not None:
        _purity_tests(summary, item_purities, models[0].display_name, joint.display_name,
                      keys=("delta", "p"), what="cluster purity")
        _change_purity(summary, changes, all_seeds, cluster, models[0].display_name, joint.display_name)
    seeds_text = {model: sorted(by_seed) for model, by_seed in all_seeds.items()}
    summary.notes.append("Numbers are means over each model's seeds ("
                         + "; ".join(f"{m}: {', '.join(map(str, s))}" for m, s in seeds_text.items())
                         + "); the figures show each model's lowest seed."
                         + (f" Cluster purity per seed: {'; '.join(per_seed_purity)}." if per_seed_purity else ""))
    used = set()
    figures = [("", "item embeddings", "Item ID embeddings", embeddings)]
    if set(changes) == set(embeddings):  # every model stored its start: the learned change, each lowest seed's
        figures.append(("-change", "learned change (trained - initial) of the item embeddings",
                        "Learned change of the item ID embeddings (trained - initial)",
                        {model: by_seed[min(by_seed)] for model, by_seed in changes.items()}))
    for suffix, what, subject, vectors in figures:
        for task, popularity, label in (("rec", catalogue.pop_rec, "Recommendation training interactions"),
                                        ("search", catalogue.pop_search, "Search training (query, item) pairs")):
            path = ctx.out / "figures" / f"projection-{slug}{suffix}-{task}-popularity.svg"
            path.parent.mkdir(parents=True, exist_ok=True)
            info = plot_embedding_projection(vectors, popularity, path, popularity_label=label, cluster=cluster,
                                             method=method, subject=subject)
            used.add(info["method"])
            summary.figures.append({
                "file": path.relative_to(ctx.out).as_posix(),
                "alt": f"{info['method']} projection of the {what} of {', '.join(vectors)}, coloured by "
                       f"{label.lower()}" + (" and by simulated cluster" if cluster is not None else ""),
            })
    summary.notes.append(f"Projection: {', '.join(sorted(used))} (t-SNE when scikit-learn is installed, else PCA); "
                         "the numbers are computed in the full embedding space, not the projection.")
    if cluster is None:
        summary.notes.append(f"{name} has no item clusters: cluster purity is not defined.")
    return summary


def _change_purity(summary, changes: dict[str, dict[int, np.ndarray]], trained: dict[str, dict[int, np.ndarray]],
                   cluster: np.ndarray, baseline: str, joint: str) -> None:
    """Cluster purity of what training changed, trained - initial embedding, for the models whose units stored their
    initial rows. A model trained from scratch starts its ID tokens at random and moves them by a few percent of
    their norm, so the raw embeddings' neighbours are their random start's; the change is what was learned."""
    per_seed: dict[str, list[np.ndarray]] = {}
    for row in summary.rows:
        by_seed = changes.get(row["model"])
        if not by_seed or len(by_seed) != row["seeds"]:
            continue  # some seed lacks its initial rows: no half-measured mean
        items = [per_item_purity(nearest_neighbours(change, NEIGHBOURS), cluster) for change in by_seed.values()]
        per_seed[row["model"]] = items
        row["purity_change"] = float(np.mean([np.nanmean(v) for v in items]))
        moved = [np.mean(np.linalg.norm(change, axis=1) / np.linalg.norm(trained[row["model"]][seed] - change, axis=1))
                 for seed, change in by_seed.items()]
        row["moved"] = float(np.mean(moved))  # |trained - initial| / |initial|, mean over items and seeds
    if per_seed:
        summary.notes.append("Training moved the item embeddings by " + ", ".join(
            f"{row['model']} {row['moved'] * 100:.1f}%" for row in summary.rows if "moved" in row)
            + " of their initial norm (mean over items and seeds); the learned change's neighbours are those of "
              "what training wrote, not of the random start.")
    if baseline in per_seed and joint in per_seed:
        _purity_tests(summary, per_seed, baseline, joint, keys=("delta_change", "p_change"),
                      what="cluster purity of the learned change (trained - initial embedding)")
    elif changes:
        summary.notes.append("The learned change is measured only where every seed stored its initial embeddings "
                             "(item_embeddings_initial.npy; units from before the harness stored them lack it).")


def _purity_tests(summary, per_seed: dict[str, list[np.ndarray]], baseline: str, joint: str, *,
                  keys: tuple[str, str], what: str) -> None:
    """The joint model's (and every other model's) cluster purity against the first reference's (Gen_R: Figure 3
    compares the joint model with it). The table's p: a paired t-test over items of each item's purity averaged
    over seeds, the harness's convention for queries (seed-averaged per-query values), with items as the units.
    The note adds the test over seeds (each seed's purity, paired by seed order), which with three seeds has two
    degrees of freedom: the stricter reading of "significantly over seeds"."""
    for row in summary.rows:
        if row["model"] == baseline or row["model"] not in per_seed:
            continue
        items = paired_ttest(np.mean(per_seed[row["model"]], axis=0), np.mean(per_seed[baseline], axis=0),
                             metric="purity")
        row.update({keys[0]: items.diff, keys[1]: items.p})  # no "significant": ‡ means a Holm-corrected record test
        if row["model"] != joint:
            continue
        mde = minimum_detectable_difference(items.to_dict())
        note = (f"{joint} against {baseline}: {what} {items.mean:.3f} vs {items.reference_mean:.3f} "
                f"(Δ {items.diff:+.3f}, 95% CI {items.ci_low:+.3f} to {items.ci_high:+.3f}, paired t-test over the "
                f"{items.n} items, p = {items.p:.3g}"
                + (f", MDE {mde:.3f} at 80% power" if mde is not None else ""))
        mine, theirs = per_seed[row["model"]], per_seed[baseline]
        if len(mine) == len(theirs) >= 2:
            seeds = paired_ttest(np.array([np.nanmean(v) for v in mine]), np.array([np.nanmean(v) for v in theirs]),
                                 metric="purity")
            note += f"; over the {seeds.n} seeds, paired: p = {seeds.p:.3g}"
        summary.notes.append(note + "); Figure 3 predicts Δ > 0.")


def per_item_purity(neighbours: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Each item's share of its neighbours in its own cluster (NaN for an item without a cluster)."""
    same = (cluster[neighbours] == cluster[:, None]).mean(axis=1)
    return np.where(cluster >= 0, same, np.nan)


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def nearest_neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """[n, k] indices of each row's k nearest other rows by cosine similarity (ties: lower index first)."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = x.shape[0]
    if n <= k:
        raise HarnessError(f"projection: {n} items are too few for {k} nearest neighbours")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms == 0, 1.0, norms)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, 2048):  # [2048, n] similarities at a time: bounded memory on large catalogues
        sims = x[start:start + 2048] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # not its own neighbour
        order = np.argsort(-sims, axis=1, kind="stable")  # stable: equal similarity, lower index first
        out[start:start + sims.shape[0]] = order[:, :k]
    return out


def cluster_purity(neighbours: np.ndarray, cluster: np.ndarray) -> float | None:
    known = cluster >= 0
    if not known.any():
        return None
    same = cluster[neighbours] == cluster[:, None]
    return float(same[known].mean())


def chance_purity(cluster: np.ndarray) -> float | None:
    """Expected purity of random neighbours: for an item of cluster c, (|c| - 1) / (n - 1)."""
    known = cluster[cluster >= 0]
    if known.size == 0:
        return None
    n = len(cluster)
    sizes = np.bincount(known)
    return float(((sizes[known] - 1) / (n - 1)).mean())


def popularity_locality(neighbours: np.ndarray, popularity: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    log_pop = np.log1p(np.asarray(popularity, dtype=np.float64))
    around = log_pop[neighbours].mean(axis=1)
    if np.ptp(log_pop) == 0 or np.ptp(around) == 0:
        return None
    return float(spearmanr(log_pop, around).statistic)
