"""Pieces the three simulations share: typed parameters, a version-stable random stream, the raw tables.

Every simulation is numpy generation from one data `seed`; each part of a dataset (recommendation data,
search data, the sweep's shuffle, the `sample` subset) draws from its own stream, so changing one
parameter never moves the random numbers another part sees. That is what keeps the target task's data
identical across a sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from harness.data.params import Param, parse_params
from harness.data.sources.base import SourceContext, SourceResult

# ---------------------------------------------------------------------------------------------------
# Parameters (Param and parse_params live in harness.data.params: dataset names are made canonical with them)

SEED = Param("seed", int, 0, 0, 2**32 - 1, help="the data seed (not the model's run seed)")
SAMPLE = Param("sample", float, 1.0, 0.0, 1.0, low_open=True,
               help="fraction of the target task's training data kept (Table 4's 100% and 65% rows)")


def rounded_count(fraction: float, total: int) -> int:
    """round(fraction * total) with halves rounded up (Python's round() rounds halves to even)."""
    return int(math.floor(fraction * total + 0.5))


# ---------------------------------------------------------------------------------------------------
# Random numbers

# Stream ids: each part of a simulation draws from its own stream of the data seed.
STREAM_REC, STREAM_SEARCH, STREAM_SHUFFLE, STREAM_SAMPLE, STREAM_LAYOUT, STREAM_EXTRA_TEST = 1, 2, 3, 4, 5, 6


class Stream:
    """Random draws built only from uniform doubles of a PCG64 generator seeded by SeedSequence.

    Why not Generator.integers / choice / permutation: NumPy's policy (NEP 19) lets those methods' output
    change between releases, and a dataset's fingerprint must be the same on every machine. PCG64 under
    SeedSequence and its uniform doubles are the part NumPy keeps stable, so every other draw is made
    here from uniforms with plain arithmetic.
    """

    def __init__(self, seed: int, stream: int) -> None:
        self._gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))

    def uniform(self, size: int) -> np.ndarray:
        return self._gen.random(size)

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        """Uniform integers in [low, high)."""
        drawn = np.floor(low + self.uniform(size) * (high - low)).astype(np.int64)
        return np.minimum(drawn, high - 1)  # guards the (measure-zero) rounding up to `high`

    def integer(self, low: int, high: int) -> int:
        return int(self.integers(low, high, 1)[0])

    def permutation(self, n: int) -> np.ndarray:
        return np.argsort(self.uniform(n), kind="stable")

    def weighted(self, weights: np.ndarray, size: int) -> np.ndarray:
        """`size` independent draws of indices with probability proportional to `weights`."""
        cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
        drawn = np.searchsorted(cdf, self.uniform(size) * cdf[-1], side="right")
        return np.minimum(drawn, len(cdf) - 1)

    def weighted_distinct(self, weights: np.ndarray, k: int) -> np.ndarray:
        """k distinct indices drawn one after another, each proportional to the weights left."""
        left = np.asarray(weights, dtype=np.float64).copy()
        picked = []
        for _ in range(k):
            index = int(self.weighted(left, 1)[0])
            picked.append(index)
            left[index] = 0.0
        return np.asarray(picked, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# Measures recorded in SourceResult.notes


def kl_divergence(p_counts: np.ndarray, q_counts: np.ndarray, pseudo_count: float = 1.0) -> float:
    """KL(P || Q) = sum_i P(i) log(P(i) / Q(i)), in nats, of two popularity count vectors over the same
    items, each smoothed by `pseudo_count` per item (so an item one task never shows is not infinite).

    The default add-one smoothing is the one the compiler's Table 3 statistics use
    (harness.data.stats.kl_divergence), so the raw-data numbers here and `data stats` are comparable.
    Kept here rather than imported so that generating a simulation does not pull in scipy."""
    p = np.asarray(p_counts, dtype=np.float64) + pseudo_count
    q = np.asarray(q_counts, dtype=np.float64) + pseudo_count
    p, q = p / p.sum(), q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def pair_percentage(histories: Sequence[Sequence[str]], qrels: Mapping[str, Sequence[str]]) -> float:
    """Share of co-occurring item pairs in user histories that are relevant to one same query (SIM3).

    Each history is taken as a set of distinct items; its pairs are all combinations of two of them; a
    pair counts when some query's relevant list holds both. The paper's example: history {i1, i2, i3}
    and qrels (q, {i2, i3}) give 1 of 3 pairs = 0.3333. Returns a fraction in [0, 1] (0 when no pairs).
    """
    queries_of: dict[str, set[str]] = {}
    for query, items in qrels.items():
        for item in items:
            queries_of.setdefault(item, set()).add(query)
    total = matched = 0
    for history in histories:
        distinct = sorted(set(history))
        for i, a in enumerate(distinct):
            for b in distinct[i + 1 :]:
                total += 1
                if queries_of.get(a, set()) & queries_of.get(b, set()):
                    matched += 1
    return matched / total if total else 0.0


# ---------------------------------------------------------------------------------------------------
# Raw tables

_SCHEMAS = {
    "raw_items": pa.schema([("item_key", pa.string()), ("title", pa.string()), ("text", pa.string()),
                            ("cluster", pa.int32())]),
    "raw_interactions": pa.schema([("user_key", pa.string()), ("item_key", pa.string()), ("ts", pa.int64()),
                                   ("seq", pa.int64())]),
    "raw_queries": pa.schema([("query_key", pa.string()), ("text", pa.string()), ("split", pa.string())]),
    "raw_qrels": pa.schema([("query_key", pa.string()), ("item_key", pa.string())]),
}


@dataclass
class RawTables:
    """The four raw tables of base.py as columns (lists or arrays), before they go into DuckDB."""

    items: dict[str, Sequence[Any]]
    interactions: dict[str, Sequence[Any]]
    queries: dict[str, Sequence[Any]]
    qrels: dict[str, Sequence[Any]]

    def write(self, con: duckdb.DuckDBPyConnection) -> None:
        for name, columns in (("raw_items", self.items), ("raw_interactions", self.interactions),
                              ("raw_queries", self.queries), ("raw_qrels", self.qrels)):
            schema = _SCHEMAS[name]
            arrow = pa.table({f.name: pa.array(list(columns[f.name]), type=f.type) for f in schema},
                             schema=schema)
            view = f"_sim_{name}"
            con.register(view, arrow)
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {view}")
            finally:
                con.unregister(view)


def interactions_from_histories(histories: Mapping[str, Sequence[str]]) -> dict[str, list]:
    """raw_interactions columns from ordered per-user histories: ts and seq are the position."""
    users, items, positions = [], [], []
    for user, history in histories.items():
        for position, item in enumerate(history):
            users.append(user)
            items.append(item)
            positions.append(position)
    return {"user_key": users, "item_key": items, "ts": positions, "seq": list(positions)}


def qrels_columns(qrels: Mapping[str, Sequence[str]]) -> dict[str, list]:
    pairs = [(q, item) for q, items in qrels.items() for item in items]
    return {"query_key": [q for q, _ in pairs], "item_key": [i for _, i in pairs]}


def sample_users(histories: dict[str, list[str]], fraction: float, seed: int) -> dict[str, list[str]]:
    """Keep round(fraction * users) users (at least one), chosen from the data seed's sample stream."""
    if fraction >= 1.0:
        return histories
    users = list(histories)
    keep = max(1, rounded_count(fraction, len(users)))
    chosen = set(Stream(seed, STREAM_SAMPLE).permutation(len(users))[:keep].tolist())
    return {u: h for i, (u, h) in enumerate(histories.items()) if i in chosen}


def key(prefix: str, index: int, total: int) -> str:
    """Zero-padded keys ('i07', 'u0123') so that keys sort like their numbers."""
    return f"{prefix}{index:0{len(str(max(total - 1, 0)))}d}"


# ---------------------------------------------------------------------------------------------------
# The Source


@dataclass
class Generated:
    tables: RawTables
    notes: dict[str, Any] = field(default_factory=dict)


class SimulationSource:
    """A Source (base.py) whose raw tables are generated from typed parameters; no file is read."""

    name: ClassVar[str]
    description: ClassVar[str]
    headline_k: ClassVar[int] = 10  # paper footnote 10: R@10 for the small simulated datasets
    params: ClassVar[tuple[Param, ...]]

    def resolve(self, raw: Mapping[str, str]) -> dict[str, int | float]:
        return parse_params(self.name, raw, self.params)

    def generate(self, params: Mapping[str, Any]) -> Generated:
        raise NotImplementedError

    def load(self, con: duckdb.DuckDBPyConnection, ctx: SourceContext) -> SourceResult:
        params = self.resolve(ctx.params)
        generated = self.generate(params)
        generated.tables.write(con)
        return SourceResult(files=[], params=dict(params), notes=generated.notes)
