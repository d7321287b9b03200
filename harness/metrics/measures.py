"""Metric names are values (after ir_measures): `Metric("R", 30, "head")` prints as `R@30/head` and
`Metric.parse("R@30/head")` gives it back. That string is the key in result records, the column name in
per-query Parquet files and the column on the leaderboard; there is no second table of labels.

Measures are plugins: each is one file in `harness/metrics/builtin/` that calls `register(Measure(...))` under its
ir_measures name ("R", "nDCG", "RR"); `registry()` imports that folder's modules the first time it is asked, so a
new measure is a new file there and nothing else (docs/result-format.md, "Measures"). Recall is the headline, as
in the paper; the others are reported beside it and never enter the significance tests.

Segments (the paper's Table 5): `all` counts every relevant item of a query; `head` only the query's
relevant items that are in the task's head (top 1% most popular training items); `torso` only the rest.
The `all` segment has no suffix: `R@30` is the one spelling of it.
"""

from __future__ import annotations

import importlib
import numbers
import pkgutil
import re
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from harness.errors import HarnessError

SEGMENTS: tuple[str, ...] = ("all", "head", "torso")
HEADLINE_MEASURE = "R"  # the paper's Recall@K: significance tests, the gate's default and the leaderboard's first view
_BUILTIN_PACKAGE = "harness.metrics.builtin"


# Position of a relevant item missing from the ranking: beyond every cutoff, including K > depth.
ABSENT = np.iinfo(np.int64).max


