"""Metric names are values: str() and parse() are inverses, and bad names are refused by name."""

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics import Metric, standard_metrics


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
