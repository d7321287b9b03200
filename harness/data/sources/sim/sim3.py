"""SIM3 (paper §5 (iii), §6.3, Table 4): H2 in the R->S direction, % of pairs in qrels.

Ten topics of eight items. Each topic has five queries written from its vocabulary (vocabulary.py); one
is the test query and four are training queries, and all five have the topic's eight items as relevant.
`test_queries = N` (default 1, the paper's) gives each topic N - 1 more test queries written the same way from
a stream of their own, so the training data, and every model trained on it, is the same at every N: only the
test set grows (ten test queries cannot show a difference of 0.1; docs/experiments.md, "Power").
Recommendation histories are built so that a share `pairs_in_qrels` of the item pairs co-occurring in
them are pairs relevant to one same query (pair_percentage in common.py); the search data never changes
with `pairs_in_qrels`.
"""

from __future__ import annotations

import functools
from math import comb
from typing import Any, Mapping

from harness.data.sources.sim.common import (
    SAMPLE, SEED, STREAM_EXTRA_TEST, STREAM_LAYOUT, STREAM_REC, STREAM_SAMPLE, STREAM_SEARCH, Generated, Param,
    RawTables,
    SimulationSource, Stream, interactions_from_histories, key, pair_percentage, qrels_columns,
    rounded_count,
)
from harness.data.sources.sim.vocabulary import TEMPLATES, TOPICS, WORDS_PER_ITEM, WORDS_PER_QUERY

N_TOPICS = len(TOPICS)  # 10, as in the paper
ITEMS_PER_TOPIC = 8
N_ITEMS = N_TOPICS * ITEMS_PER_TOPIC
QUERIES_PER_TOPIC = 5  # the paper: one test query and four training queries per topic
N_USERS = 150
MIN_LENGTH, MAX_LENGTH = 6, 8  # interactions per user, uniform; distinct items, at most one topic's size

PAIRS_IN_QRELS = Param("pairs_in_qrels", float, 1.0, 0.0, 1.0,
                       help="share of co-occurring item pairs in user histories that share a relevant query")
TEST_QUERIES = Param("test_queries", int, 1, 1, 50, omitted_at_default=True,
                     help="test queries per topic (1: the paper's); the extra ones change nothing else")


def topic_layout(seed: int) -> list[int]:
    """topic[item]: items are dealt to topics at random, so an item's key says nothing of its topic."""
    order = Stream(seed, STREAM_LAYOUT).permutation(N_ITEMS)
    topic = [0] * N_ITEMS
    for slot, item in enumerate(order.tolist()):
        topic[item] = slot // ITEMS_PER_TOPIC
    return topic


# --- search -----------------------------------------------------------------------------------------


def query_texts(stream: Stream, per_topic: int = QUERIES_PER_TOPIC,
                taken: list[list[str]] | None = None) -> list[list[str]]:
    """`per_topic` distinct texts per topic (none of them in `taken[topic]`): a template filled with distinct
    topic words."""
    texts = []
    for t, (_, words) in enumerate(TOPICS):
        topic_texts: list[str] = []
        while len(topic_texts) < per_topic:
            chosen = [words[i] for i in stream.permutation(len(words))[:WORDS_PER_QUERY]]
            text = TEMPLATES[stream.integer(0, len(TEMPLATES))].format(*chosen)
            if text not in topic_texts and (taken is None or text not in taken[t]):
                topic_texts.append(text)
        texts.append(topic_texts)
    return texts


def search_data(topic: list[int], item_keys: list[str], seed: int, test_queries: int = 1):
    """(queries: key -> (text, split), qrels: key -> relevant items, item texts). Query 0 of a topic is
    its test query, the other four train; query keys are dealt at random over all topics. The extra test
    queries (test_queries > 1) come last, from their own stream, with keys `t...` that sort after every `q...`
    key, so the queries above keep their texts, keys and compiled ids."""
    stream = Stream(seed, STREAM_SEARCH)
    texts = query_texts(stream)
    names = stream.permutation(N_TOPICS * QUERIES_PER_TOPIC)
    queries, qrels = {}, {}
    for t in range(N_TOPICS):
        relevant = [item_keys[i] for i in range(N_ITEMS) if topic[i] == t]
        for j, text in enumerate(texts[t]):
            q = key("q", int(names[t * QUERIES_PER_TOPIC + j]), N_TOPICS * QUERIES_PER_TOPIC)
            queries[q] = (text, "test" if j == 0 else "train")
            qrels[q] = relevant
    item_texts = []
    for i in range(N_ITEMS):
        words = TOPICS[topic[i]][1]
        item_texts.append(" ".join(words[w] for w in stream.permutation(len(words))[:WORDS_PER_ITEM]))
    if test_queries > 1:
        extra = Stream(seed, STREAM_EXTRA_TEST)
        more = query_texts(extra, test_queries - 1, taken=texts)
        total = N_TOPICS * (test_queries - 1)
        names = extra.permutation(total)
        for t in range(N_TOPICS):
            relevant = [item_keys[i] for i in range(N_ITEMS) if topic[i] == t]
            for j, text in enumerate(more[t]):
                q = key("t", int(names[t * (test_queries - 1) + j]), total)
                queries[q] = (text, "test")
                qrels[q] = relevant
    return dict(sorted(queries.items())), dict(sorted(qrels.items())), item_texts


