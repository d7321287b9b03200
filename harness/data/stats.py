"""Dataset statistics: one row of the paper's Table 3. Small pure functions, each formula in its docstring.

All popularity vectors are over the dataset's one item catalogue (items kept because they appear in both
tasks), in item_id order: pop_rec[i] = occurrences of item i in the training part of the sequences
(positions 1..t-2), pop_search[i] = number of training (query, item) pairs with item i.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def gini(counts: np.ndarray) -> float:
    """Gini index of non-negative counts x (Table 3's concentration of popularity):

        G = (2 * sum_i i * x_(i)) / (n * sum_i x_(i)) - (n + 1) / n,   x_(1) <= ... <= x_(n), i = 1..n

    0 when every item is equally popular, (n - 1) / n when one item has everything. 0 for an empty or
    all-zero vector (no concentration to measure)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = x.size
    total = x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * np.dot(ranks, x) / (n * total) - (n + 1) / n)


def normalise(counts: np.ndarray) -> np.ndarray:
    """p_i = x_i / sum_j x_j (all zeros stay zeros)."""
    x = np.asarray(counts, dtype=np.float64)
    total = x.sum()
    return x / total if total > 0 else x


def ks_distance(pop_s: np.ndarray, pop_r: np.ndarray) -> float:
    """KSdist(S, R): the two-sample Kolmogorov-Smirnov statistic between the per-item normalised training
    popularities p_S and p_R, D = max_x |F_S(x) - F_R(x)| over the empirical CDFs of the two sets of
    per-item probabilities: the value of scipy.stats.ks_2samp(p_S, p_R).statistic (tests check that),
    computed here with numpy because importing scipy.stats alone takes about a second."""
    a = np.sort(normalise(pop_s))
    b = np.sort(normalise(pop_r))
    if a.size == 0 or b.size == 0:
        return 0.0
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def kl_divergence(counts_p: np.ndarray, counts_q: np.ndarray) -> float:
    """KLD(P || Q) = sum_i p_i * ln(p_i / q_i) with add-one (Laplace) smoothing of the counts over the
    catalogue: p_i = (x_i + 1) / (sum_j x_j + n), q_i likewise; natural logarithm (nats)."""
    x = np.asarray(counts_p, dtype=np.float64)
    y = np.asarray(counts_q, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"popularity vectors differ in length: {x.size} and {y.size}")
    if x.size == 0:
        return 0.0
    p = (x + 1.0) / (x.sum() + x.size)
    q = (y + 1.0) / (y.sum() + y.size)
    return float(np.sum(p * np.log(p / q)))


def table3_row(
    *,
    pop_rec: np.ndarray,
    pop_search: np.ndarray,
    n_users: int,
    n_interactions: int,
    n_rec_items: int,
    n_search_items: int,
    n_queries: int,
    n_qrels: int,
) -> dict[str, Any]:
    """The Table 3 row.

    rec_items: catalogue items with any interaction; rec_users; rec_density = interactions / (users * items)
    over the kept full sequences; rec_gini = gini(pop_rec);
    search_items: items with any qrel; search_queries: queries of all splits; search_avg_rel = qrels /
    queries (all splits); search_gini = gini(pop_search);
    ks_sr = ks_distance(pop_search, pop_rec); kld_sr = KLD(S || R); kld_rs = KLD(R || S)."""
    denominator = n_users * n_rec_items
    return {
        "rec_items": int(n_rec_items),
        "rec_users": int(n_users),
        "rec_interactions": int(n_interactions),
        "rec_density": float(n_interactions / denominator) if denominator else 0.0,
        "rec_gini": gini(pop_rec),
        "search_items": int(n_search_items),
        "search_queries": int(n_queries),
        "search_qrels": int(n_qrels),
        "search_avg_rel": float(n_qrels / n_queries) if n_queries else 0.0,
        "search_gini": gini(pop_search),
        "ks_sr": ks_distance(pop_search, pop_rec),
        "kld_sr": kl_divergence(pop_search, pop_rec),
        "kld_rs": kl_divergence(pop_rec, pop_search),
    }


# What `data stats` prints, in Table 3's column order: (key, header, format).
TABLE3_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rec_items", "R # items", "{:,}"),
    ("rec_users", "R # users", "{:,}"),
    ("rec_density", "R density", "{:.5f}"),
    ("rec_gini", "R Gini", "{:.2f}"),
    ("search_items", "S # items", "{:,}"),
    ("search_queries", "S # queries", "{:,}"),
    ("search_avg_rel", "S avg rel/query", "{:.2f}"),
    ("search_gini", "S Gini", "{:.2f}"),
    ("ks_sr", "KSdist(S,R)", "{:.2f}"),
    ("kld_sr", "KLD(S||R)", "{:.2f}"),
    ("kld_rs", "KLD(R||S)", "{:.2f}"),
)


def stats_from_connection(con: Any, n_rec_items: int | None = None) -> dict[str, Any]:
    """table3_row over the canonical tables of a compiled dataset (an open DuckDB connection).
    `n_rec_items` may be passed by a caller that already knows it (saves a distinct count over the sequences)."""
    pops = con.sql("SELECT pop_rec, pop_search FROM items ORDER BY item_id").fetchnumpy()

    def scalar(sql: str) -> int:
        return int(con.execute(sql).fetchall()[0][0] or 0)

    return table3_row(
        pop_rec=pops["pop_rec"],
        pop_search=pops["pop_search"],
        n_users=scalar("SELECT count(*) FROM users"),
        n_interactions=scalar("SELECT count(*) FROM sequences"),
        n_rec_items=scalar("SELECT count(DISTINCT item_id) FROM sequences") if n_rec_items is None else n_rec_items,
        n_search_items=scalar("SELECT count(DISTINCT item_id) FROM qrels"),
        n_queries=scalar("SELECT count(*) FROM queries"),
        n_qrels=scalar("SELECT count(*) FROM qrels"),
    )