@dataclass(frozen=True)
class SegmentHits:
    """Every (query, relevant item) pair, seen from one segment: the query of each pair and the position (0 = top) at
    which its item first appears in that query's ranking; ABSENT (beyond every cutoff) when it does not, or when the
    item is outside the segment (so it is never a hit). `n_relevant` counts the query's relevant items in the
    segment: a measure's denominator comes from it, never from the number of pairs. What every measure is computed
    from."""

    n_queries: int
    pair_query: np.ndarray  # int64 [pairs]
    position: np.ndarray  # int64 [pairs]
    n_relevant: np.ndarray  # float64 [n_queries]: the query's relevant items in this segment

    def per_query_sum(self, weights: np.ndarray) -> np.ndarray:
        """float64 [n_queries]: the sum of a per-pair value over each query's pairs."""
        return np.bincount(self.pair_query, weights=weights, minlength=self.n_queries)

    def ratio(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        """numerator / denominator per query, NaN where the denominator is 0 (a query outside the segment)."""
        out = np.full(numerator.shape, np.nan)
        np.divide(numerator, denominator, out=out, where=denominator > 0)
        return out

    def per_query_max(self, values: np.ndarray) -> np.ndarray:
        """float64 [n_queries]: the largest of a per-pair value (>= 0, one per pair) over each query's pairs; NaN for a
        query outside the segment."""
        best = np.zeros(self.n_queries)
        np.maximum.at(best, self.pair_query, values)
        best[self.n_relevant == 0] = np.nan
        return best


@dataclass(frozen=True)
class Measure:
    """One ranking measure with binary relevance, computed per query from where each relevant item first appears.

    `per_query(hits, k)` gets one segment's (query, relevant item) pairs (SegmentHits) and
    returns float64 [n_queries], NaN for the queries with no relevant item in the segment: SegmentHits.ratio and
    SegmentHits.per_query_max give that for free. The measure's tests check it (tests/test_metrics_scoring.py). `code` is the ir_measures name, which the tests also use to check the measure against ir_measures
    and `trec_eval` names pytrec_eval's (with its cutoff suffix, e.g. "ndcg_cut_{k}")."""

    code: str
    title: str  # what the leaderboard calls it, e.g. "Recall"
    description: str
    per_query: Callable[[SegmentHits, int], np.ndarray]
    trec_eval: str


_REGISTRY: dict[str, Measure] = {}
_LOADED = False
_ORDERED: dict[str, Measure] | None = None  # registry()'s answer, kept until the next register()


def register(measure: Measure) -> Measure:
    """Add a measure under its code; a second measure under one code is an error (two files claim one name)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", measure.code):
        raise HarnessError(f"measure code {measure.code!r} must be letters, digits and _, starting with a letter")
    known = _REGISTRY.get(measure.code)
    if known is not None and known.per_query is not measure.per_query:
        raise HarnessError(f"measure {measure.code!r} is registered twice ({known.per_query.__module__} and "
                           f"{measure.per_query.__module__})")
    global _ORDERED
    _REGISTRY[measure.code] = measure
    _ORDERED = None
    return measure


def measure_order(code: str) -> tuple[bool, str]:
    """The order measures are listed in everywhere: the headline first, then by code, case aside (nDCG before RR)."""
    return code != HEADLINE_MEASURE, code.casefold()


def registry() -> dict[str, Measure]:
    """{code: Measure}, the headline first, then by code. Loads every module of harness/metrics/builtin once."""
    global _LOADED, _ORDERED
    if not _LOADED:
        package = importlib.import_module(_BUILTIN_PACKAGE)  # a plugin folder: loaded by name, not imported above
        for module in sorted(info.name for info in pkgutil.iter_modules(package.__path__)):
            importlib.import_module(f"{_BUILTIN_PACKAGE}.{module}")
        _LOADED = True
    if _ORDERED is None:  # Metric() asks on every construction: sort once
        _ORDERED = {code: _REGISTRY[code] for code in sorted(_REGISTRY, key=measure_order)}
    return dict(_ORDERED)

_PATTERN = re.compile(r"^(?P<measure>[A-Za-z][A-Za-z0-9_]*)@(?P<k>[1-9][0-9]*)(?:/(?P<segment>[a-z]+))?$")


@dataclass(frozen=True, order=True)
class Metric:
    """One measure at one cutoff over one segment of relevant items."""

    measure: str
    k: int
    segment: str = "all"

    def __post_init__(self) -> None:
        if self.measure not in registry():
            known = ", ".join(registry())
            raise HarnessError(f"metric measure {self.measure!r} is unknown (known: {known})")
        object.__setattr__(self, "k", check_cutoff(self.k))  # numpy integers become int, so equal metrics hash equal
        if self.segment not in SEGMENTS:
            raise HarnessError(f"metric segment {self.segment!r} is unknown (known: {', '.join(SEGMENTS)})")

    def __str__(self) -> str:
        base = f"{self.measure}@{self.k}"
        return base if self.segment == "all" else f"{base}/{self.segment}"

    @classmethod
    def parse(cls, text: str) -> "Metric":
        """Inverse of str(): only the canonical spelling is accepted, so every metric has one key."""
        if not isinstance(text, str):
            raise HarnessError(f"metric name {text!r} is not a string")
        match = _PATTERN.match(text)
        if match is None:
            raise HarnessError(
                f"metric name {text!r} is not of the form MEASURE@K or MEASURE@K/SEGMENT (e.g. 'R@30/head')"
            )
        segment = match["segment"]
        if segment == "all":
            raise HarnessError(f"metric name {text!r}: write the 'all' segment without a suffix ({text[:-4]!r})")
        try:
            return cls(match["measure"], int(match["k"]), segment or "all")
        except HarnessError as err:
            raise HarnessError(f"metric name {text!r}: {err}") from None


def standard_metrics(ks: Iterable[int], measure: str = HEADLINE_MEASURE) -> list[Metric]:
    """Every cutoff (ascending, deduplicated) x (all, head, torso), in that order."""
    ks = [check_cutoff(k) for k in ks]
    if not ks:
        raise HarnessError("standard_metrics: no cutoffs given")
    return [Metric(measure, k, segment) for k in sorted(set(ks)) for segment in SEGMENTS]


def check_cutoff(k: object) -> int:
    """k as a plain int; HarnessError unless it is a positive integer (numpy integers accepted)."""
    if type(k) is int and k >= 1:  # the common case, without the abstract-class check (the leaderboard makes 10^4)
        return k
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise HarnessError(f"metric cutoff k={k!r} must be a positive integer")
    return int(k)
