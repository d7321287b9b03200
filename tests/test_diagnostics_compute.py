"""compute_diagnostics end to end: against a plain-Python reference implementation of every definition on
random data, JSON safety, edge cases, and errors that name the input at fault."""

import itertools
import json

import numpy as np
import pytest

import harness.diagnostics.pairs as pairs_mod
from harness.data.views import Catalogue, RecExamples, SearchExamples, TrainView
from harness.diagnostics import TrainingCooccurrence, compute_diagnostics
from harness.errors import HarnessError

N_ITEMS, DEPTH = 30, 6


def _csr(lists):
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    items = np.array([i for x in lists for i in x], dtype=np.int32)
    return offsets, items


def _world(seed):
    """A random dataset and two models' rankings, plus the plain Python sets the reference code reads."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    p /= p.sum()
    sequences = [list(rng.choice(N_ITEMS, size=rng.integers(3, 14), p=p)) for _ in range(50)]
    offsets, items = _csr(sequences)
    # training instances: positions 1..t-2 (the view's arrays also hold t-1 and t: they must be ignored)
    rows = [(u, h, s[h]) for u, s in enumerate(sequences) for h in range(1, len(s) - 2)]
    user, hist, target = (np.array(c, dtype=np.int32) for c in zip(*rows))
    rec_train = RecExamples(offsets, items, user, hist, target)
    train_seqs = [s[: len(s) - 2] for s in sequences if len(s) - 2 >= 2]
    search_sets = [list(rng.choice(N_ITEMS, size=rng.integers(1, 7), p=p)) for _ in range(25)]
    so, si = _csr(search_sets)
    search_train = SearchExamples(np.arange(25, dtype=np.int32), ["q"] * 25, so, si)
    pop_rec = np.bincount([i for s in train_seqs for i in s], minlength=N_ITEMS)
    pop_search = np.bincount(si, minlength=N_ITEMS)
    catalogue = Catalogue(
        item_key=np.array([str(i) for i in range(N_ITEMS)], dtype=object), title=[""] * N_ITEMS, text=[""] * N_ITEMS,
        pop_rec=pop_rec, pop_search=pop_search, head_rec=np.zeros(N_ITEMS, bool), head_search=np.zeros(N_ITEMS, bool),
    )
    train = TrainView("test", "fp", catalogue, rec_train, rec_train, search_train, search_train)
    return rng, train, sequences, train_seqs, search_sets


def _rankings(rng, n):
    ref = np.stack([rng.permutation(N_ITEMS)[:DEPTH] for _ in range(n)]).astype(np.int64)
    ref[rng.random(n) < 0.2, -2:] = -1  # some short lists
    joint = ref.copy()
    for q in np.flatnonzero(rng.random(n) < 0.6):  # change about 60% of the lists
        joint[q] = rng.permutation(N_ITEMS)[:DEPTH]
    for q in np.flatnonzero(rng.random(n) < 0.2):  # a re-ordering alone is not a change
        valid = ref[q][ref[q] >= 0]
        joint[q, : valid.size] = rng.permutation(valid)
    return joint, ref


def _recall(rankings, relevant):
    return np.array([len(set(r[r >= 0].tolist()) & set(rel)) / len(rel) for r, rel in zip(rankings, relevant)])


def _co(sets, a, b):
    return sum(1 for s in sets if a in s and b in s)


def _pct(new, old):
    return None if old == 0 and new != 0 else (0.0 if old == 0 else 100 * (new - old) / old)


def _reference_h2(values, joint, ref, rec_j, rec_r):
    changed = np.array([set(j[j >= 0].tolist()) != set(r[r >= 0].tolist()) for j, r in zip(joint, ref)])
    ok = ~np.isnan(values) & changed
    better = values[ok & (rec_j > rec_r)]
    worse = values[ok & (rec_j < rec_r)]
    return changed, better, worse


def _reference_redundancy(request_pairs, other_sets, target_sets):
    red_any, nonred_any, red_pairs, nonred_pairs = [], [], set(), set()
    for pairs in request_pairs:
        red = nonred = False
        for a, b in pairs:
            if _co(other_sets, a, b) == 0:
                continue
            if _co(target_sets, a, b) > 0:
                red, _ = True, red_pairs.add((a, b))
            else:
                nonred, _ = True, nonred_pairs.add((a, b))
        red_any.append(red)
        nonred_any.append(nonred)
    return np.array(red_any), np.array(nonred_any), len(red_pairs), len(nonred_pairs)


def _check_group(out, mask, rec_j, rec_r):
    assert out["n_requests"] == int(mask.sum())
    if mask.any():
        expected = _pct(rec_j[mask].mean(), rec_r[mask].mean())
        assert out["improvement_pct"] == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pairwise", [False, True])
def test_rec_diagnostics_match_a_plain_python_reference(seed, pairwise, monkeypatch):
    if pairwise:
        monkeypatch.setattr(pairs_mod, "MATERIALISE_BUDGET", 0)
        monkeypatch.setattr(pairs_mod, "BITSET_BUDGET_BYTES", 3 * 8)  # a few bit rows, the rest by search
    rng, train, sequences, train_seqs, search_sets = _world(seed)
    histories = [s[:-1] for s in sequences]
    targets = np.array([s[-1] for s in sequences])
    requests = RecExamples(train.rec_train.offsets, train.rec_train.items, np.arange(50, dtype=np.int32),
                           np.array([len(h) for h in histories], np.int32))
    joint, ref = _rankings(rng, 50)
    rec_j, rec_r = _recall(joint, [[t] for t in targets]), _recall(ref, [[t] for t in targets])
    out = compute_diagnostics(train, "rec", joint, ref, requests, np.arange(51), targets, rec_j, rec_r)
    json.dumps(out, allow_nan=False)

    # H1: Pop_S of predicted items
    pop = train.catalogue.pop_search
    pj = np.array([pop[r[r >= 0]].mean() for r in joint])
    pr = np.array([pop[r[r >= 0]].mean() for r in ref])
    assert out["h1"]["popularity_from"] == "search"
    assert out["h1"]["all"]["delta_pct"] == pytest.approx(_pct(pj.mean(), pr.mean()))

    # H2: Σ over history positions of queries holding both the history item and the target
    search = [set(s) for s in search_sets]
    values = np.array([sum(_co(search, h, t) for h in hist if h != t) for hist, t in zip(histories, targets)], float)
    changed, better, worse = _reference_h2(values, joint, ref, rec_j, rec_r)
    h2 = out["h2"]
    assert out["n_changed"] == int(changed.sum()) and h2["n_changed"] == int(changed.sum())
    assert h2["mean_all"] == pytest.approx(values.mean())
    assert h2["groups"]["joint_better"]["n"] == better.size
    assert h2["groups"]["reference_better"]["n"] == worse.size
    if better.size and worse.size and worse.mean() > 0:
        assert h2["delta_pct"] == pytest.approx(_pct(better.mean(), worse.mean()))

    # Table 8: {history item, target} pairs; other task = search, target task = rec
    rec_sets = [set(s) for s in train_seqs]
    request_pairs = [{(min(h, t), max(h, t)) for h in hist if h != t} for hist, t in zip(histories, targets)]
    red_any, nonred_any, n_red, n_nonred = _reference_redundancy(request_pairs, search, rec_sets)
    table = out["redundancy"]
    assert (table["redundant_pairs"], table["non_redundant_pairs"]) == (n_red, n_nonred)
    _check_group(table["groups"]["redundant"], red_any, rec_j, rec_r)
    _check_group(table["groups"]["non_redundant"], nonred_any, rec_j, rec_r)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pairwise", [False, True])
def test_search_diagnostics_match_a_plain_python_reference(seed, pairwise, monkeypatch):
    if pairwise:
        monkeypatch.setattr(pairs_mod, "MATERIALISE_BUDGET", 0)
    rng, train, sequences, train_seqs, search_sets = _world(seed)
    test_sets = [list(rng.choice(N_ITEMS, size=rng.integers(1, 7))) for _ in range(40)]
    offsets, items = _csr(test_sets)
    requests = SearchExamples(np.arange(40, dtype=np.int32), ["q"] * 40)
    joint, ref = _rankings(rng, 40)
    rec_j, rec_r = _recall(joint, test_sets), _recall(ref, test_sets)
    out = compute_diagnostics(train, "search", joint, ref, requests, offsets, items, rec_j, rec_r)
    json.dumps(out, allow_nan=False)

    pop = train.catalogue.pop_rec
    pj = np.array([pop[r[r >= 0]].mean() for r in joint])
    pr = np.array([pop[r[r >= 0]].mean() for r in ref])
    assert out["h1"]["all"]["delta_pct"] == pytest.approx(_pct(pj.mean(), pr.mean()))

    rec_sets = [set(s) for s in train_seqs]
    values = []
    for rel in test_sets:
        pairs = list(itertools.combinations(sorted(set(rel)), 2))
        values.append(np.mean([_co(rec_sets, a, b) for a, b in pairs]) if pairs else np.nan)
    values = np.array(values)
    changed, better, worse = _reference_h2(values, joint, ref, rec_j, rec_r)
    h2 = out["h2"]
    assert h2["n_defined"] == int((~np.isnan(values)).sum())
    assert h2["mean_all"] == pytest.approx(np.nanmean(values))
    assert h2["groups"]["joint_better"]["n"] == better.size
    if better.size:
        assert h2["groups"]["joint_better"]["mean"] == pytest.approx(better.mean())

    search = [set(s) for s in search_sets]
    request_pairs = [set(itertools.combinations(sorted(set(rel)), 2)) for rel in test_sets]
    red_any, nonred_any, n_red, n_nonred = _reference_redundancy(request_pairs, rec_sets, search)
    table = out["redundancy"]
    assert (table["redundant_pairs"], table["non_redundant_pairs"]) == (n_red, n_nonred)
    _check_group(table["groups"]["redundant"], red_any, rec_j, rec_r)
    _check_group(table["groups"]["non_redundant"], nonred_any, rec_j, rec_r)


def test_identical_models_give_defined_output_and_a_shared_cache_changes_nothing():
    rng, train, sequences, _, _ = _world(3)
    targets = np.array([s[-1] for s in sequences])
    requests = RecExamples(train.rec_train.offsets, train.rec_train.items, np.arange(50, dtype=np.int32),
                           np.array([len(s) - 1 for s in sequences], np.int32))
    joint, _ = _rankings(rng, 50)
    recall = _recall(joint, [[t] for t in targets])
    args = (train, "rec", joint, joint.copy(), requests, np.arange(51), targets, recall, recall)
    out = compute_diagnostics(*args)
    assert out["n_changed"] == 0
    assert out["h1"]["all"]["delta_pct"] == 0.0 and out["h1"]["changed_only"]["n"] == 0
    assert out["h2"]["delta_pct"] is None and out["h2"]["changed_vs_unchanged"]["delta_pct"] is None
    json.dumps(out, allow_nan=False)
    cache = TrainingCooccurrence(train)
    assert compute_diagnostics(*args, cooccurrence=cache) == out
    assert compute_diagnostics(*args, cooccurrence=cache) == out  # the second call reuses the counters


def test_errors_name_the_input_at_fault():
    rng, train, sequences, _, _ = _world(4)
    targets = np.array([s[-1] for s in sequences])
    requests = RecExamples(train.rec_train.offsets, train.rec_train.items, np.arange(50, dtype=np.int32),
                           np.array([len(s) - 1 for s in sequences], np.int32))
    joint, ref = _rankings(rng, 50)
    recall = np.zeros(50)
    with pytest.raises(HarnessError, match="rankings_ref has 49"):
        compute_diagnostics(train, "rec", joint, ref[:49], requests, np.arange(51), targets, recall, recall)
    with pytest.raises(HarnessError, match="per_query_joint has a wrong shape"):
        compute_diagnostics(train, "rec", joint, ref, requests, np.arange(51), targets, recall[:, None], recall)
    two_targets = np.concatenate([[0, 2], np.arange(3, 52)])
    with pytest.raises(HarnessError, match="request 0 has 2 targets"):
        compute_diagnostics(train, "rec", joint, ref, requests, two_targets, np.zeros(51, int), recall, recall)
    with pytest.raises(HarnessError, match="task 'music' is unknown"):
        compute_diagnostics(train, "music", joint, ref, requests, np.arange(51), targets, recall, recall)
