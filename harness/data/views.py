"""What adapters see of a compiled dataset: typed, numpy-backed views. Test targets are never in here.

Item ids are dense integers 0..n_items-1 into the dataset's Catalogue.
Recommendation examples are prefix lengths into per-user sequences (no copied histories): example i's
history is `items[offsets[user[i]] : offsets[user[i]] + history_len[i]]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

Task = Literal["rec", "search"]
TASKS: tuple[Task, ...] = ("rec", "search")


@dataclass(frozen=True)
class Catalogue:
    """The one item catalogue every split and task shares."""

    item_key: np.ndarray  # object array of str: the source's own item id
    title: Sequence[str]
    text: Sequence[str]  # searchable text: what BM25 and bi-encoders index
    pop_rec: np.ndarray  # int64: training popularity in recommendation (interactions in train sequences)
    pop_search: np.ndarray  # int64: training popularity in search (training (query, item) pairs)
    head_rec: np.ndarray  # bool: top 1% most popular in recommendation training
    head_search: np.ndarray  # bool: top 1% most popular in search training
    cluster: np.ndarray | None = None  # int32 cluster of simulated items, -1 where unknown

    def __len__(self) -> int:
        return len(self.item_key)

    def head(self, task: Task) -> np.ndarray:
        return self.head_rec if task == "rec" else self.head_search

    def popularity(self, task: Task) -> np.ndarray:
        return self.pop_rec if task == "rec" else self.pop_search


@dataclass(frozen=True)
class RecExamples:
    """Recommendation examples: (history -> target). `target` is None in evaluation requests."""

    offsets: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int32 concatenated user sequences
    user: np.ndarray  # int32 [n] user index of each example
    history_len: np.ndarray  # int32 [n]
    target: np.ndarray | None = None  # int32 [n]
    user_key: np.ndarray | None = None  # object [n_users]: the source's user ids, for run files

    def __len__(self) -> int:
        return len(self.user)

    def history(self, i: int) -> np.ndarray:
        start = self.offsets[self.user[i]]
        return self.items[start : start + self.history_len[i]]

    def histories(self, max_len: int | None = None) -> list[np.ndarray]:
        """Every example's history, optionally only its last `max_len` items."""
        out = []
        for i in range(len(self)):
            h = self.history(i)
            out.append(h[-max_len:] if max_len else h)
        return out

    def select(self, idx: np.ndarray | slice) -> "RecExamples":
        return RecExamples(
            offsets=self.offsets,
            items=self.items,
            user=self.user[idx],
            history_len=self.history_len[idx],
            target=None if self.target is None else self.target[idx],
            user_key=self.user_key,
        )

    def without_targets(self) -> "RecExamples":
        return RecExamples(self.offsets, self.items, self.user, self.history_len, None, self.user_key)


@dataclass(frozen=True)
class SearchExamples:
    """Search queries; `rel_offsets`/`rel_items` (CSR relevant items) are None in evaluation requests."""

    query_id: np.ndarray  # int32 [n]
    text: Sequence[str]
    rel_offsets: np.ndarray | None = None  # int64 [n + 1]
    rel_items: np.ndarray | None = None  # int32
    query_key: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.query_id)

    def relevant(self, i: int) -> np.ndarray:
        if self.rel_offsets is None or self.rel_items is None:
            raise ValueError("these search examples carry no relevance (evaluation requests)")
        return self.rel_items[self.rel_offsets[i] : self.rel_offsets[i + 1]]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The paper's training expansion: a query with k relevant items gives k (query index, item) pairs."""
        if self.rel_offsets is None or self.rel_items is None:
            raise ValueError("these search examples carry no relevance (evaluation requests)")
        counts = np.diff(self.rel_offsets)
        return np.repeat(np.arange(len(self), dtype=np.int64), counts), self.rel_items

    def select(self, idx: np.ndarray | slice) -> "SearchExamples":
        idx_arr = np.arange(len(self))[idx]
        texts = [self.text[i] for i in idx_arr]
        keys = None if self.query_key is None else [self.query_key[i] for i in idx_arr]
        if self.rel_offsets is None:
            return SearchExamples(self.query_id[idx_arr], texts, None, None, keys)
        lens = np.diff(self.rel_offsets)[idx_arr]
        new_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        rel = [self.relevant(i) for i in idx_arr]
        items = np.concatenate(rel).astype(np.int32) if rel else np.zeros(0, np.int32)
        return SearchExamples(self.query_id[idx_arr], texts, new_offsets, items, keys)

    def without_relevance(self) -> "SearchExamples":
        return SearchExamples(self.query_id, self.text, None, None, self.query_key)


@dataclass(frozen=True)
class TrainView:
    """Everything an adapter may learn from: training data, and validation data for early stopping."""

    dataset: str
    fingerprint: str
    catalogue: Catalogue
    rec_train: RecExamples  # the paper's expanded training instances
    rec_valid: RecExamples  # predict item t-1 from 1..t-2, with targets
    search_train: SearchExamples
    search_valid: SearchExamples
    extra: dict = field(default_factory=dict)
