"""Evaluation speed at ML-25M scale: 163k queries, rankings of depth 30, R@{1,5,10,30} over all / head /
torso relevant items, plus the paired t-tests against a reference, side by side with ranx and pytrec_eval
on the same input.

    python -m pytest bench/bench_metrics.py --benchmark-only       # pytest-benchmark table
    PYTHONPATH=. python bench/bench_metrics.py                    # medians and ratios, printed

What each side does (same rankings, same relevant items, same segments):
- harness: recall_at_k (all 12 metrics, per query) + 12 paired t-tests with Holm (compare_values).
- ranx: ranx.evaluate on prebuilt Qrels/Run objects, once per segment qrels (all, head, torso), 4 recall
  cutoffs, per-query values; numba JIT warmed up before timing; no t-test (ranx.compare's tests need
  several runs and are far slower). Building the Qrels/Run objects is not timed. A second ranx variant
  times only its kernel, on typed lists converted beforehand (ranx.evaluate converts on every call).
- pytrec_eval: RelevanceEvaluator.evaluate per segment (evaluators built outside the timing).
Every query has a non-empty ranking, so pytrec_eval and ranx (which drop empty ones) score the same set.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from harness.metrics import Metric, recall_at_k
from harness.metrics.significance import compare_values

N_QUERIES = 163_000  # ML-25M's users
N_ITEMS = 59_000  # ML-25M's movies
DEPTH = 30
KS = (1, 5, 10, 30)
HIT_RATE = 0.3  # fraction of queries whose target is planted in the ranking


def make_case(seed: int = 0, n_queries: int = N_QUERIES, max_relevant: int = 1) -> dict:
    """Synthetic rankings (distinct items per row) and relevant items, head = the 1% most popular."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / rng.permutation(np.arange(1, N_ITEMS + 1))  # Zipf(1) over shuffled ids: head ~60% of targets
    is_head = np.zeros(N_ITEMS, bool)
    is_head[np.argsort(-popularity, kind="stable")[: N_ITEMS // 100]] = True
    n_relevant = rng.integers(1, max_relevant + 1, size=n_queries)
    rel_offsets = np.concatenate([[0], np.cumsum(n_relevant)]).astype(np.int64)
    # relevant items skewed towards popular ones, distinct within a query (offsets keep them distinct)
    first = rng.choice(N_ITEMS, size=n_queries, p=popularity / popularity.sum())
    within = np.arange(rel_offsets[-1]) - np.repeat(rel_offsets[:-1], n_relevant)
    rel_items = (np.repeat(first, n_relevant) + within * 7919) % N_ITEMS
    rankings = _distinct_rows(rng, n_queries)
    # plant each chosen query's first target at a random position (unless it is already ranked)
    rows = np.flatnonzero(rng.random(n_queries) < HIT_RATE)
    targets = rel_items[rel_offsets[rows]]
    absent = ~(rankings[rows] == targets[:, None]).any(axis=1)
    rows, targets = rows[absent], targets[absent]
    rankings[rows, rng.integers(0, DEPTH, size=len(rows))] = targets
    return {"rankings": rankings, "rel_offsets": rel_offsets, "rel_items": rel_items, "is_head": is_head}


def _distinct_rows(rng: np.random.Generator, n_queries: int) -> np.ndarray:
    """Each row: DEPTH distinct item ids (a random start plus distinct random steps, modulo N_ITEMS)."""
    steps = np.stack([rng.choice(N_ITEMS - 1, size=DEPTH, replace=False) for _ in range(64)])
    return (rng.integers(0, N_ITEMS, size=(n_queries, 1)) + steps[rng.integers(0, 64, size=n_queries)]) % N_ITEMS


def harness_evaluation(case: dict, reference: dict) -> list:
    values = recall_at_k(case["rankings"], case["rel_offsets"], case["rel_items"], case["is_head"], KS)
    return compare_values(values, reference)


def segment_dicts(case: dict) -> tuple[dict[str, dict], dict]:
    """{segment: qrels dict}, run dict: the inputs the other tools take."""
    rankings, offsets, items, is_head = case["rankings"], case["rel_offsets"], case["rel_items"], case["is_head"]
    scores = {str(i): float(DEPTH - i) for i in range(DEPTH)}
    run = {f"q{q}": {str(d): scores[str(p)] for p, d in enumerate(row.tolist())} for q, row in enumerate(rankings)}
    qrels = {"all": {}, "head": {}, "torso": {}}
    for q in range(len(rankings)):
        rel = items[offsets[q] : offsets[q + 1]].tolist()
        for segment, keep in (
            ("all", rel),
            ("head", [i for i in rel if is_head[i]]),
            ("torso", [i for i in rel if not is_head[i]]),
        ):
            if keep:
                qrels[segment][f"q{q}"] = {str(i): 1 for i in keep}
    return qrels, run


def ranx_evaluation(ranx, qrels: dict[str, dict], run: dict, *, typed_lists: bool = False):
    """A function evaluating every segment with ranx. ranx wants the run's queries to equal the qrels',
    so each segment gets its own Run object (built here, not timed). With typed_lists, the objects are
    converted to ranx's numba typed lists up front too, so only its JIT-compiled kernel is timed (what
    ranx.evaluate does on Qrels/Run objects costs several times more: it converts them on every call)."""
    pairs = [(ranx.Qrels.from_dict(q), ranx.Run.from_dict({qid: run[qid] for qid in q})) for q in qrels.values()]
    if typed_lists:
        pairs = [(q.to_typed_list(), r.to_typed_list()) for q, r in pairs]
        options = {}
    else:
        options = {"save_results_in_run": False}
    metrics = [f"recall@{k}" for k in KS]
    return lambda: [ranx.evaluate(q, r, metrics, return_mean=False, **options) for q, r in pairs]


# --- pytest-benchmark ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case():
    return make_case(seed=0)


@pytest.fixture(scope="module")
def reference():
    ref = make_case(seed=0)
    ref["rankings"] = make_case(seed=1)["rankings"]  # same queries and targets, other rankings
    return recall_at_k(ref["rankings"], ref["rel_offsets"], ref["rel_items"], ref["is_head"], KS)


@pytest.fixture(scope="module")
def dicts(case):
    return segment_dicts(case)


def test_harness(benchmark, case, reference):
    rows = benchmark(harness_evaluation, case, reference)
    assert len(rows) == 12


def test_ranx(benchmark, case, dicts):
    ranx = pytest.importorskip("ranx")
    qrels, run = dicts
    evaluate = ranx_evaluation(ranx, qrels, run)
    evaluate()  # numba JIT warm-up
    results = benchmark.pedantic(evaluate, rounds=5, warmup_rounds=1)
    ours = recall_at_k(case["rankings"], case["rel_offsets"], case["rel_items"], case["is_head"], KS)
    assert np.nanmean(ours[Metric("R", 10)]) == pytest.approx(float(np.mean(results[0]["recall@10"])), abs=1e-12)


def test_ranx_kernel_only(benchmark, dicts):
    ranx = pytest.importorskip("ranx")
    evaluate = ranx_evaluation(ranx, *dicts, typed_lists=True)
    evaluate()  # numba JIT warm-up
    benchmark.pedantic(evaluate, rounds=5, warmup_rounds=1)


def test_pytrec_eval(benchmark, dicts):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = dicts
    evaluators = [pytrec_eval.RelevanceEvaluator(q, {"recall." + ",".join(map(str, KS))}) for q in qrels.values()]
    benchmark.pedantic(lambda: [e.evaluate(run) for e in evaluators], rounds=3, warmup_rounds=0)


# --- plain script: medians and ratios --------------------------------------------------------------------


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import pytrec_eval
    import ranx

    case = make_case(seed=0)
    ref_case = dict(case, rankings=make_case(seed=1)["rankings"])
    reference = recall_at_k(
        ref_case["rankings"], ref_case["rel_offsets"], ref_case["rel_items"], ref_case["is_head"], KS
    )
    qrels, run = segment_dicts(case)
    ranx_eval = ranx_evaluation(ranx, qrels, run)
    ranx_eval()  # numba JIT warm-up
    ranx_kernel = ranx_evaluation(ranx, qrels, run, typed_lists=True)
    ranx_kernel()
    evaluators = [pytrec_eval.RelevanceEvaluator(q, {"recall." + ",".join(map(str, KS))}) for q in qrels.values()]

    ours = _median_seconds(lambda: harness_evaluation(case, reference), repeats=7)
    ours_recall = _median_seconds(
        lambda: recall_at_k(case["rankings"], case["rel_offsets"], case["rel_items"], case["is_head"], KS), repeats=7
    )
    ranx_s = _median_seconds(ranx_eval, repeats=5)
    kernel_s = _median_seconds(ranx_kernel, repeats=5)
    trec_s = _median_seconds(lambda: [e.evaluate(run) for e in evaluators], repeats=3)
    print(f"{N_QUERIES} queries, depth {DEPTH}, R@{KS} x (all, head, torso)")
    print(f"harness recall_at_k + 12 t-tests : {ours:8.3f} s (recall alone {ours_recall:.3f} s)")
    print(f"ranx.evaluate x 3 segments       : {ranx_s:8.3f} s   ratio ranx / harness = {ranx_s / ours:.1f}x")
    print(
        f"  same, on prebuilt typed lists  : {kernel_s:8.3f} s   ratio ranx kernel / harness = {kernel_s / ours:.1f}x"
    )
    print(f"pytrec_eval x 3 segments         : {trec_s:8.3f} s   ratio pytrec_eval / harness = {trec_s / ours:.1f}x")


if __name__ == "__main__":
    main()
