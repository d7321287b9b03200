"""BM25 baseline: indexes Catalogue.text, matches bm25s's own scores, defined behaviour on empty/unseen queries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.baselines.bm25 import BM25Adapter, BM25Index
from harness.baselines.toydata import toy_view
from harness.data.views import SearchExamples
from harness.errors import HarnessError
from harness.protocol.checks import check_rankings

TEXTS = [
    "Toy Story (1995) | Adventure, Animation, Children, Comedy, Fantasy",
    "Jumanji (1995) | Adventure, Children, Fantasy",
    "Heat (1995) | Action, Crime, Thriller",
    "",  # an item with no text must never match anything
    "Grumpier Old Men (1995) | Comedy, Romance",
    "Sabrina (1995) | Comedy, Romance",
]


def _adapter(params=None, texts=TEXTS, tmp_path: Path = Path(".")) -> BM25Adapter:
    view, _, _ = toy_view([[0, 1, 2]] * 2, len(texts), texts=texts)
    a = BM25Adapter(params=params or {}, seed=0, workdir=tmp_path, tasks=frozenset({"search"}), submission_dir=tmp_path)
    a.fit(view)
    return a


def _queries(*texts: str) -> SearchExamples:
    return SearchExamples(query_id=np.arange(len(texts), dtype=np.int32), text=list(texts))


def test_indexes_the_catalogue_text_not_the_title():
    # Titles say nothing of genres; only Catalogue.text does.
    view, _, _ = toy_view([[0, 1, 2]] * 2, 3, texts=["alpha thriller", "beta comedy", "gamma comedy"])
    view = replace(view, catalogue=replace(view.catalogue, title=["alpha", "beta", "gamma"]))
    a = BM25Adapter(params={}, seed=0, workdir=Path("."), tasks=frozenset({"search"}), submission_dir=Path("."))
    a.fit(view)
    assert a.retrieve("search", _queries("comedy"), 5)[0].tolist() == [1, 2]


def test_ranking_matches_bm25s_scores():
    import bm25s

    a = _adapter({"method": "lucene"})
    got = a.retrieve("search", _queries("comedy fantasy"), 10)[0]
    tok = bm25s.tokenization.Tokenizer(stopwords="en")
    ref = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    ref.index(tok.tokenize(TEXTS, return_as="tuple", show_progress=False), show_progress=False)
    scores = ref.get_scores(tok.tokenize(["comedy fantasy"], update_vocab=False, return_as="string", show_progress=False)[0])
    expected = [i for i in np.lexsort((np.arange(len(scores)), -scores)) if scores[i] > 0]
    assert got.tolist() == expected
    assert set(got.tolist()) == {0, 1, 4, 5}


@pytest.mark.parametrize("query", ["", "   ", "the of and", "zzzunseen qqqword", "!!!"])
def test_empty_stopword_or_unseen_query_gets_an_empty_ranking(query):
    a = _adapter()
    out = a.retrieve("search", _queries(query, "heat"), 10)
    assert out[0].size == 0  # the runner scores this 0 and still counts the query
    assert out[1].tolist() == [2]


def test_partly_unseen_query_uses_its_known_words():
    a = _adapter()
    assert a.retrieve("search", _queries("zzzunseen heat"), 10)[0].tolist() == [2]


def test_output_contract_on_a_batch():
    a = _adapter({"query_batch": 2})  # several internal batches
    queries = _queries("comedy", "romance comedy", "adventure", "", "crime 1995", "children fantasy toy")
    out = a.retrieve("search", queries, 3)
    assert len(out) == len(queries)
    table = check_rankings(out, requests=queries, task="search", k=3, n_items=len(TEXTS), adapter="bm25")
    assert (table[:, 0] >= 0).sum() == 5
    assert all(len(r) == len(set(r.tolist())) <= 3 for r in out)
    assert 3 not in table  # the empty-text item


def test_ties_are_broken_by_item_id():
    a = _adapter(texts=["same words", "same words", "same words", "other"])
    assert a.retrieve("search", _queries("same"), 2)[0].tolist() == [0, 1]


def test_describe_records_parameters():
    a = _adapter({"k1": 0.9, "b": 0.4, "method": "robertson"})
    info = a.describe()
    assert (info["k1"], info["b"], info["method"], info["stemmer"], info["stopwords"]) == (0.9, 0.4, "robertson", "none", "en")
    assert info["library"].startswith("bm25s ")


@pytest.mark.parametrize(
    "params, key",
    [({"k1": -1}, "k1"), ({"b": 2}, "b"), ({"method": "bm26"}, "method"), ({"kl": 1.0}, "kl"), ({"stemmer": "klingon"}, "stemmer")],
)
def test_bad_params_name_the_key(params, key):
    with pytest.raises(HarnessError, match=key):
        _adapter(params)


def test_refuses_recommendation_requests():
    view, test, _ = toy_view([[0, 1, 2]] * 2, len(TEXTS), texts=TEXTS)
    a = _adapter()
    with pytest.raises(HarnessError, match="search only"):
        a.retrieve("rec", test, 5)


def test_index_handles_bm25l_and_bm25plus_like_lucene_ranking_of_matches():
    for method in ("bm25l", "bm25+", "atire", "robertson"):
        idx = BM25Index(TEXTS, k1=1.2, b=0.75, method=method, stopwords="en", stemmer="none")
        assert set(idx.search(["comedy"], 10)[0].tolist()) == {0, 4, 5}
