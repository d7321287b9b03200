"""The simulated sources SIM1, SIM2, SIM3 (harness.data.sources.simulations; choices in docs/simulations.md)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest

from harness.data.sources import SOURCES
from harness.data.sources.base import SourceContext
from harness.data.sources.sim.common import Stream, kl_divergence, pair_percentage
from harness.data.sources.sim.sim1 import shuffled_popularity, zipf_popularity
from harness.data.sources.sim.vocabulary import TOPICS
from harness.data.sources.simulations import SIM1, SIM2, SIM3
from harness.errors import HarnessError

TABLES = ("raw_items", "raw_interactions", "raw_queries", "raw_qrels")
ORDER = {"raw_items": "item_key", "raw_interactions": "user_key, ts, seq", "raw_queries": "query_key",
         "raw_qrels": "query_key, item_key"}


def load(source, **params):
    """(tables as sorted row lists, SourceResult) of one source with string parameters, as a name gives them."""
    con = duckdb.connect()
    result = source.load(con, SourceContext(data_dir=Path("."), params={k: str(v) for k, v in params.items()}))
    tables = {t: con.execute(f"SELECT * FROM {t} ORDER BY {ORDER[t]}").fetchall() for t in TABLES}
    con.close()
    return tables, result


def histories(tables) -> dict[str, list[str]]:
    out = defaultdict(list)
    for user, item, _, _ in tables["raw_interactions"]:  # rows come ordered by user, ts, seq
        out[user].append(item)
    return dict(out)


def qrels(tables) -> dict[str, set[str]]:
    out = defaultdict(set)
    for q, item in tables["raw_qrels"]:
        out[q].add(item)
    return dict(out)


def search_part(tables):
    return tables["raw_queries"], tables["raw_qrels"]


SOURCES_UNDER_TEST = [SIM1, SIM2, SIM3]


# --- the Source contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST, ids=lambda s: s.name)
def test_registered_with_headline_k_10(source):
    assert SOURCES.load(source.name) is source
    assert source.headline_k == 10 and source.description


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST, ids=lambda s: s.name)
def test_tables_follow_the_contract(source):
    con = duckdb.connect()
    result = source.load(con, SourceContext(data_dir=Path("."), params={}))
    columns = {t: [(row[0], row[1]) for row in con.execute(f"DESCRIBE {t}").fetchall()] for t in TABLES}
    assert columns == {
        "raw_items": [("item_key", "VARCHAR"), ("title", "VARCHAR"), ("text", "VARCHAR"), ("cluster", "INTEGER")],
        "raw_interactions": [("user_key", "VARCHAR"), ("item_key", "VARCHAR"), ("ts", "BIGINT"), ("seq", "BIGINT")],
        "raw_queries": [("query_key", "VARCHAR"), ("text", "VARCHAR"), ("split", "VARCHAR")],
        "raw_qrels": [("query_key", "VARCHAR"), ("item_key", "VARCHAR")],
    }
    assert result.files == []
    # Every parameter is resolved, except one added later, which is left out at its default (fingerprints stay)
    assert set(result.params) == {p.name for p in source.params if not p.omitted_at_default}


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST, ids=lambda s: s.name)
def test_sizes_fit_the_paper_and_a_fast_training(source):
    tables, _ = load(source)
    items = {row[0] for row in tables["raw_items"]}
    assert len(items) < 100  # "< 100 entities" (paper footnote 10)
    lengths = [len(h) for h in histories(tables).values()]
    assert min(lengths) >= 5  # the compiler drops shorter users
    # Every item is reachable from both tasks, so the compiler's "items in both tasks" filter keeps all.
    assert {row[1] for row in tables["raw_interactions"]} == items
    assert {row[1] for row in tables["raw_qrels"]} == items
    # Comparable training sizes: rec instances (t - 4 per user: targets 3..t-2) vs search (query, item) pairs.
    rec_instances = sum(t - 4 for t in lengths)
    search_pairs = len(tables["raw_qrels"])
    assert rec_instances <= 3000 and search_pairs <= 3000
    assert 0.4 < rec_instances / search_pairs < 2.5


# --- determinism ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST, ids=lambda s: s.name)
def test_same_parameters_give_identical_tables_and_another_seed_does_not(source):
    first, result = load(source, sample=0.65)
    again, result_again = load(source, sample="0.65")
    assert first == again and result.notes == result_again.notes
    other, _ = load(source, sample=0.65, seed=1)
    assert other["raw_interactions"] != first["raw_interactions"]
    assert other["raw_qrels"] != first["raw_qrels"]


KNOWN_ROWS = {
    # Regression pins: a change here changes every compiled fingerprint of that simulation, so it must
    # be deliberate (and said in the commit). Rows: count, first, last of interactions and qrels.
    "sim1": (1602, ("u000", "i13", 0, 0), ("u199", "i34", 9, 9), 1000, ("q000", "i04"), ("q499", "i13")),
    "sim2": (2032, ("u000", "i18", 0, 0), ("u249", "i14", 7, 7), 1200, ("q000", "i04"), ("q199", "i24")),
    "sim3": (1055, ("u000", "i16", 0, 0), ("u149", "i07", 6, 6), 400, ("q00", "i12"), ("q49", "i64")),
}


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST, ids=lambda s: s.name)
def test_known_rows_of_the_default_dataset(source):
    tables, _ = load(source)
    inter, rels = tables["raw_interactions"], tables["raw_qrels"]
    assert (len(inter), inter[0], inter[-1], len(rels), rels[0], rels[-1]) == KNOWN_ROWS[source.name]


def test_stream_draws():
    stream = Stream(7, 1)
    assert sorted(stream.permutation(10).tolist()) == list(range(10))
    ints = stream.integers(3, 6, 3000)
    assert set(ints.tolist()) == {3, 4, 5}
    counts = np.bincount(stream.weighted(np.array([1.0, 0.0, 3.0]), 4000), minlength=3)
    assert counts[1] == 0 and 0.70 < counts[2] / 4000 < 0.80
    distinct = stream.weighted_distinct(np.array([5.0, 1.0, 1.0]), 3)
    assert sorted(distinct.tolist()) == [0, 1, 2]


# --- parameters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, params, fragments",
    [
        (SIM1, {"shuffle": "1.5"}, ["sim1", "shuffle", "'1.5'", "[0, 1]"]),
        (SIM1, {"shuffle": "nan"}, ["shuffle", "'nan'", "[0, 1]"]),
        (SIM2, {"q_match": "half"}, ["sim2", "q_match", "'half'", "[0, 1]"]),
        (SIM3, {"pairs_in_qrels": "-0.1"}, ["sim3", "pairs_in_qrels", "'-0.1'", "[0, 1]"]),
        (SIM1, {"sample": "0"}, ["sample", "'0'", "(0, 1]"]),
        (SIM2, {"sample": "1.01"}, ["sample", "'1.01'", "(0, 1]"]),
        (SIM3, {"seed": "-1"}, ["seed", "'-1'", "integer in [0, 4294967295]"]),
        (SIM1, {"seed": "1.5"}, ["seed", "'1.5'", "integer"]),
        (SIM2, {"shuffle": "0.5"}, ["sim2", "unknown parameter 'shuffle'", "q_match, sample, seed"]),
        (SIM3, {"q_match": "1", "zz": "1"}, ["'q_match', 'zz'", "pairs_in_qrels, sample, seed"]),
    ],
)
def test_bad_parameters_are_named_with_value_and_range(source, params, fragments):
    with pytest.raises(HarnessError) as caught:
        source.load(duckdb.connect(), SourceContext(data_dir=Path("."), params=params))
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_parameters_are_typed_with_defaults():
    assert SIM1.resolve({}) == {"seed": 0, "shuffle": 0.0, "sample": 1.0}
    assert SIM2.resolve({"q_match": "0.5", "sample": "0.65"}) == {"seed": 0, "q_match": 0.5, "sample": 0.65}
    resolved = SIM3.resolve({"seed": "3", "pairs_in_qrels": "1"})
    assert resolved == {"seed": 3, "pairs_in_qrels": 1.0, "sample": 1.0}
    assert isinstance(resolved["seed"], int) and isinstance(resolved["pairs_in_qrels"], float)


# --- SIM1 -------------------------------------------------------------------------------------------


def test_sim1_rec_data_is_the_same_at_every_shuffle_level():
    base, _ = load(SIM1)
    for level in (0.25, 0.5, 1.0):
        shuffled, _ = load(SIM1, shuffle=level)
        assert shuffled["raw_interactions"] == base["raw_interactions"]
        assert shuffled["raw_items"] == base["raw_items"]
    assert load(SIM1, shuffle=1.0)[0]["raw_qrels"] != base["raw_qrels"]


def test_sim1_shuffle_moves_a_growing_set_of_items_and_keeps_the_probabilities():
    p = zipf_popularity(50)
    moved_before: set[int] = set()
    for level in (0.0, 0.1, 0.3, 0.6, 1.0):
        shuffled, moved = shuffled_popularity(p, level, seed=4)
        changed = set(np.flatnonzero(shuffled != p).tolist())
        assert len(changed) == moved == (round(level * 50) if level >= 0.04 else 0)
        assert moved_before <= changed  # a higher level moves a superset of the items
        assert np.allclose(np.sort(shuffled), np.sort(p))  # a permutation of the same probabilities
        moved_before = changed


def test_sim1_kl_grows_with_shuffle_on_average():
    levels = (0.0, 0.25, 0.5, 0.75, 1.0)
    names = ("kl_search_rec", "kl_rec_search", "kl_search_rec_generating", "kl_rec_search_generating")
    mean = {n: [] for n in names}
    for level in levels:
        notes = [load(SIM1, shuffle=level, seed=seed)[1].notes for seed in range(4)]
        for n in names:
            mean[n].append(np.mean([note[n] for note in notes]))
    for n in names:
        assert all(a < b for a, b in zip(mean[n], mean[n][1:])), (n, mean[n])
    assert mean["kl_search_rec_generating"][0] == 0.0


def test_sim1_notes_kl_matches_the_tables():
    tables, result = load(SIM1, shuffle=0.5, seed=2)
    items = [row[0] for row in tables["raw_items"]]
    rec = np.array([sum(1 for r in tables["raw_interactions"] if r[1] == i) for i in items])
    search = np.array([sum(1 for r in tables["raw_qrels"] if r[1] == i) for i in items])
    assert result.notes["kl_search_rec"] == pytest.approx(kl_divergence(search, rec))
    assert result.notes["kl_rec_search"] == pytest.approx(kl_divergence(rec, search))


def test_kl_divergence_by_hand():
    # P = (3/4, 1/4), Q = (1/2, 1/2) once smoothed by the pseudo-count of 1.
    expected = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)
    assert kl_divergence(np.array([2, 0]), np.array([1, 1]), pseudo_count=1.0) == pytest.approx(expected)
    assert kl_divergence(np.array([5, 3]), np.array([5, 3])) == 0.0


# --- SIM2 -------------------------------------------------------------------------------------------


def query_sets(tables) -> dict[str, set[str]]:
    out = defaultdict(set)
    for q, item in tables["raw_qrels"]:
        out[item].add(q)
    return out


def clusters(tables) -> dict[str, int]:
    return {row[0]: row[3] for row in tables["raw_items"]}


def test_sim2_items_carry_five_clusters_of_six():
    tables, _ = load(SIM2)
    sizes = defaultdict(int)
    for cluster in clusters(tables).values():
        sizes[cluster] += 1
    assert sorted(sizes.items()) == [(c, 6) for c in range(5)]


def test_sim2_histories_are_pairs_from_one_cluster():
    tables, _ = load(SIM2)
    cluster = clusters(tables)
    for history in histories(tables).values():
        assert len(history) % 2 == 0
        for first, second in zip(history[::2], history[1::2]):
            assert first != second and cluster[first] == cluster[second]


def test_sim2_rec_data_is_the_same_at_every_q_match():
    base, _ = load(SIM2, q_match=0.0)
    for level in (0.25, 0.5, 1.0):
        other, _ = load(SIM2, q_match=level)
        assert other["raw_interactions"] == base["raw_interactions"]
        assert other["raw_items"] == base["raw_items"]
    assert load(SIM2, q_match=1.0)[0]["raw_qrels"] != base["raw_qrels"]


def mean_shared_queries(tables, same_cluster: bool) -> float:
    sets, cluster = query_sets(tables), clusters(tables)
    shared = [len(sets[a] & sets[b]) for a, b in itertools.combinations(sorted(cluster), 2)
              if (cluster[a] == cluster[b]) == same_cluster]
    return float(np.mean(shared))


def test_sim2_full_match_gives_identical_query_sets_within_clusters():
    tables, _ = load(SIM2, q_match=1.0)
    sets, cluster = query_sets(tables), clusters(tables)
    for a, b in itertools.combinations(sorted(cluster), 2):
        if cluster[a] == cluster[b]:
            assert sets[a] == sets[b] and len(sets[a]) == 40
        else:
            assert not sets[a] & sets[b]


def test_sim2_no_match_shares_queries_only_by_chance():
    for seed in (0, 1):
        tables, _ = load(SIM2, q_match=0.0, seed=seed)
        within, across = mean_shared_queries(tables, True), mean_shared_queries(tables, False)
        # Each item picks 40 of a 200-query pool: any two items share 40 * 40 / 200 = 8 on average.
        assert abs(within - 8) < 1.5 and abs(across - 8) < 1.0


def test_sim2_half_match_shares_half_the_queries_within_clusters():
    tables, result = load(SIM2, q_match=0.5)
    assert result.notes["shared_queries_per_cluster"] == 20
    within, across = mean_shared_queries(tables, True), mean_shared_queries(tables, False)
    # 20 shared cluster queries plus chance overlap of the 20 random ones (20 * 20 / 100 = 4).
    assert abs(within - 24) < 1.5 and abs(across - 4) < 1.0
    assert all(len(s) == 40 for s in query_sets(tables).values())


def test_sim2_sample_keeps_a_share_of_users_and_leaves_search_alone():
    full, _ = load(SIM2, q_match=0.5)
    part, result = load(SIM2, q_match=0.5, sample=0.65)
    assert search_part(part) == search_part(full)
    kept = histories(part)
    assert len(kept) == result.notes["users_kept"] == 163  # 0.65 * 250 = 162.5, halves round up
    assert all(full_h == kept[u] for u, full_h in histories(full).items() if u in kept)


# --- SIM3 -------------------------------------------------------------------------------------------


def test_pair_percentage_worked_example_from_the_paper():
    # §5 (iii): interactions {i1, i2, i3}, qrels (q, {i2, i3}): 1 of 3 pairs is relevant to one query.
    assert pair_percentage([["i1", "i2", "i3"]], {"q": ["i2", "i3"]}) == pytest.approx(1 / 3)


def test_pair_percentage_edge_cases():
    assert pair_percentage([["a", "b"], ["a", "c"]], {"q1": ["a", "b"], "q2": ["c"]}) == 0.5
    assert pair_percentage([["a", "a", "b"]], {"q": ["a", "b"]}) == 1.0  # a history is a set of items
    assert pair_percentage([["a"]], {"q": ["a"]}) == 0.0  # no pairs at all
    assert pair_percentage([["a", "b"]], {"q1": ["a"], "q2": ["b"]}) == 0.0


@pytest.mark.parametrize("share", [0.0, 0.25, 1 / 3, 0.5, 0.75, 1.0])
def test_sim3_achieved_pairs_in_qrels_is_the_requested_share(share):
    tables, result = load(SIM3, pairs_in_qrels=share)
    measured = pair_percentage(list(histories(tables).values()),
                               {q: sorted(items) for q, items in qrels(tables).items()})
    assert measured == pytest.approx(result.notes["pairs_in_qrels_achieved"])
    assert abs(measured - share) < 0.005


def test_sim3_search_data_is_the_same_at_every_pairs_in_qrels():
    base, _ = load(SIM3, pairs_in_qrels=0.0)
    for level in (0.25, 0.5, 1.0):
        other, _ = load(SIM3, pairs_in_qrels=level)
        assert search_part(other) == search_part(base) and other["raw_items"] == base["raw_items"]
    assert load(SIM3, pairs_in_qrels=1.0)[0]["raw_interactions"] != base["raw_interactions"]


def test_sim3_ten_topics_of_four_training_and_one_test_query():
    tables, _ = load(SIM3)
    topic = clusters(tables)
    rels = qrels(tables)
    by_topic = defaultdict(list)
    for q, _, split in tables["raw_queries"]:
        (t,) = {topic[i] for i in rels[q]}  # a query's relevant items are all of one topic
        by_topic[t].append((split, frozenset(rels[q])))
    assert sorted(by_topic) == list(range(10))
    for queries in by_topic.values():
        assert sorted(s for s, _ in queries) == ["test", "train", "train", "train", "train"]
        assert len({items for _, items in queries}) == 1 and len(queries[0][1]) == 8
    texts = [text for _, text, _ in tables["raw_queries"]]
    assert len(set(texts)) == 50


def test_sim3_text_comes_from_the_topic_vocabulary():
    words = [set(w) for _, w in TOPICS]
    assert all(not a & b for a, b in itertools.combinations(words, 2))  # no word is in two topics
    tables, _ = load(SIM3)
    rels = qrels(tables)
    topic = clusters(tables)
    for key, _, text, t in tables["raw_items"]:
        assert set(text.split()) <= words[t]
    for q, text, _ in tables["raw_queries"]:
        (t,) = {topic[i] for i in rels[q]}
        assert len(set(text.split()) & words[t]) == 3 and not set(text.split()) & set().union(
            *(w for k, w in enumerate(words) if k != t))


def test_sim3_sample_thins_training_pairs_only():
    full, _ = load(SIM3)
    part, result = load(SIM3, sample=0.65)
    assert part["raw_interactions"] == full["raw_interactions"]
    split = {q: s for q, _, s in full["raw_queries"]}
    full_rels, part_rels = qrels(full), qrels(part)
    for q in full_rels:
        if split[q] == "test":
            assert part_rels[q] == full_rels[q]
        else:
            assert part_rels.get(q, set()) <= full_rels[q]
    train_pairs = sum(len(part_rels.get(q, ())) for q in full_rels if split[q] == "train")
    assert train_pairs == result.notes["search_train_pairs_kept"] == round(0.65 * 320)
    trained_items = set().union(*(part_rels.get(q, set()) for q in full_rels if split[q] == "train"))
    assert len(trained_items) == 80  # every item keeps a training query


def test_sim3_more_test_queries_add_test_queries_and_change_nothing_else(tmp_path):
    from harness.data.compile import build_dataset
    from harness.data.store import CompiledDataset

    assert "test_queries" not in SIM3.resolve({})  # the paper's SIM3 keeps its parameters and fingerprint
    base, _ = load(SIM3, pairs_in_qrels=0.5)
    more, result = load(SIM3, pairs_in_qrels=0.5, test_queries=6)
    assert result.params["test_queries"] == 6
    for table in ("raw_items", "raw_interactions"):
        assert more[table] == base[table]
    base_queries = set(base["raw_queries"])
    assert base_queries <= set(more["raw_queries"]) and set(base["raw_qrels"]) <= set(more["raw_qrels"])
    extra = [row for row in more["raw_queries"] if row not in base_queries]
    assert len(extra) == 10 * 5 and {split for _, _, split in extra} == {"test"}
    assert all(key.startswith("t") for key, _, _ in extra)
    topic = clusters(more)
    texts_by_topic = defaultdict(set)
    rels = qrels(more)
    for q, text, _ in more["raw_queries"]:
        (t,) = {topic[i] for i in rels[q]}
        texts_by_topic[t].add(text)
    assert all(len(texts) == 5 + 5 for texts in texts_by_topic.values())  # distinct within each topic

    # Compiled: the training view (what every model learns from) is the same; the test set is six times larger.
    paths = [build_dataset(name, cache_dir=tmp_path) for name in ("sim3:pairs_in_qrels=0.5",
                                                                  "sim3:pairs_in_qrels=0.5,test_queries=6")]
    with CompiledDataset.open(paths[0]) as a, CompiledDataset.open(paths[1]) as b:
        assert a.fingerprint != b.fingerprint
        va, vb = a.train_view(), b.train_view()
        for part in ("query_id", "text"):
            assert list(getattr(va.search_train, part)) == list(getattr(vb.search_train, part))
        np.testing.assert_array_equal(va.search_train.pairs()[1], vb.search_train.pairs()[1])
        np.testing.assert_array_equal(va.rec_train.target, vb.rec_train.target)
        assert len(a.search_requests("test")) == 10 and len(b.search_requests("test")) == 60


def test_sim1_sample_keeps_a_share_of_users_and_leaves_search_alone():
    full, _ = load(SIM1, shuffle=0.5)
    part, result = load(SIM1, shuffle=0.5, sample=0.65)
    assert search_part(part) == search_part(full)
    assert len(histories(part)) == result.notes["users_kept"] == 130


# --- compiled end to end ----------------------------------------------------------------------------


COMPILED = [
    (SIM1, "sim1:shuffle=0.5", {"train": 400, "valid": 50, "test": 50}),
    (SIM2, "sim2:q_match=0.5,sample=0.65", {"train": 160, "valid": 20, "test": 20}),
    (SIM3, "sim3:pairs_in_qrels=0.5", {"train": 40, "valid": 0, "test": 10}),
]


@pytest.mark.parametrize("source, name, queries_by_split", COMPILED, ids=[name for _, name, _ in COMPILED])
def test_each_simulation_compiles(source, name, queries_by_split, tmp_path):
    # Skips only while harness.data.compile / store (helper data-core) are not in the tree.
    compile_module = pytest.importorskip("harness.data.compile")
    store = pytest.importorskip("harness.data.store")
    path = compile_module.build_dataset(name, cache_dir=tmp_path, allow_download=False)
    raw, result = load(source, **dict(p.split("=") for p in name.partition(":")[2].split(",")))
    with store.CompiledDataset.open(path) as ds:
        assert ds.headline_k == 10
        counts = ds.manifest["counts"]
        assert counts["items"] == len(raw["raw_items"])  # no item lost to the both-tasks filter
        assert counts["users"] == len(histories(raw))
        assert counts["queries_by_split"] == queries_by_split
        assert counts["rec_examples"]["train"] > 0 and counts["rec_examples"]["test"] > 0
        assert ds.manifest["params"] == result.params and ds.manifest["notes"] == result.notes
        view = ds.train_view()
        assert len(view.rec_train) > 0 and len(view.search_train.query_id) > 0
        clusters_seen = view.catalogue.cluster
        assert (clusters_seen is None) == (source is SIM1)


def test_notes_kl_uses_the_compilers_smoothing():
    stats = pytest.importorskip("harness.data.stats")  # helper data-core's Table 3 statistics
    rec, search = np.array([10, 3, 0, 1]), np.array([2, 2, 5, 0])
    assert kl_divergence(rec, search) == pytest.approx(stats.kl_divergence(rec, search))
    assert kl_divergence(search, rec) == pytest.approx(stats.kl_divergence(search, rec))
