"""All §7 diagnostics (H1, H2, Table 8) on an ML-25M-sized prediction set, both tasks, from a cold start
(co-occurrence structures built inside the timed call). Target: under a minute on 2 cores.

    python -m pytest bench/bench_diagnostics.py --benchmark-only

Synthetic data at the paper's ML scale (Table 3): 59k items, 163k users with ~150-item histories (training
sequences and 24M expanded training instances, as the store builds them), 50k training queries with ~7
relevant items each, 5k test queries; 30 predictions per request, the joint model's lists differing from
the reference's on ~80% of requests. Items are drawn with a Zipf-like popularity, so co-occurrence rows
are as skewed as in real logs (a few items in most histories).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.data.views import Catalogue, RecExamples, SearchExamples, TrainView
from harness.diagnostics import TrainingCooccurrence, compute_diagnostics

N_ITEMS, N_USERS, MEAN_HISTORY = 59_000, 163_000, 150
N_TRAIN_QUERIES, N_TEST_QUERIES, MEAN_RELEVANT, DEPTH = 50_000, 5_000, 7, 30


def _zipf_items(rng, size, exponent=0.9):
    p = 1.0 / np.arange(1, N_ITEMS + 1) ** exponent
    return rng.choice(N_ITEMS, size=size, p=p / p.sum()).astype(np.int32)


def _csr(rng, n, mean):
    counts = np.maximum(rng.poisson(mean, size=n), 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, _zipf_items(rng, int(offsets[-1]))


def _rankings(rng, n, share_changed):
    """Distinct items per row: DEPTH steps of a per-row stride through the items in popularity order."""
    start = np.minimum(rng.zipf(1.3, size=n), N_ITEMS) - 1
    stride = rng.choice([1, 7, 11, 13, 17], size=n)  # coprime with N_ITEMS = 2^3 * 59 * 125: no repeats
    ref = (start[:, None] + stride[:, None] * np.arange(DEPTH)) % N_ITEMS
    joint = ref.copy()
    changed = rng.random(n) < share_changed
    joint[changed, DEPTH // 2 :] = (ref[changed, DEPTH // 2 :] + 3) % N_ITEMS  # new tail (distinct: stride 1 rows too)
    return joint.astype(np.int64), ref.astype(np.int64)


@pytest.fixture(scope="module")
def ml25m_sized():
    rng = np.random.default_rng(0)
    lengths = np.maximum(rng.geometric(1.0 / MEAN_HISTORY, size=N_USERS), 5).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = _zipf_items(rng, int(offsets[-1]))
    # training instances: every prefix of positions 1..t-2 (history 1..t-3), as harness.data.store builds them
    n_inst = lengths - 3
    user = np.repeat(np.arange(N_USERS, dtype=np.int32), n_inst)
    hist = (np.arange(user.size) - np.repeat(np.cumsum(n_inst) - n_inst, n_inst) + 1).astype(np.int32)
    rec_train = RecExamples(offsets, items, user, hist, items[offsets[user] + hist])
    so, si = _csr(rng, N_TRAIN_QUERIES, MEAN_RELEVANT)
    search_train = SearchExamples(np.arange(N_TRAIN_QUERIES, dtype=np.int32), [""] * N_TRAIN_QUERIES, so, si)
    catalogue = Catalogue(
        item_key=np.arange(N_ITEMS).astype(str).astype(object), title=[""] * N_ITEMS, text=[""] * N_ITEMS,
        pop_rec=np.bincount(items, minlength=N_ITEMS), pop_search=np.bincount(si, minlength=N_ITEMS),
        head_rec=np.zeros(N_ITEMS, bool), head_search=np.zeros(N_ITEMS, bool),
    )
    train = TrainView("bench", "synthetic", catalogue, rec_train, rec_train, search_train, search_train)

    rec_requests = RecExamples(offsets, items, np.arange(N_USERS, dtype=np.int32), (lengths - 1).astype(np.int32))
    rec_targets = items[offsets[1:] - 1]
    rec_joint, rec_ref = _rankings(rng, N_USERS, 0.8)
    test_offsets, test_items = _csr(rng, N_TEST_QUERIES, MEAN_RELEVANT)
    search_requests = SearchExamples(np.arange(N_TEST_QUERIES, dtype=np.int32), [""] * N_TEST_QUERIES)
    search_joint, search_ref = _rankings(rng, N_TEST_QUERIES, 0.8)
    return {
        "train": train,
        "rec": (rec_joint, rec_ref, rec_requests, np.arange(N_USERS + 1), rec_targets),
        "search": (search_joint, search_ref, search_requests, test_offsets, test_items),
    }


def _recall(rankings, offsets, items):
    query = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    found = (rankings[query] == items[:, None].astype(np.int64)).any(axis=1)
    return np.bincount(query, weights=found, minlength=len(offsets) - 1) / np.diff(offsets)


def test_all_diagnostics_ml25m_sized(benchmark, ml25m_sized):
    train = ml25m_sized["train"]
    inputs = {}
    for task in ("rec", "search"):
        joint, ref, requests, offsets, items = ml25m_sized[task]
        inputs[task] = (joint, ref, requests, offsets, items, _recall(joint, offsets, items), _recall(ref, offsets, items))
    seconds: dict[str, float] = {}
    strategies: dict[str, str] = {}

    def run():
        cooc = TrainingCooccurrence(train)  # cold: building the co-occurrence structures is part of the cost
        out = {}
        for task in ("rec", "search"):
            t = time.perf_counter()
            out[task] = compute_diagnostics(train, task, *inputs[task], cooccurrence=cooc)
            seconds[task] = round(time.perf_counter() - t, 2)
        strategies.update({t: cooc.counter(t).strategy for t in ("rec", "search")})
        return out

    out = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({f"{task}_s": s for task, s in seconds.items()})
    benchmark.extra_info["cooccurrence_strategy"] = strategies
    assert out["rec"]["n_requests"] == N_USERS and out["search"]["n_requests"] == N_TEST_QUERIES
    assert out["rec"]["n_changed"] > 0.7 * N_USERS
    assert benchmark.stats.stats.max < 60.0, f"diagnostics took {benchmark.stats.stats.max:.1f} s (budget: 60 s)"
