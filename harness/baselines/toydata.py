"""Tiny hand-made TrainViews for the baselines' tests and benchmarks (no compiled dataset needed).

`toy_view` applies the paper's recommendation split to per-user sequences: the training sequence is
1..t-2 and its prefix instances predict each item from the ones before it; validation predicts t-1 from
1..t-2; the test request is the history 1..t-1 (its target t is returned separately, never in the view).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.data.views import Catalogue, RecExamples, SearchExamples, TrainView


def _concat(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs]) if seqs else np.zeros(0, np.int32)
    return offsets, items


def _search(queries: Sequence[tuple[str, Sequence[int]]]) -> SearchExamples:
    rel = [np.asarray(r, dtype=np.int32) for _, r in queries]
    offsets, items = _concat(rel)
    return SearchExamples(
        query_id=np.arange(len(queries), dtype=np.int32),
        text=[q for q, _ in queries],
        rel_offsets=offsets,
        rel_items=items,
        query_key=[f"q{i}" for i in range(len(queries))],
    )


def toy_catalogue(n_items: int, texts: Sequence[str] | None = None, pop_rec: np.ndarray | None = None) -> Catalogue:
    texts = list(texts) if texts is not None else [f"item {i}" for i in range(n_items)]
    pop_rec = np.zeros(n_items, np.int64) if pop_rec is None else pop_rec.astype(np.int64)
    n_head = max(1, n_items // 100)
    head = np.zeros(n_items, bool)
    head[np.argsort(-pop_rec, kind="stable")[:n_head]] = True
    return Catalogue(
        item_key=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        title=texts,
        text=texts,
        pop_rec=pop_rec,
        pop_search=np.zeros(n_items, np.int64),
        head_rec=head,
        head_search=np.zeros(n_items, bool),
    )


def toy_view(
    sequences: Sequence[Sequence[int]],
    n_items: int,
    *,
    texts: Sequence[str] | None = None,
    search_train: Sequence[tuple[str, Sequence[int]]] = (),
    search_valid: Sequence[tuple[str, Sequence[int]]] = (),
    fingerprint: str = "toy-fingerprint",
) -> tuple[TrainView, RecExamples, np.ndarray]:
    """(train view, test requests without targets, test targets) from full per-user sequences (t >= 3)."""
    seqs = [np.asarray(s, dtype=np.int32) for s in sequences]
    if any(len(s) < 3 for s in seqs):
        raise ValueError("every toy sequence needs at least 3 items (train, validation and test targets)")
    train_seqs = [s[:-2] for s in seqs]
    offsets, items = _concat(train_seqs)
    users, hist, targets = [], [], []
    for u, s in enumerate(train_seqs):
        for j in range(len(s) - 1, 0, -1):  # predict s[j] from s[:j], down to a one-item history
            users.append(u)
            hist.append(j)
            targets.append(int(s[j]))
    rec_train = RecExamples(
        offsets, items, np.asarray(users, np.int32), np.asarray(hist, np.int32), np.asarray(targets, np.int32)
    )
    v_offsets, v_items = _concat([s[:-1] for s in seqs])
    all_users = np.arange(len(seqs), dtype=np.int32)
    rec_valid = RecExamples(
        v_offsets, v_items, all_users, np.asarray([len(s) - 2 for s in seqs], np.int32),
        np.asarray([s[-2] for s in seqs], np.int32),
    )
    t_offsets, t_items = _concat(seqs)
    test = RecExamples(t_offsets, t_items, all_users, np.asarray([len(s) - 1 for s in seqs], np.int32))
    test_targets = np.asarray([s[-1] for s in seqs], np.int64)
    pop = np.bincount(items, minlength=n_items) if len(items) else np.zeros(n_items, np.int64)
    view = TrainView(
        dataset="toy",
        fingerprint=fingerprint,
        catalogue=toy_catalogue(n_items, texts, pop),
        rec_train=rec_train,
        rec_valid=rec_valid,
        search_train=_search(search_train),
        search_valid=_search(search_valid),
    )
    return view, test, test_targets


def successor_sequences(n_items: int, n_users: int, length: int, seed: int = 0) -> list[list[int]]:
    """Users who always move from item i to item i+1 (mod n_items), from a random start: trivially learnable."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, size=n_users)
    return [[(int(s) + j) % n_items for j in range(length)] for s in starts]
