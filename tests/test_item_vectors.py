"""Item vectors for semantic IDs (harness.generative.item_vectors): every source on sim2 with tiny settings.

Shapes, unit rows, the cache (a second call is a hit with the same array; a fresh cache recomputes the same array
for the same seed), concat as the scaled pair of the other two, multitask away from plain content, the caller's
random state left alone, the shipped SASRec settings, and errors that name what is at fault.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness.data.compile import build_dataset
from harness.data.store import CompiledDataset
from harness.errors import HarnessError
from harness.generative.item_vectors import (
    DEFAULT_SETTINGS,
    SASREC_PARAMS,
    SOURCES,
    check_settings,
    item_vectors,
    negatives_mask,
    training_pairs,
)

REPO = Path(__file__).resolve().parents[1]
# threads=1: the test machine is shared. Two SASRec epochs and 128 fine-tuning pairs: seconds, not minutes.
TINY = {"sasrec_epochs": 2, "finetune_pairs": 128, "finetune_batch": 16, "threads": 1}
DIMS = {"content": 384, "collaborative": 64, "concat": 448, "multitask": 384}


@pytest.fixture(scope="module")
def sim2():
    build_dataset("sim2")
    with CompiledDataset.open("sim2") as ds:
        return ds.train_view()


@pytest.fixture(scope="module")
def computed(sim2, tmp_path_factory):
    """Every source once, into one cache: (root, {source: (vectors, info)})."""
    root = tmp_path_factory.mktemp("item-vectors")
    return root, {s: item_vectors(s, sim2, settings=TINY, seed=0, cache_root=root) for s in SOURCES}


def test_every_source_gives_finite_unit_rows_one_per_item(sim2, computed):
    _, out = computed
    for source, (vectors, info) in out.items():
        assert vectors.shape == (len(sim2.catalogue), DIMS[source]), source
        assert vectors.dtype == np.float32 and np.isfinite(vectors).all()
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert info["source"] == source and info["dim"] == DIMS[source] and info["n_items"] == len(sim2.catalogue)
        assert not info["cache_hit"] or source == "concat"  # concat is built from the two caches just written
        assert info["settings"] and all(info["settings"][k] == v for k, v in TINY.items() if k in info["settings"])
        assert np.unique(vectors.round(5), axis=0).shape[0] > 1  # not one vector for every item


def test_a_second_call_is_a_cache_hit_with_the_same_vectors(sim2, computed):
    root, out = computed
    for source in SOURCES:
        vectors, info = item_vectors(source, sim2, settings=TINY, seed=0, cache_root=root)
        assert info["cache_hit"], source
        np.testing.assert_array_equal(vectors, out[source][0])
    # content is the bi-encoder baseline's own cache file; the trained sources have theirs
    assert list((root / "embeddings").rglob("*.npy"))
    assert len(list((root / "item_vectors").rglob("*.npy"))) == 2


def test_the_same_seed_recomputes_the_same_vectors_and_another_seed_does_not(sim2, computed, tmp_path):
    _, out = computed
    for source in ("collaborative", "multitask"):
        again, info = item_vectors(source, sim2, settings=TINY, seed=0, cache_root=tmp_path)
        assert not info["cache_hit"]  # a fresh cache: trained again
        np.testing.assert_array_equal(again, out[source][0])
    other, info = item_vectors("collaborative", sim2, settings=TINY, seed=1, cache_root=tmp_path)
    assert not info["cache_hit"] and info["seed"] == 1
    assert not np.allclose(other, out["collaborative"][0])


def test_concat_is_the_two_halves_scaled_by_one_over_root_two(computed):
    _, out = computed
    expected = np.hstack([out["content"][0], out["collaborative"][0]]) / math.sqrt(2)
    np.testing.assert_allclose(out["concat"][0], expected, rtol=0, atol=1e-6)
    assert set(out["concat"][1]["parts"]) == {"content", "collaborative"}


def test_multitask_fine_tuning_moves_the_content_vectors(computed):
    _, out = computed
    content, multitask = out["content"][0], out["multitask"][0]
    assert np.abs(content - multitask).max() > 1e-3
    info = out["multitask"][1]
    assert info["search_pairs"] == info["rec_pairs"] == TINY["finetune_pairs"] // 2
    assert info["steps"] == TINY["finetune_pairs"] // TINY["finetune_batch"]
    assert info["loss_last_tenth"] < info["loss_first_tenth"] and 0 < info["negatives_masked"] < 1
    assert info["frozen_parameters"] > 0 and info["trained_parameters"] > 0  # the word-piece table stays as it was


def test_training_leaves_the_callers_random_state_alone(sim2, tmp_path):
    import torch

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    item_vectors("collaborative", sim2, settings={**TINY, "sasrec_epochs": 1}, cache_root=tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_training_pairs_are_seeded_halves_of_each_task(sim2):
    pairs, counts, known = training_pairs(sim2, 100, seed=3)
    assert counts["search_pairs"] == counts["rec_pairs"] == 50 and len(pairs) == 100
    assert training_pairs(sim2, 100, seed=3)[0] == pairs and training_pairs(sim2, 100, seed=4)[0] != pairs
    queries = set(sim2.search_train.text)
    texts = set(sim2.catalogue.text)
    assert sum(a in queries for a, _ in pairs) == 50 and all(p in texts for _, p in pairs)
    assert set(pairs) <= known
    # a rec pair is (the history's last item, the target)
    rec = sim2.rec_train
    i = int(np.flatnonzero(rec.history_len > 0)[0])
    assert (sim2.catalogue.text[rec.history(i)[-1]], sim2.catalogue.text[rec.target[i]]) in known
    # a task that lacks pairs leaves the rest to the other
    many, counts, _ = training_pairs(sim2, 10**6, seed=0)
    assert counts["search_pairs"] == counts["search_available"] and counts["rec_pairs"] == counts["rec_available"]
    assert len(many) == counts["search_available"] + counts["rec_available"]


def test_known_positives_are_never_negatives():
    known = {("drama", "film a"), ("drama", "film b"), ("comedy", "film c"), ("film a", "film c")}
    mask = negatives_mask(["drama", "drama", "comedy", "film a"], ["film a", "film b", "film c", "film c"], known)
    assert mask.tolist() == [
        [False, False, True, True],  # film b is drama's too
        [False, False, True, True],
        [True, True, False, False],  # the same film twice is not its own negative
        [True, True, False, False],
    ]


def test_settings_are_checked_and_errors_name_the_key(sim2):
    assert check_settings({}, "x") == DEFAULT_SETTINGS
    assert check_settings({"finetune_lr": 1}, "x")["finetune_lr"] == 1.0  # an int for a float
    with pytest.raises(HarnessError, match=r"where: unknown item-vector setting\(s\) \['epochs'\]; allowed: model"):
        check_settings({"epochs": 3}, "where")
    for key, value, what in [
        ("sasrec_epochs", 0, "give an integer >= 1"),
        ("sasrec_epochs", True, "must be an integer"),
        ("finetune_lr", "fast", "must be a number"),
        ("device", "tpu", "allowed: 'cpu'"),
        ("sasrec_d_model", 33, "multiple of SASRec's 2 attention heads"),
        ("finetune_batch", 1, "in-batch negatives"),
        ("finetune_warmup", 1.0, r"\[0, 1\)"),
        ("finetune_freeze_embeddings", 1, "must be true or false"),
    ]:
        with pytest.raises(HarnessError, match=rf"cfg\.{key} = .*{what}"):
            check_settings({key: value}, "cfg")
    with pytest.raises(HarnessError, match=r"unknown source 'bert'; allowed: content, collaborative, concat, multitask"):
        item_vectors("bert", sim2)
    with pytest.raises(HarnessError, match="sasrec_epochs"):
        item_vectors("collaborative", sim2, settings={"sasrec_epochs": -1})


def test_sasrec_runs_as_the_shipped_submission_but_for_its_epochs():
    shipped = tomllib.loads((REPO / "submissions" / "sasrec" / "config.toml").read_text())["params"]
    assert SASREC_PARAMS == shipped
    assert DEFAULT_SETTINGS["sasrec_d_model"] == shipped["d_model"]
