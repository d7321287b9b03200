"""SIM1 (paper §5 (i), §6.1, Figure 2): H1, item popularity.

Items get a Zipf popularity; recommendation histories are independent draws from it, so popularity is
the only learnable signal. Search queries have relevant items drawn from the same distribution after a
share `shuffle` of the items have swapped their probabilities; the recommendation data never changes with
`shuffle`. The achieved KL divergence between the two tasks' popularity (Figure 2's x axis) is recorded
in the notes.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from harness.data.sources.sim.common import (
    SAMPLE, SEED, STREAM_LAYOUT, STREAM_REC, STREAM_SEARCH, STREAM_SHUFFLE, Generated, Param, RawTables,
    SimulationSource, Stream, interactions_from_histories, key, kl_divergence, qrels_columns,
    rounded_count, sample_users,
)

N_ITEMS = 50  # "< 100 entities" (paper footnote 10)
ZIPF_EXPONENT = 1.0
N_USERS = 200
MIN_LENGTH, MAX_LENGTH = 6, 10  # interactions per user, uniform; the compiler needs >= 5
N_QUERIES = 500
RELEVANT_PER_QUERY = 2

SHUFFLE = Param("shuffle", float, 0.0, 0.0, 1.0,
                help="share of items whose search probability is permuted (0: same as rec, 1: all moved)")


def zipf_popularity(n_items: int, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """P(rank r) proportional to 1 / r^exponent, ranks 1..n (index 0 is the most popular)."""
    weights = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def shuffled_popularity(popularity: np.ndarray, shuffle: float, seed: int) -> tuple[np.ndarray, int]:
    """Move round(shuffle * n) items' probabilities one step round a random cycle among them.

    The items to move are a prefix of one random order of the seed, so a higher `shuffle` moves a
    superset of the items a lower one moves; the cycle makes every chosen item change its probability
    (a plain permutation could leave some in place). shuffle = 1 permutes all items. Returns the new
    distribution and how many items moved.
    """
    n = len(popularity)
    moved = rounded_count(shuffle, n)
    if moved < 2:  # one item cannot swap with itself
        return popularity.copy(), 0
    chosen = Stream(seed, STREAM_SHUFFLE).permutation(n)[:moved]
    shuffled = popularity.copy()
    shuffled[chosen] = popularity[np.roll(chosen, -1)]
    return shuffled, moved


def rec_histories(popularity_of_item: np.ndarray, item_keys: list[str], seed: int) -> dict[str, list[str]]:
    """Each user's interactions are independent draws from the rec popularity (repeats allowed)."""
    stream = Stream(seed, STREAM_REC)
    lengths = stream.integers(MIN_LENGTH, MAX_LENGTH + 1, N_USERS)
    drawn = stream.weighted(popularity_of_item, int(lengths.sum()))
    histories, start = {}, 0
    for u, length in enumerate(lengths.tolist()):
        histories[key("u", u, N_USERS)] = [item_keys[i] for i in drawn[start : start + length]]
        start += length
    return histories


def search_qrels(search_popularity: np.ndarray, item_keys: list[str], seed: int) -> dict[str, list[str]]:
    """Each query gets RELEVANT_PER_QUERY distinct items drawn from the search popularity."""
    stream = Stream(seed, STREAM_SEARCH)
    return {
        key("q", q, N_QUERIES): [item_keys[i] for i in stream.weighted_distinct(search_popularity,
                                                                                RELEVANT_PER_QUERY)]
        for q in range(N_QUERIES)
    }


def popularity_counts(item_keys: list[str], rows: list[list[str]]) -> np.ndarray:
    index = {k: i for i, k in enumerate(item_keys)}
    counts = np.zeros(len(item_keys), dtype=np.int64)
    for row in rows:
        for item in row:
            counts[index[item]] += 1
    return counts


class Sim1(SimulationSource):
    name = "sim1"
    description = "SIM1 (H1): Zipf item popularity; search popularity shuffled by `shuffle`"
    params = (SEED, SHUFFLE, SAMPLE)

    def generate(self, params: Mapping[str, Any]) -> Generated:
        seed = params["seed"]
        item_keys = [key("i", i, N_ITEMS) for i in range(N_ITEMS)]
        # Which item gets which popularity rank is random, so an item's key says nothing about it.
        rank_of_item = Stream(seed, STREAM_LAYOUT).permutation(N_ITEMS)
        p_rec = zipf_popularity(N_ITEMS)[rank_of_item]
        p_search, moved = shuffled_popularity(p_rec, params["shuffle"], seed)

        all_histories = rec_histories(p_rec, item_keys, seed)
        histories = sample_users(all_histories, params["sample"], seed)
        qrels = search_qrels(p_search, item_keys, seed)

        rec_counts = popularity_counts(item_keys, list(histories.values()))
        search_counts = popularity_counts(item_keys, list(qrels.values()))
        notes = {
            "items_moved": moved,
            "kl_search_rec": kl_divergence(search_counts, rec_counts),
            "kl_rec_search": kl_divergence(rec_counts, search_counts),
            "kl_search_rec_generating": float(np.sum(p_search * np.log(p_search / p_rec))),
            "kl_rec_search_generating": float(np.sum(p_rec * np.log(p_rec / p_search))),
            "kl_pseudo_count": 1.0,
            "users_kept": len(histories),
            "users_generated": len(all_histories),
        }
        tables = RawTables(
            items={"item_key": item_keys, "title": [f"item {k}" for k in item_keys],
                   "text": [f"item {k}" for k in item_keys], "cluster": [None] * N_ITEMS},
            interactions=interactions_from_histories(histories),
            queries={"query_key": list(qrels), "text": [f"query {q}" for q in qrels],
                     "split": [None] * len(qrels)},
            qrels=qrels_columns(qrels),
        )
        return Generated(tables, notes)


SIM1 = Sim1()