def sample_training_qrels(queries, qrels, fraction: float, seed: int):
    """Keep round(fraction * training pairs) training (query, item) pairs, at least one per item so no
    item leaves search training; test queries keep all their relevant items."""
    if fraction >= 1.0:
        return qrels
    train = [(q, item) for q, items in qrels.items() if queries[q][1] == "train" for item in items]
    stream = Stream(seed, STREAM_SAMPLE)
    order = [train[i] for i in stream.permutation(len(train))]
    target = rounded_count(fraction, len(train))
    kept, covered = set(), set()
    for pair in order:  # the first pair of each item in a random order: one random pair per item
        if pair[1] not in covered:
            covered.add(pair[1])
            kept.add(pair)
    for pair in order:
        if len(kept) >= target:
            break
        kept.add(pair)
    return {q: [i for i in items if queries[q][1] != "train" or (q, i) in kept] for q, items in qrels.items()}


# --- recommendation ---------------------------------------------------------------------------------


@functools.cache
def partitions(length: int) -> tuple[tuple[int, ...], ...]:
    """Ways to split a history of `length` distinct items into topic blocks (one block per topic):
    block sizes of at most ITEMS_PER_TOPIC, at most N_TOPICS blocks, largest first."""

    def split(n: int, largest: int) -> list[tuple[int, ...]]:
        if n == 0:
            return [()]
        return [(first, *rest) for first in range(min(n, largest), 0, -1) for rest in split(n - first, first)]

    return tuple(p for p in split(length, ITEMS_PER_TOPIC) if len(p) <= N_TOPICS)


def same_topic_pairs(blocks: tuple[int, ...]) -> int:
    return sum(comb(n, 2) for n in blocks)


def rec_histories(topic: list[int], item_keys: list[str], share: float, seed: int) -> dict[str, list[str]]:
    """Histories whose same-topic pairs come to `share` of all pairs, to within a pair or two overall.

    Each user draws a length, then the block structure whose same-topic pair count is closest to what
    the users so far still owe (error diffusion: the rounding left by one user is carried to the next);
    blocks get distinct random topics and distinct random items of them, and the history is shuffled.
    """
    members = [[i for i in range(N_ITEMS) if topic[i] == t] for t in range(N_TOPICS)]
    stream = Stream(seed, STREAM_REC)
    histories, owed = {}, 0.0
    for u, length in enumerate(stream.integers(MIN_LENGTH, MAX_LENGTH + 1, N_USERS).tolist()):
        wanted = share * comb(length, 2) + owed
        options = partitions(length)
        best = min({same_topic_pairs(p) for p in options}, key=lambda s: (abs(s - wanted), s))
        owed = wanted - best
        fitting = [p for p in options if same_topic_pairs(p) == best]
        blocks = fitting[stream.integer(0, len(fitting))]
        topics = stream.permutation(N_TOPICS)[: len(blocks)]
        history = []
        for size, t in zip(blocks, topics.tolist()):
            history += [members[t][j] for j in stream.permutation(ITEMS_PER_TOPIC)[:size]]
        history = [history[j] for j in stream.permutation(length)]
        histories[key("u", u, N_USERS)] = [item_keys[i] for i in history]
    return histories


class Sim3(SimulationSource):
    name = "sim3"
    description = "SIM3 (H2, R->S): ten topical query groups; `pairs_in_qrels` of rec co-occurrences share a query"
    params = (SEED, PAIRS_IN_QRELS, SAMPLE, TEST_QUERIES)

    def generate(self, params: Mapping[str, Any]) -> Generated:
        seed = params["seed"]
        item_keys = [key("i", i, N_ITEMS) for i in range(N_ITEMS)]
        topic = topic_layout(seed)
        queries, all_qrels, item_texts = search_data(topic, item_keys, seed, params.get("test_queries", 1))
        qrels = sample_training_qrels(queries, all_qrels, params["sample"], seed)
        histories = rec_histories(topic, item_keys, params["pairs_in_qrels"], seed)
        train_pairs = sum(len(items) for q, items in qrels.items() if queries[q][1] == "train")
        notes = {
            # measured against the full topic relevance lists, which every query of a topic shares
            "pairs_in_qrels_achieved": pair_percentage(list(histories.values()), all_qrels),
            "search_train_pairs_kept": train_pairs,
            "search_train_pairs_generated": sum(len(all_qrels[q]) for q in queries if queries[q][1] == "train"),
            "query_text": "template + words of a fixed per-topic vocabulary (not GPT-4 paraphrases of TREC-DL22)",
        }
        tables = RawTables(
            items={"item_key": item_keys, "title": [f"document {k}" for k in item_keys], "text": item_texts,
                   "cluster": topic},
            interactions=interactions_from_histories(histories),
            queries={"query_key": list(queries), "text": [t for t, _ in queries.values()],
                     "split": [s for _, s in queries.values()]},
            qrels=qrels_columns(qrels),
        )
        return Generated(tables, notes)


SIM3 = Sim3()
