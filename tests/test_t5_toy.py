"""Hand-made TrainViews for the generative T5 tests: tiny, learnable, and built in milliseconds."""

from __future__ import annotations

import numpy as np

from harness.data.views import Catalogue, RecExamples, SearchExamples, TrainView

TOPICS = ("coffee", "volcano", "jazz", "glacier", "solar", "roman")


def toy_view(n_items: int = 12, n_users: int = 24, fingerprint: str = "sha256:toy") -> TrainView:
    """Rec: each user walks the items in order (next = previous + 1 mod n); search: query "<topic> <i>" -> item i."""
    rng = np.random.default_rng(0)
    seqs = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 9))
        seqs.append([(start + j) % n_items for j in range(length)])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    items = np.concatenate(seqs).astype(np.int32)
    # Training instances: every prefix of length >= 2 of items 1..t-2 predicts its next item (paper §5).
    users, lens, targets = [], [], []
    for u, s in enumerate(seqs):
        for length in range(2, len(s) - 2):
            users.append(u), lens.append(length), targets.append(s[length])
    valid_u = np.arange(n_users, dtype=np.int32)
    valid_len = np.array([len(s) - 2 for s in seqs], dtype=np.int32)
    rec_train = RecExamples(offsets, items, np.array(users, np.int32), np.array(lens, np.int32), np.array(targets, np.int32))
    rec_valid = RecExamples(offsets, items, valid_u, valid_len, np.array([s[-2] for s in seqs], np.int32))
    texts = [f"{TOPICS[i % len(TOPICS)]} number {i}" for i in range(n_items)]
    search_train = _search([f"about {t}" for t in texts] + [f"find {t}" for t in texts], list(range(n_items)) * 2)
    search_valid = _search([f"show {t}" for t in texts[:4]], list(range(4)))
    catalogue = Catalogue(
        item_key=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        title=texts,
        text=texts,
        pop_rec=np.bincount(items, minlength=n_items).astype(np.int64),
        pop_search=np.full(n_items, 2, dtype=np.int64),
        head_rec=np.zeros(n_items, bool),
        head_search=np.zeros(n_items, bool),
    )
    return TrainView("toy", fingerprint, catalogue, rec_train, rec_valid, search_train, search_valid,
                     extra={"headline_k": 4})


def _search(texts: list[str], relevant: list[int]) -> SearchExamples:
    return SearchExamples(
        query_id=np.arange(len(texts), dtype=np.int32),
        text=texts,
        rel_offsets=np.arange(len(texts) + 1, dtype=np.int64),
        rel_items=np.array(relevant, dtype=np.int32),
    )


def test_toy_view_is_consistent():
    """The toy data the other T5 tests train on: rec targets follow their histories, search pairs line up."""
    view = toy_view()
    rec = view.rec_train
    for i in range(len(rec)):
        assert rec.target[i] == (rec.history(i)[-1] + 1) % len(view.catalogue)
    queries, items = view.search_train.pairs()
    assert len(queries) == len(items) == 24
    assert view.search_train.text[int(queries[5])].endswith(f"number {items[5]}")
