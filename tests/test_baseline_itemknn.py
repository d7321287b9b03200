"""Item-kNN: similarities by hand, the recency weighting, the history rule, the popularity fallback, a planted
pattern, parameter checks, and a run through the harness."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.baselines.itemknn import ItemKNNAdapter, _similarity
from harness.baselines.toydata import successor_sequences, toy_view
from harness.cli import main
from harness.data.compile import build_dataset
from harness.data.views import RecExamples
from harness.errors import HarnessError
from harness.evaluation.verify import verify_record_folder

REPO = Path(__file__).resolve().parents[1]


def adapter(tmp_path: Path, **params) -> ItemKNNAdapter:
    return ItemKNNAdapter(params=params, seed=0, workdir=tmp_path, tasks=frozenset({"rec"}), submission_dir=tmp_path)


def requests(histories: list[list[int]]) -> RecExamples:
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in histories])]).astype(np.int64)
    items = np.concatenate([np.asarray(h, np.int32) for h in histories]) if histories else np.zeros(0, np.int32)
    return RecExamples(offsets, items, np.arange(len(histories), dtype=np.int32),
                       np.asarray([len(h) for h in histories], np.int32))


def test_cosine_similarity_by_hand():
    # users: {0, 1}, {0, 1, 2}, {1, 2}: |U0| = 2, |U1| = 3, |U2| = 2; co-occurrences 0-1: 2, 0-2: 1, 1-2: 2
    sim = _similarity([np.array([0, 1]), np.array([0, 1, 2]), np.array([2, 1])], 4, "cosine", 0).toarray()
    expected = np.array([[0, 2 / np.sqrt(6), 1 / 2, 0], [2 / np.sqrt(6), 0, 2 / np.sqrt(6), 0],
                         [1 / 2, 2 / np.sqrt(6), 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(sim, expected, rtol=1e-12)
    counts = _similarity([np.array([0, 1]), np.array([0, 1, 2]), np.array([2, 1])], 4, "count", 1).toarray()
    assert counts[1].tolist() == [2, 0, 0, 0]  # the one neighbour kept: the larger count, ties by item id


def test_the_last_item_counts_most_and_history_is_left_out(tmp_path):
    # items 0..5; 1 goes with 2, 3 goes with 4 (every user who has one has the other)
    view, _, _ = toy_view([[1, 2, 5, 5, 5], [3, 4, 5, 5, 5], [1, 2, 0, 0, 0], [3, 4, 0, 0, 0], [5, 0, 5, 0, 0]], 6)
    knn = adapter(tmp_path, history=2, decay=0.5, exclude_history=True)
    knn.fit(view)
    (ranked,) = knn.retrieve("rec", requests([[1, 3]]), 3)
    assert ranked[0] == 4  # 3 is the last item: its neighbour first
    assert 1 not in ranked and 3 not in ranked  # the request's own items are left out
    (alone,) = knn.retrieve("rec", requests([[]]), 3)
    popularity = view.catalogue.popularity("rec")
    assert alone.tolist() == np.lexsort((np.arange(6), -popularity))[:3].tolist()  # no history: the most popular


def test_a_planted_pattern_is_found_and_popularity_is_beaten(tmp_path):
    view, test, targets = toy_view(successor_sequences(n_items=60, n_users=200, length=12, seed=1), 60)
    knn = adapter(tmp_path, history=1)
    knn.fit(view)
    ranked = knn.retrieve("rec", test, 5)
    hits = np.mean([t in r for r, t in zip(ranked, targets)])
    assert hits > 0.9  # the successor of the last item is its closest neighbour


@pytest.mark.parametrize("params, message", [
    ({"history": 0}, "params.history"), ({"decay": 1.5}, "params.decay"), ({"neighbours": -1}, "params.neighbours"),
    ({"similarity": "jaccard"}, "similarity"), ({"neighbors": 10}, "unknown [params] key(s) ['neighbors']"),
    ({"history": True}, "params.history"),
])
def test_bad_params_are_named_before_anything_trains(tmp_path, params, message):
    with pytest.raises(HarnessError) as caught:
        ItemKNNAdapter.check_config(params, tasks=frozenset({"rec"}), submission_dir=tmp_path)
    assert message in str(caught.value) and str(tmp_path / "config.toml") in str(caught.value)


def test_runs_through_the_harness_and_its_record_verifies(tmp_path):
    build_dataset("sim1")
    assert main(["run", str(REPO / "submissions" / "itemknn"), "-d", "sim1", "--out", str(tmp_path / "out"),
                 "--no-site", "--no-progress"]) == 0
    assert verify_record_folder(tmp_path / "out" / "sim1" / "itemknn").ok
