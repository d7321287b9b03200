"""Every registered measure (Recall, nDCG, reciprocal rank) against ir_measures and pytrec_eval, per segment, with
empty and short rankings; and the registry itself (one file per measure, codes unique, headline first)."""

import warnings

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics import HEADLINE_MEASURE, Measure, Metric, recall_at_k, register, registry, score
from tests.test_metrics_recall import SEGMENT_FILTERS, _as_trec_dicts, _csr, _padded, random_case

ir_measures = pytest.importorskip("ir_measures")

KS = (1, 2, 5, 10, 30)
CODES = sorted(registry())


def test_registry_ships_recall_ndcg_and_rr_headline_first():
    assert list(registry())[0] == HEADLINE_MEASURE == "R"
    assert {"R", "nDCG", "RR"} <= set(registry())
    for code, measure in registry().items():
        assert measure.code == code and measure.title and measure.description


def test_a_second_measure_under_a_known_code_is_refused():
    with pytest.raises(HarnessError, match="registered twice"):
        register(Measure("R", "Recall", "again", lambda hits, k: np.zeros(hits.n_queries), trec_eval="recall_{k}"))
    with pytest.raises(HarnessError, match="measure code"):
        register(Measure("n DCG", "x", "x", lambda hits, k: np.zeros(hits.n_queries), trec_eval="x"))


def test_hand_made_queries_ndcg_and_rr():
    is_head = np.zeros(10, bool)
    is_head[[0, 1]] = True
    rankings = _padded([[0, 2, 5], [9, 8, 7], [], [3, 1]], depth=3)
    offsets, items = _csr([[0, 5, 6], [7], [1, 2], [1, 3, 4, 5]])
    v = score(rankings, offsets, items, is_head, ks=[1, 3])
    d = lambda rank: 1 / np.log2(rank + 1)  # noqa: E731 - the discount at a 1-based rank
    nan = np.nan
    expected = {
        "RR@1": [1, 0, 0, 1],
        "RR@3": [1, 1 / 3, 0, 1],
        "RR@3/head": [1, nan, 0, 1 / 2],
        "RR@3/torso": [1 / 3, 1 / 3, 0, 1],
        "nDCG@1": [1, 0, 0, 1],
        "nDCG@3": [(1 + d(3)) / (1 + d(2) + d(3)), d(3) / 1, 0, (1 + d(2)) / (1 + d(2) + d(3))],
        "nDCG@3/head": [1, nan, 0, d(2)],
        "nDCG@3/torso": [d(3) / (1 + d(2)), d(3), 0, 1 / (1 + d(2) + d(3))],
    }
    for name, want in expected.items():
        np.testing.assert_allclose(v[Metric.parse(name)], want, rtol=1e-12, err_msg=name)


def _ir_measure(code, k):
    return ir_measures.parse_measure(f"{code}@{k}")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("segment", ["all", "head", "torso"])
@pytest.mark.parametrize("code", CODES)
def test_agrees_with_ir_measures(code, seed, segment):
    rankings, offsets, items, is_head = random_case(seed)
    ours = score(rankings, offsets, items, is_head, KS, measures=[code])
    run, qrels = _as_trec_dicts(rankings, offsets, items, SEGMENT_FILTERS[segment](is_head))
    theirs = {k: np.full(len(rankings), np.nan) for k in KS}
    by_measure = {_ir_measure(code, k): k for k in KS}
    for row in ir_measures.iter_calc(list(by_measure), qrels, run):
        theirs[by_measure[row.measure]][int(row.query_id[1:])] = row.value
    for k in KS:
        np.testing.assert_allclose(ours[Metric(code, k, segment)], theirs[k], rtol=1e-12, atol=1e-15,
                                   err_msg=f"{code}@{k}/{segment}")


@pytest.mark.parametrize("segment", ["all", "head", "torso"])
@pytest.mark.parametrize("code", CODES)
def test_agrees_with_pytrec_eval_and_keeps_empty_rankings_at_zero(code, segment):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rankings, offsets, items, is_head = random_case(seed=11, n_queries=400)
    ours = score(rankings, offsets, items, is_head, KS, measures=[code])
    name = registry()[code].trec_eval
    for k in KS:
        cut = rankings[:, :k]  # recip_rank has no cutoff: cut the run (a no-op for the measures that have one)
        run, qrels = _as_trec_dicts(cut, offsets, items, SEGMENT_FILTERS[segment](is_head))
        measure = name.format(k=k)
        family = measure.rsplit("_", 1)[0] if "{k}" in name else measure
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {f"{family}.{k}" if "{k}" in name else family})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = evaluator.evaluate({q: docs for q, docs in run.items() if docs})
        assert theirs, "pytrec_eval scored nothing"
        for q, values in theirs.items():
            assert ours[Metric(code, k, segment)][int(q[1:])] == pytest.approx(values[measure], abs=1e-12), (q, k)
        # pytrec_eval silently drops queries with an empty ranking: we keep them, at 0
        empty = [q for q in range(len(rankings)) if (rankings[q] < 0).all() and f"q{q}" in qrels]
        assert empty, "the random case should contain empty rankings"
        assert all(ours[Metric(code, k, segment)][q] == 0 for q in empty)


def test_recall_is_score_with_recall_alone_and_unchanged_by_other_measures():
    rankings, offsets, items, is_head = random_case(seed=3)
    everything = score(rankings, offsets, items, is_head, KS)
    recall = recall_at_k(rankings, offsets, items, is_head, KS)
    assert set(recall) == {m for m in everything if m.measure == "R"}
    for metric, values in recall.items():
        np.testing.assert_array_equal(values, everything[metric])  # bit for bit
    assert {m.measure for m in everything} == set(registry())


def test_unknown_measure_is_named():
    rankings, offsets, items, is_head = random_case(seed=3, n_queries=5)
    with pytest.raises(HarnessError, match="'XYZ'"):
        score(rankings, offsets, items, is_head, [1], measures=["XYZ"])
