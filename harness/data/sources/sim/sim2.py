"""SIM2 (paper §5 (ii), §6.2, Table 4, Figure 3): H2 in the S->R direction, % of query match.

Five clusters of six items. A user's history is pairs (a random item, then another item of its cluster)
until the user's length is reached, so within-cluster co-occurrence is what recommendation can learn.
Every item has QUERIES_PER_ITEM queries leading to it; a share `q_match` of them are the cluster's
queries, shared by all six items of the cluster, and the rest are drawn at random from a pool of
queries that ignores clusters. The recommendation data never changes with `q_match`.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.data.sources.sim.common import (
    SAMPLE, SEED, STREAM_LAYOUT, STREAM_REC, STREAM_SEARCH, Generated, Param, RawTables, SimulationSource,
    Stream, interactions_from_histories, key, qrels_columns, rounded_count, sample_users,
)

N_CLUSTERS = 5
ITEMS_PER_CLUSTER = 6
N_ITEMS = N_CLUSTERS * ITEMS_PER_CLUSTER
N_USERS = 250
MIN_PAIRS, MAX_PAIRS = 3, 5  # pairs per user, uniform: 6 to 10 interactions, always an even number
QUERIES_PER_ITEM = 40  # 30 items x 40 = 1200 (query, item) pairs, about as many as rec's instances

Q_MATCH = Param("q_match", float, 1.0, 0.0, 1.0,
                help="share of each item's queries that are its cluster's shared queries")


def cluster_layout(seed: int) -> list[int]:
    """cluster[item]: items are dealt to clusters at random, so an item's key says nothing of its cluster."""
    order = Stream(seed, STREAM_LAYOUT).permutation(N_ITEMS)
    cluster = [0] * N_ITEMS
    for slot, item in enumerate(order.tolist()):
        cluster[item] = slot // ITEMS_PER_CLUSTER
    return cluster


def rec_histories(cluster: list[int], item_keys: list[str], seed: int) -> dict[str, list[str]]:
    """Pairs (a uniform random item, then a uniform other item of the same cluster) until the length."""
    members = [[i for i in range(N_ITEMS) if cluster[i] == c] for c in range(N_CLUSTERS)]
    stream = Stream(seed, STREAM_REC)
    histories = {}
    for u, n_pairs in enumerate(stream.integers(MIN_PAIRS, MAX_PAIRS + 1, N_USERS).tolist()):
        history = []
        for _ in range(n_pairs):
            first = stream.integer(0, N_ITEMS)
            mates = [i for i in members[cluster[first]] if i != first]
            history += [item_keys[first], item_keys[mates[stream.integer(0, len(mates))]]]
        histories[key("u", u, N_USERS)] = history
    return histories


def search_qrels(cluster: list[int], item_keys: list[str], q_match: float, seed: int) -> dict[str, list[str]]:
    """Queries and their relevant items.

    shared = round(q_match * QUERIES_PER_ITEM) queries per cluster, each relevant to all its items; each
    item also picks QUERIES_PER_ITEM - shared distinct queries from a random pool of
    N_CLUSTERS * (QUERIES_PER_ITEM - shared) queries, so a random query also has six relevant items on
    average and the number of queries stays 200 whatever q_match is. Random queries that no item picked
    are left out. Query keys are dealt at random, so a key says nothing of the query's kind.
    """
    stream = Stream(seed, STREAM_SEARCH)
    shared = rounded_count(q_match, QUERIES_PER_ITEM)
    random_per_item = QUERIES_PER_ITEM - shared
    pool = N_CLUSTERS * random_per_item
    relevant: list[list[int]] = []  # by query number: cluster queries first, then the random pool
    for c in range(N_CLUSTERS):
        relevant += [[i for i in range(N_ITEMS) if cluster[i] == c] for _ in range(shared)]
    pool_relevant: list[list[int]] = [[] for _ in range(pool)]
    for item in range(N_ITEMS):
        for q in stream.permutation(pool)[:random_per_item].tolist():
            pool_relevant[q].append(item)
    relevant += pool_relevant
    names = stream.permutation(len(relevant))
    total = len(relevant)
    qrels = {key("q", int(names[q]), total): [item_keys[i] for i in items]
             for q, items in enumerate(relevant) if items}
    return dict(sorted(qrels.items()))


class Sim2(SimulationSource):
    name = "sim2"
    description = "SIM2 (H2, S->R): five clusters of six items; `q_match` of each item's queries shared in its cluster"
    params = (SEED, Q_MATCH, SAMPLE)

    def generate(self, params: Mapping[str, Any]) -> Generated:
        seed = params["seed"]
        item_keys = [key("i", i, N_ITEMS) for i in range(N_ITEMS)]
        cluster = cluster_layout(seed)
        all_histories = rec_histories(cluster, item_keys, seed)
        histories = sample_users(all_histories, params["sample"], seed)
        qrels = search_qrels(cluster, item_keys, params["q_match"], seed)
        shared = rounded_count(params["q_match"], QUERIES_PER_ITEM)
        notes = {
            "shared_queries_per_cluster": shared,
            "q_match_achieved": shared / QUERIES_PER_ITEM,
            "queries": len(qrels),
            "users_kept": len(histories),
            "users_generated": len(all_histories),
        }
        tables = RawTables(
            items={"item_key": item_keys, "title": [f"item {k}" for k in item_keys],
                   "text": [f"item {k}" for k in item_keys], "cluster": cluster},
            interactions=interactions_from_histories(histories),
            queries={"query_key": list(qrels), "text": [f"query {q}" for q in qrels],
                     "split": [None] * len(qrels)},
            qrels=qrels_columns(qrels),
        )
        return Generated(tables, notes)


SIM2 = Sim2()
