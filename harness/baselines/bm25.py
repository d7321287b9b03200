"""BM25 over each item's searchable text (Catalogue.text), the sparse search reference of Table 5.

Indexing and scoring are bm25s's (tokeniser, vocabulary, per-term document scores). Querying does not go
through bm25s.retrieve, which loops over queries in Python on its numpy backend: the query batch becomes a
sparse (query x term) count matrix, and one sparse product with bm25s's (term x item) score matrix scores
every query at once (a second product with the index's 0/1 structure says which items match). Only items
that share at least one term with the query are ranked, as in Terrier (the paper's PyTerrier run): an empty
query, one made only of stopwords, or one whose words are all unseen in the catalogue gets an empty ranking,
which the runner scores 0 (it is still counted).

For BM25L/BM25+ bm25s adds, per query, the same constant to every item (the non-occurrence terms); it
cannot change a ranking, so it is left out.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any, Literal, Sequence

import numpy as np

from harness.baselines.topk import top_k_sparse_rows
from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.errors import HarnessError
from harness.protocol.adapter import Adapter
from harness.protocol.params import parse_params

Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]
METHODS = typing.get_args(Method)


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.2  # Terrier's (and so PyTerrier's) defaults, which the paper used
    b: float = 0.75
    method: Method = "lucene"
    stopwords: str = "en"  # bm25s's English list; "none" keeps every word
    stemmer: str = "none"  # a PyStemmer (Snowball) algorithm, e.g. "english"; PyStemmer must be installed
    query_batch: int = 4096

    def check(self, fail) -> None:
        if self.k1 < 0:
            fail("k1", "give a number >= 0")
        if not 0 <= self.b <= 1:
            fail("b", "give a number in [0, 1]")
        if self.query_batch < 1:
            fail("query_batch", "give an integer >= 1")



def _stemmer(name: str):
    if name in ("none", "", None):
        return None
    try:
        import Stemmer  # PyStemmer: optional, not a project dependency
    except ImportError as exc:
        raise HarnessError(
            f"params.stemmer = {name!r} needs the PyStemmer package (pip install PyStemmer); "
            "or set stemmer = \"none\""
        ) from exc
    if name not in Stemmer.algorithms():
        raise HarnessError(f"params.stemmer = {name!r}; PyStemmer knows: {', '.join(Stemmer.algorithms())}")
    return Stemmer.Stemmer(name)


def resolve_params(params: dict[str, Any], where: str = "BM25") -> dict[str, Any]:
    return asdict(parse_params(BM25Params, params, where=where))


class BM25Index:
    """A bm25s index over a list of texts, queried in sparse batches. Row i of the index is text i."""

    def __init__(self, texts: Sequence[str], *, k1: float, b: float, method: str, stopwords: str, stemmer: str):
        import bm25s
        from scipy import sparse

        self.n_docs = len(texts)
        self._tokenizer = bm25s.tokenization.Tokenizer(
            stopwords=None if stopwords == "none" else stopwords, stemmer=_stemmer(stemmer)
        )
        corpus = self._tokenizer.tokenize(
            [t or "" for t in texts], update_vocab=True, return_as="tuple", show_progress=False
        )
        self._retriever = bm25s.BM25(k1=k1, b=b, method=method)
        self._retriever.index(corpus, show_progress=False)
        s = self._retriever.scores
        n_terms = len(s["indptr"]) - 1
        # (term x item) BM25 weights: row t holds the score term t adds to each item containing it.
        self._term_item = sparse.csr_matrix((s["data"], s["indices"], s["indptr"]), shape=(n_terms, s["num_docs"]))
        self._term_present = self._term_item.copy()
        self._term_present.data = np.ones_like(self._term_present.data)
        # The tokeniser's "" token stands for an empty text; a query must never match it.
        self._empty_id = self._tokenizer.get_vocab_dict().get("")

    @property
    def vocabulary_size(self) -> int:
        return self._term_item.shape[0] - (self._empty_id is not None)

    def query_term_ids(self, queries: Sequence[str]) -> list[list[int]]:
        """Known, non-stopword term ids of each query (unseen words dropped; repeats kept, as bm25s does)."""
        ids = self._tokenizer.tokenize(
            [q or "" for q in queries], update_vocab=False, return_as="ids", show_progress=False, allow_empty=False
        )
        return [[t for t in q if t != self._empty_id] for q in ids]

    def search(self, queries: Sequence[str], k: int) -> list[np.ndarray]:
        from scipy import sparse

        term_ids = self.query_term_ids(queries)
        rows = np.repeat(np.arange(len(term_ids)), [len(q) for q in term_ids])
        cols = np.fromiter((t for q in term_ids for t in q), dtype=np.int64, count=len(rows))
        query_term = sparse.csr_matrix(
            (np.ones(len(rows), dtype=self._term_item.dtype), (rows, cols)),
            shape=(len(term_ids), self._term_item.shape[0]),
        )
        # Which items match is read off the index's structure, not off the scores: Robertson's idf is 0 or
        # negative for a term in half the items or more, and a sparse product drops sums that come out 0.
        matches = (query_term @ self._term_present).tocsr()
        scores = (query_term @ self._term_item).tocsr()
        matches.sort_indices()
        scores.sort_indices()
        if np.array_equal(matches.indptr, scores.indptr) and np.array_equal(matches.indices, scores.indices):
            return top_k_sparse_rows(scores.indptr, scores.indices, scores.data, k)  # no zero-score matches
        values = np.zeros(len(matches.indices), dtype=np.float64)
        for row in range(len(term_ids)):
            m0, m1 = matches.indptr[row], matches.indptr[row + 1]
            s0, s1 = scores.indptr[row], scores.indptr[row + 1]
            at = np.searchsorted(matches.indices[m0:m1], scores.indices[s0:s1])
            values[m0 + at] = scores.data[s0:s1]
        return top_k_sparse_rows(matches.indptr, matches.indices, values, k)

class BM25Adapter(Adapter):
    """Search only. params: k1, b, method, stopwords, stemmer, query_batch (see BM25Params)."""

    params_class = BM25Params

    def fit(self, train: TrainView) -> None:
        self._p = resolve_params(self.params, str(self.submission_dir / "config.toml"))
        p = self._p
        self._index = BM25Index(
            train.catalogue.text, k1=p["k1"], b=p["b"], method=p["method"], stopwords=p["stopwords"], stemmer=p["stemmer"]
        )

    def retrieve(self, task: Task, requests: RecExamples | SearchExamples, k: int) -> list[np.ndarray]:
        if task != "search" or not isinstance(requests, SearchExamples):
            raise HarnessError(f"BM25 serves search only; asked for {task!r} (set tasks = [\"search\"] in its config)")
        out: list[np.ndarray] = []
        step = self._p["query_batch"]
        for start in range(0, len(requests), step):
            out.extend(self._index.search(list(requests.text[start : start + step]), k))
        return out

    def describe(self) -> dict[str, Any]:
        p = self._p
        return {
            "library": f"bm25s {metadata.version('bm25s')}",
            "k1": p["k1"],
            "b": p["b"],
            "method": p["method"],
            "tokenizer": "bm25s.Tokenizer: lowercase, regex (?u)\\b\\w\\w+\\b",
            "stopwords": p["stopwords"],
            "stemmer": p["stemmer"],
            "vocabulary_size": self._index.vocabulary_size,
            "non_matching_items": "not ranked (a query with no known term gets an empty ranking)",
            "ties": "item id ascending",
        }
