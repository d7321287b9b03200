"""Metric names are values: str() and parse() are inverses, and bad names are refused by name."""

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics import Metric, metrics_block, seed_average, standard_metrics, summarise


@pytest.mark.parametrize(
    "text, metric",
    [("R@30", Metric("R", 30)), ("R@30/head", Metric("R", 30, "head")), ("R@1/torso", Metric("R", 1, "torso"))],
)
def test_parse_and_str_are_inverses(text, metric):
    assert Metric.parse(text) == metric
    assert str(metric) == text
    assert Metric.parse(str(metric)) == metric


@pytest.mark.parametrize("bad", ["R@0", "R@030", "R30", "R@30/all", "R@30/tail", "XYZ@10", "R@-1", "R@1.5", "", "R@30/"])
def test_parse_rejects_and_names_the_string(bad):
    with pytest.raises(HarnessError, match=repr(bad).replace("[", r"\[")):
        Metric.parse(bad)


def test_constructor_checks_values_and_normalises_numpy_ints():
    assert Metric("R", np.int64(10)) == Metric("R", 10)
    assert hash(Metric("R", np.int64(10))) == hash(Metric("R", 10))
    assert type(Metric("R", np.int64(10)).k) is int
    for args in [("R", 0), ("R", True), ("R", 2.0), ("X", 3), ("R", 3, "tail")]:
        with pytest.raises(HarnessError):
            Metric(*args)


def test_standard_metrics_order_is_stable_and_sorts_like_metrics():
    metrics = standard_metrics([10, 1, 10, 5])
    assert [str(m) for m in metrics] == [
        "R@1",
        "R@1/head",
        "R@1/torso",
        "R@5",
        "R@5/head",
        "R@5/torso",
        "R@10",
        "R@10/head",
        "R@10/torso",
    ]
    assert sorted(metrics) == metrics
    with pytest.raises(HarnessError):
        standard_metrics([])


def test_summarise_and_metrics_block_over_seeds():
    m, h = Metric("R", 1), Metric("R", 1, "head")
    per_seed = {
        1: {m: np.array([1.0, 0.0, 0.5]), h: np.array([np.nan, 0.0, 1.0])},
        0: {m: np.array([0.0, 0.0, 0.5]), h: np.array([np.nan, 1.0, 1.0])},
    }
    assert summarise(per_seed[0]) == {m: (0.5 / 3, 3), h: (1.0, 2)}
    block = metrics_block(per_seed)
    assert list(block) == ["R@1", "R@1/head"]
    assert block["R@1"] == {
        "mean": pytest.approx((1.5 / 3 + 0.5 / 3) / 2),
        "n": 3,
        "per_seed": {"0": pytest.approx(0.5 / 3), "1": pytest.approx(0.5)},
    }
    assert block["R@1/head"] == {"mean": 0.75, "n": 2, "per_seed": {"0": 1.0, "1": 0.5}}
    averaged = seed_average(per_seed)
    np.testing.assert_allclose(averaged[h], [np.nan, 0.5, 1.0])
    # the mean of the seed-averaged values is the record's mean
    assert np.nanmean(averaged[m]) == pytest.approx(block["R@1"]["mean"])


def test_metrics_block_of_an_empty_segment_has_null_mean_and_no_seeds_gives_nothing():
    t = Metric("R", 1, "torso")
    assert metrics_block({0: {t: np.array([np.nan, np.nan])}}) == {
        "R@1/torso": {"mean": None, "n": 0, "per_seed": {"0": None}}
    }
    assert metrics_block({}) == {}


def test_metrics_block_refuses_seeds_that_scored_different_queries():
    h = Metric("R", 1, "head")
    with pytest.raises(HarnessError, match="seed 1 and seed 0"):
        metrics_block({0: {h: np.array([np.nan, 1.0])}, 1: {h: np.array([1.0, 1.0])}})
