"""Pop_R and Pop_S (paper §5): the most frequent items of one task's training data, for every request.

Both serve both tasks, as in Table 5: Pop_R answers search queries with recommendation popularity, Pop_S
answers recommendation requests with search popularity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.protocol.adapter import Adapter
from harness.protocol.params import parse_params


@dataclass(frozen=True)
class PopularityParams:
    popularity: Literal["rec", "search"]  # whose training popularity ranks the items; no default: say which


class PopularityAdapter(Adapter):
    """params: popularity = "rec" | "search" (whose training popularity ranks the items)."""

    params_class = PopularityParams

    def fit(self, train: TrainView) -> None:
        where = str(self.submission_dir / "config.toml")
        source = parse_params(PopularityParams, self.params, where=where).popularity
        counts = train.catalogue.popularity(source)
        # Most popular first; ties by item id so the ranking is the same on every machine.
        self._ranking = np.lexsort((np.arange(len(counts)), -counts)).astype(np.int64)
        self._source = source

    def retrieve(self, task: Task, requests: RecExamples | SearchExamples, k: int) -> np.ndarray:
        top = self._ranking[:k]
        return np.broadcast_to(top, (len(requests), len(top)))

    def describe(self) -> dict:
        return {"popularity": self._source, "ties": "item id ascending"}
