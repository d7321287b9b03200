"""Item-to-item kNN: the classic sanity baseline for recommendation (Sarwar et al., WWW'01; Linden et al., 2003).

Training is counting. Every user's training sequence (history and target of their longest training instance, as
the sequential models see it) is a set of items; two items co-occur when one user has both. An item's
neighbours are the items it co-occurs with most, by cosine similarity of their user sets,

    sim(i, j) = |users(i) ∩ users(j)| / sqrt(|users(i)| * |users(j)|)        (i != j)

kept to the `neighbours` most similar per item. A request is scored by its last `history` items, the most recent
weighted most (weight `decay ** age`, age 0 for the last item): score(j) = Σ_age decay**age * sim(h_age, j). Ties
and users without history fall back to training popularity, so every list holds K items. Items in the history
are left out when the training data shows no repeat consumption (the sequential models' `exclude_history` rule).

No training loop, no seed: the same data gives the same lists on every machine. A reference model that loses to
this has not been trained yet (docs/baselines.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from harness.baselines.sequential import has_repeats, training_sequences
from harness.baselines.topk import top_k_rows
from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.errors import HarnessError
from harness.protocol.adapter import Adapter
from harness.protocol.params import parse_params

_BLOCK = 1024  # requests scored at a time: a [block, n_items] float64 array


@dataclass(frozen=True)
class ItemKNNParams:
    # Defaults: the best of a grid on ml-small's validation split (docs/baselines.md, "Item-kNN").
    history: int = 20  # the request's most recent items that vote
    decay: float = 0.7  # weight of an item `age` steps before the last: decay ** age (1: all equal)
    neighbours: int = 0  # similar items kept per item (0: all)
    similarity: Literal["cosine", "count"] = "cosine"
    exclude_history: Literal["auto"] | bool = "auto"

    def check(self, fail) -> None:
        if self.history < 1:
            fail("history", "give an integer >= 1")
        if not 0.0 < self.decay <= 1.0:
            fail("decay", "give a number in (0, 1]")
        if self.neighbours < 0:
            fail("neighbours", "give an integer >= 0 (0 keeps every neighbour)")


class ItemKNNAdapter(Adapter):
    """Recommendation only. params: history, decay, neighbours, similarity, exclude_history (see ItemKNNParams)."""

    params_class = ItemKNNParams

    def fit(self, train: TrainView) -> None:
        self._p = p = parse_params(ItemKNNParams, self.params, where=str(self.submission_dir / "config.toml"))
        n_items = len(train.catalogue)
        users, seqs = training_sequences(train.rec_train)
        if not seqs:
            raise HarnessError(f"item-kNN: {train.dataset} has no recommendation training instances")
        self._similar = _similarity(seqs, n_items, p.similarity, p.neighbours)
        popularity = np.asarray(train.catalogue.popularity("rec"), dtype=np.float64)
        # A tie-breaker far below any similarity: popular items first, then by id (top_k_rows breaks exact ties).
        self._fallback = popularity / (popularity.max() + 1.0) * 1e-9
        self._exclude = (not has_repeats(seqs)) if p.exclude_history == "auto" else bool(p.exclude_history)

    def retrieve(self, task: Task, requests: RecExamples | SearchExamples, k: int) -> list[np.ndarray]:
        if task != "rec" or not isinstance(requests, RecExamples):
            raise HarnessError(f"item-kNN serves recommendation only; asked for {task!r} (set tasks = [\"rec\"])")
        out: list[np.ndarray] = []
        for start in range(0, len(requests), _BLOCK):
            rows = range(start, min(start + _BLOCK, len(requests)))
            histories = [requests.history(i) for i in rows]
            out.extend(top_k_rows(self._scores(histories), k))
        return out

    def _scores(self, histories: list[np.ndarray]) -> np.ndarray:
        p = self._p
        n_items = self._similar.shape[0]
        weights = sp.lil_matrix((len(histories), n_items))
        for row, history in enumerate(histories):
            recent = history[-p.history:][::-1]  # the last item first
            for age, item in enumerate(recent):
                weights[row, int(item)] += p.decay ** age
        scores = np.asarray((weights.tocsr() @ self._similar).todense()) + self._fallback
        if self._exclude:
            for row, history in enumerate(histories):
                scores[row, history] = -np.inf
        return scores

    def describe(self) -> dict:
        p = self._p
        return {"history": p.history, "decay": p.decay, "neighbours": p.neighbours, "similarity": p.similarity,
                "exclude_history": self._exclude, "nonzero_similarities": int(self._similar.nnz)}


def _similarity(seqs: list[np.ndarray], n_items: int, kind: str, neighbours: int) -> sp.csr_matrix:
    """Item-item similarity [n_items, n_items] (row i: i's neighbours), diagonal zero, top `neighbours` per row."""
    rows = np.repeat(np.arange(len(seqs)), [len(np.unique(s)) for s in seqs])
    cols = np.concatenate([np.unique(s) for s in seqs])
    users = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(seqs), n_items))
    counts = (users.T @ users).tocsr().astype(np.float64)
    counts.setdiag(0.0)
    counts.eliminate_zeros()
    if kind == "cosine":
        norm = np.sqrt(np.asarray(users.sum(axis=0)).ravel())
        norm[norm == 0] = 1.0
        counts = sp.diags(1.0 / norm) @ counts @ sp.diags(1.0 / norm)
    return _keep_top(counts.tocsr(), neighbours)


def _keep_top(matrix: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Each row's `neighbours` largest entries (ties by column id); all of them when neighbours is 0."""
    if neighbours == 0:
        return matrix
    data, indices, indptr = [], [], [0]
    for i in range(matrix.shape[0]):
        start, stop = matrix.indptr[i], matrix.indptr[i + 1]
        cols, values = matrix.indices[start:stop], matrix.data[start:stop]
        keep = np.lexsort((cols, -values))[:neighbours]
        keep.sort()
        data.append(values[keep])
        indices.append(cols[keep])
        indptr.append(indptr[-1] + len(keep))
    return sp.csr_matrix((np.concatenate(data) if data else [], np.concatenate(indices) if indices else [], indptr),
                         shape=matrix.shape)
