"""Semantic item IDs: RQ-k-means codes, the disambiguation level, the vocabulary and trie round trip, the cache,
and the generative adapter trained and decoding with them (every returned item is a catalogue item)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.generative import semantic_ids
from harness.generative.semantic_ids import (SemanticCodes, add_semantic_tokens, build_semantic_codes, rq_kmeans,
                                             _disambiguation)
from test_t5_adapter import _adapter
from test_t5_toy import toy_view


def _vectors(n=40, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_rq_kmeans_gives_every_item_a_unique_id_of_levels_plus_one_codes():
    codes = rq_kmeans(_vectors(), levels=2, codes=4, seed=0)
    assert codes.codes.shape == (40, 3) and codes.codes.dtype == np.int64
    assert len(np.unique(codes.codes, axis=0)) == 40
    assert codes.codes[:, :2].max() < 4 and codes.codes.min() >= 0
    stats = codes.stats(4)
    assert stats["levels"] == 2 and stats["tokens_per_id"] == 3
    assert 0 <= stats["collision_rate"] <= 1 and stats["largest_collision_group"] == codes.level_sizes()[2]


def test_rq_kmeans_is_deterministic_and_follows_the_seed():
    x = _vectors(200, 8)
    a = rq_kmeans(x, levels=2, codes=8, seed=0).codes
    np.testing.assert_array_equal(a, rq_kmeans(x, levels=2, codes=8, seed=0).codes)
    assert not np.array_equal(a, rq_kmeans(x, levels=2, codes=8, seed=1).codes)


def test_first_level_separates_well_separated_clusters():
    rng = np.random.default_rng(1)
    centres = np.eye(4) * 10
    x = np.concatenate([c + rng.normal(scale=0.1, size=(10, 4)) for c in centres])
    codes = rq_kmeans(x, levels=2, codes=4, seed=0).codes
    for block in range(4):
        assert len(set(codes[block * 10:(block + 1) * 10, 0])) == 1  # one cluster, one first code
    assert len(set(codes[::10, 0])) == 4
    assert codes[0, 0] == 0  # codes numbered by their first item


def test_duplicate_vectors_are_told_apart_by_the_disambiguation_level():
    x = np.repeat(_vectors(5, 3), 3, axis=0)  # every vector three times
    codes = rq_kmeans(x, levels=2, codes=4, seed=0)
    assert len(np.unique(codes.codes, axis=0)) == 15
    assert sorted(codes.codes[:3, 2]) == [0, 1, 2]
    assert codes.stats(4)["collision_rate"] == 1.0


def test_disambiguation_counts_within_groups_in_item_order():
    prefix = np.array([[0, 1], [1, 0], [0, 1], [0, 1], [1, 0], [2, 2]])
    assert _disambiguation(prefix).tolist() == [0, 0, 1, 2, 1, 0]


def test_bad_vectors_are_refused():
    with pytest.raises(HarnessError, match="finite"):
        rq_kmeans(np.array([[np.nan, 1.0]]), levels=1, codes=2, seed=0)


def test_vocabulary_and_trie_round_trip_every_id():
    from harness.generative.decoding import PrefixTrie
    from harness.generative.tokenizer import train_offline_tokenizer

    codes = rq_kmeans(_vectors(30), levels=2, codes=4, seed=0)
    tokenizer = train_offline_tokenizer(["some text for the tokenizer"], 60)
    vocab = add_semantic_tokens(tokenizer, codes)
    assert vocab.n_tokens == sum(codes.level_sizes()) and vocab.id_length == 3
    sequences = vocab.all_sequences()
    assert len({tuple(s) for s in sequences}) == 30
    # the text form of an ID tokenises to exactly its token ids (no EOS when asked for none)
    for item in (0, 7, 29):
        assert tokenizer(vocab.item_text(item), add_special_tokens=False)["input_ids"] == sequences[item]
    np.testing.assert_array_equal(vocab.items_of_sequences(np.array(sequences)), np.arange(30))
    assert vocab.items_of_sequences(np.array([[0, 0, 0]])).tolist() == [-1]
    trie = PrefixTrie(sequences, tokenizer.eos_token_id)
    for item, seq in enumerate(sequences):  # every ID is a path of the trie that ends in EOS and nothing else
        for depth in range(len(seq)):
            assert seq[depth] in trie.allowed(seq[:depth])
        assert trie.allowed(seq) == [tokenizer.eos_token_id]
    first_level = {s[0] for s in sequences}
    assert trie.allowed([]) == sorted(first_level)


def _fake_vectors(monkeypatch, calls):
    from harness.generative import item_vectors

    def fake(source, train, *, settings=None, seed=0, cache_root=None, log=None):
        calls.append(source)
        return np.random.default_rng(seed).normal(size=(len(train.catalogue), 5)).astype(np.float32), {"source": source}

    monkeypatch.setattr(item_vectors, "item_vectors", fake)


def test_codes_are_cached_per_fingerprint_and_settings(tmp_path, monkeypatch):
    calls = []
    _fake_vectors(monkeypatch, calls)
    view = toy_view()
    settings = {"source": "content", "levels": 2, "codes": 3}
    a, info_a = build_semantic_codes(view, settings, where="w", cache_root=tmp_path)
    b, info_b = build_semantic_codes(view, settings, where="w", cache_root=tmp_path)
    assert calls == ["content"] and not info_a["cache_hit"] and info_b["cache_hit"]
    np.testing.assert_array_equal(a.codes, b.codes)
    assert info_a["codes_sha256"] == info_b["codes_sha256"]
    build_semantic_codes(view, {**settings, "codes": 4}, where="w", cache_root=tmp_path)
    assert calls == ["content", "content"]  # other settings: other IDs
    # a cache file that is not this catalogue's IDs is rebuilt, not trusted
    (cached,) = [p for p in tmp_path.rglob("*.npy") if json.loads(p.with_suffix(".json").read_text())["codes"] == 3]
    np.save(cached, np.zeros((len(view.catalogue), 3), dtype=np.int64))
    c, info_c = build_semantic_codes(view, settings, where="w", cache_root=tmp_path)
    assert not info_c["cache_hit"] and len(np.unique(c.codes, axis=0)) == len(view.catalogue)


@pytest.mark.parametrize("settings, message", [
    ({"source": "nope"}, "source = 'nope'"),
    ({"levels": 0}, "levels = 0"),
    ({"codes": 1}, "codes = 1"),
    ({"seed": -1}, "seed = -1"),
])
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(HarnessError, match=message):
        semantic_ids.check_settings(settings, "cfg: params.semantic_ids")


def test_params_refuse_semantic_settings_under_atomic_ids(tmp_path):
    with pytest.raises(HarnessError, match="item_ids"):
        _adapter(tmp_path, item_ids="numeric")
    with pytest.raises(HarnessError, match="semantic_ids"):
        _adapter(tmp_path, semantic_ids={"levels": 2})


def test_adapter_trains_and_decodes_catalogue_items_with_semantic_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    _fake_vectors(monkeypatch, calls)
    view = toy_view()
    adapter = _adapter(tmp_path, item_ids="semantic", semantic_ids={"source": "content", "levels": 2, "codes": 3})
    adapter.fit(view)
    vocab = adapter.backbone.items
    assert vocab.id_length == 3
    data, _ = adapter._training_data(view)
    assert data.targets.shape[1] == 4  # three ID tokens, then EOS
    for task, requests in (("rec", view.rec_valid.without_targets()), ("search", view.search_valid.without_relevance())):
        ranked = adapter.retrieve(task, requests, 4)
        assert ranked.shape == (len(requests), 4)
        for row in ranked:
            valid = row[row >= 0]
            assert len(valid) >= 1 and len(set(valid.tolist())) == len(valid)
            assert valid.max() < len(view.catalogue)
    described = adapter.describe()
    assert described["params"]["item_ids"] == "semantic"
    assert described["item_ids"]["scheme"] == "semantic" and described["item_ids"]["tokens_per_id"] == 3
    emb = adapter.item_embeddings()
    assert emb.shape == (len(view.catalogue), adapter.backbone.model.config.d_model)
    # the setup hash, which keys checkpoints, tells semantic from atomic training
    atomic = _adapter(tmp_path, workdir="atomic")
    atomic.fit(view)
    assert atomic._setup_hash() != adapter._setup_hash()
    assert atomic.describe()["item_ids"].startswith("atomic")


def test_the_shipped_semantic_trio_is_the_atomic_trio_with_semantic_ids():
    from pathlib import Path

    from harness.generative.params import T5Params
    from harness.protocol.submission import load_submission

    repo = Path(__file__).resolve().parents[1]
    subs = {n: load_submission(repo / "submissions" / f"{n}_t5_semantic") for n in ("rec", "search", "joint")}
    assert subs["joint"].references == {"rec": "rec_t5_semantic", "search": "search_t5_semantic"}
    for name, sub in subs.items():
        atomic = load_submission(repo / "submissions" / f"{name}_t5")
        assert sub.tasks == atomic.tasks and sub.params == subs["joint"].params  # the three name items alike
        params = T5Params.parse(sub.params, name)  # checks the semantic settings too
        assert params.item_ids == "semantic" and params.for_dataset("ml-small").semantic_ids["codes"] == 32
        strip = lambda p: {k: ({d: {x: y for x, y in t.items() if x != "semantic_ids"} for d, t in v.items()}
                               if k == "by_dataset" else v) for k, v in p.items() if k not in ("item_ids", "semantic_ids")}
        assert strip(sub.params) == atomic.params  # everything else as the atomic trio


def test_a_checkpoint_trained_on_other_codes_is_not_resumed(tmp_path, monkeypatch):
    """Same settings, other vectors (e.g. a changed vector source): other codes, so another setup hash."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    _fake_vectors(monkeypatch, calls)
    view = toy_view()
    settings = {"item_ids": "semantic", "semantic_ids": {"source": "content", "levels": 2, "codes": 3}}
    first = _adapter(tmp_path, **settings)
    first._semantic_codes(view)
    other_view = toy_view(fingerprint="sha256:toy")  # same data; the cache is emptied below to force new vectors
    import shutil

    shutil.rmtree(tmp_path / "cache")
    from harness.generative import item_vectors

    monkeypatch.setattr(item_vectors, "item_vectors", lambda source, train, **kw: (
        np.random.default_rng(99).normal(size=(len(train.catalogue), 5)).astype(np.float32), {"source": source}))
    second = _adapter(tmp_path, workdir="w2", **settings)
    second._semantic_codes(other_view)
    assert first._item_ids_info["codes_sha256"] != second._item_ids_info["codes_sha256"]
    assert first._setup_hash() != second._setup_hash()
