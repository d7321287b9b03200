"""Item pairs and how often two items share a training context, vectorised for ML-25M-sized inputs.

A *context* is one unit of training data that can hold several items:
- recommendation: one user's training sequence (positions 1..t-2); two items co-occur in it when the user
  interacted with both, wherever and however often (we count users, not positions);
- search: one training query; two items co-occur in it when both are in its relevance set.

    co(a, b) = |{contexts c : a ∈ c and b ∈ c}|  =  (X X^T)[a, b]

for the binary item-by-context incidence matrix X. We never form the whole of X X^T when it is large: on
ML-25M-sized recommendation data it has sum_u |seq_u|^2 ≈ 3.7e9 terms, far beyond a minute on 2 cores.
`CooccurrenceCounter` answers co(a, b) for a given list of pairs instead, choosing per pair the cheapest
exact method (see its docstring). No library offers "X X^T at these entries" for sparse X, hence our own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from harness.data.views import RecExamples, SearchExamples
from harness.errors import HarnessError

# X X^T is formed outright when it has at most this many multiply-adds (sum over contexts of size^2), so
# at most as many stored entries of ~24 bytes (<= ~0.5 GB); then a pair costs one binary search. Above it,
# pairs are answered one by one (see CooccurrenceCounter).
MATERIALISE_BUDGET = 20_000_000
# Memory for the bit rows of the longest items (per call of CooccurrenceCounter.counts).
BITSET_BUDGET_BYTES = 256 * 2**20
# Elements expanded at once (pairs x row lengths): bounds temporaries to a few tens of MB.
CHUNK = 1 << 22


# ---- ragged arrays -------------------------------------------------------------------------------------
def ragged_positions(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments [starts[i], starts[i] + lengths[i]): (segment index, flat position) of every element."""
    lengths = np.asarray(lengths, dtype=np.int64)
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    first = np.cumsum(lengths) - lengths  # where each segment begins in the output
    within = np.arange(owner.size, dtype=np.int64) - first[owner]
    return owner, np.asarray(starts, dtype=np.int64)[owner] + within


# ---- incidence -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incidence:
    """Binary item-by-context matrix in CSR form: row i lists, sorted and without repeats, the contexts
    holding item i. `keys` = item * n_contexts + context, sorted: the flattened matrix, for binary search."""

    n_items: int
    n_contexts: int
    indptr: np.ndarray  # int64 [n_items + 1]
    indices: np.ndarray  # int64 contexts
    keys: np.ndarray  # int64

    @classmethod
    def from_pairs(cls, items: np.ndarray, contexts: np.ndarray, n_items: int, n_contexts: int) -> "Incidence":
        items = np.asarray(items, dtype=np.int64)
        contexts = np.asarray(contexts, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise HarnessError(f"incidence: item ids must lie in 0..{n_items - 1}, got {items.min()}..{items.max()}")
        keys = sorted_unique(items * n_contexts + contexts)  # drops repeats (a user seeing an item twice)
        rows = keys // n_contexts
        indptr = np.zeros(n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_items), out=indptr[1:])
        return cls(n_items, n_contexts, indptr, keys - rows * n_contexts, keys)

    @property
    def row_lengths(self) -> np.ndarray:
        """Contexts per item (e.g. users who interacted with it, queries it is relevant for)."""
        return np.diff(self.indptr)

    def matrix(self) -> sp.csr_matrix:
        data = np.ones(self.indices.size, dtype=np.int32)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n_items, self.n_contexts))


def rec_training_incidence(rec_train: RecExamples, n_items: int) -> Incidence:
    """Items by users: each user's training sequence is the longest of their training instances (history
    plus target), i.e. positions 1..t-2. Users without a training instance hold nothing."""
    n_users = len(rec_train.offsets) - 1
    if len(rec_train) == 0:
        return Incidence.from_pairs(np.zeros(0), np.zeros(0), n_items, max(n_users, 0))
    train_len = np.zeros(n_users, dtype=np.int64)
    np.maximum.at(train_len, rec_train.user.astype(np.int64), rec_train.history_len.astype(np.int64) + 1)
    user, pos = ragged_positions(rec_train.offsets[:-1], train_len)
    return Incidence.from_pairs(rec_train.items[pos], user, n_items, n_users)


def search_training_incidence(search_train: SearchExamples, n_items: int) -> Incidence:
    """Items by training queries: item i is in query q's column when i is relevant for q."""
    query, items = search_train.pairs()
    return Incidence.from_pairs(items, query, n_items, len(search_train))


# ---- co-occurrence counts ------------------------------------------------------------------------------
class CooccurrenceCounter:
    """co(a, b) = number of contexts holding both a and b, for arrays of pairs, exactly.

    Small data (sum over contexts of size^2 <= MATERIALISE_BUDGET): X X^T is formed once with scipy and
    each pair is one binary search in it. Otherwise, per pair, cheapest first:
      - both items among the longest rows ("long", kept as bit rows within BITSET_BUDGET_BYTES):
        popcount(bits[a] & bits[b]), n_contexts / 64 words;
      - one long: each context of the short item is one bit test in the long item's bit row;
      - neither long: each context of the shorter row is looked up (binary search) in the other's.
    co(a, a) is the number of contexts holding a (the diagonal of X X^T).
    """

    def __init__(self, incidence: Incidence, *, materialise_budget: int | None = None,
                 bitset_budget_bytes: int | None = None) -> None:
        """Budgets default to the module's MATERIALISE_BUDGET and BITSET_BUDGET_BYTES (read at call time)."""
        if materialise_budget is None:
            materialise_budget = MATERIALISE_BUDGET
        self.incidence = incidence
        self.bitset_budget_bytes = BITSET_BUDGET_BYTES if bitset_budget_bytes is None else bitset_budget_bytes
        context_sizes = np.bincount(incidence.indices, minlength=incidence.n_contexts).astype(np.int64)
        self.product_terms = int((context_sizes**2).sum())
        self.strategy = "product" if self.product_terms <= materialise_budget else "pairwise"
        self._product: tuple[np.ndarray, np.ndarray] | None = None

    def counts(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """int64 co(a[i], b[i]) for every i."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if a.shape != b.shape or a.ndim != 1:
            raise HarnessError(f"co-occurrence: pair arrays must be 1-D and of one length, got {a.shape} and {b.shape}")
        if a.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self.strategy == "product":
            return self._from_product(a, b)
        return self._pairwise(a, b, existence=False)

    def any(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """bool: co(a[i], b[i]) > 0. Faster than counts() on long rows: a common context of two popular
        items is usually found in the first block of bit words, and the pair is then dropped."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if self.strategy == "product" or a.size == 0:
            return self.counts(a, b) > 0
        return self._pairwise(a, b, existence=True) > 0

    # -- small data: look pairs up in X X^T ---------------------------------------------------------------
    def _from_product(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self._product is None:
            x = self.incidence.matrix()
            c = (x @ x.T).tocsr()
            c.sum_duplicates()
            c.sort_indices()
            rows = np.repeat(np.arange(c.shape[0], dtype=np.int64), np.diff(c.indptr))
            self._product = (rows * self.incidence.n_items + c.indices, c.data.astype(np.int64))
        keys, values = self._product
        return _lookup(keys, values, a * self.incidence.n_items + b)

    # -- large data: pair by pair -----------------------------------------------------------------------
    def _pairwise(self, a: np.ndarray, b: np.ndarray, *, existence: bool) -> np.ndarray:
        """Counts, or with `existence` any positive number where the count is positive."""
        inc = self.incidence
        lengths = inc.row_lengths
        involved = np.zeros(inc.n_items, dtype=bool)
        involved[a] = True
        involved[b] = True
        long_rows, bits = self._bit_rows(np.flatnonzero(involved), lengths)  # long_rows[item] = bit row or -1
        ra, rb = long_rows[a], long_rows[b]
        out = np.zeros(a.size, dtype=np.int64)

        both = np.flatnonzero((ra >= 0) & (rb >= 0))
        out[both] = (_any_and if existence else _popcount_and)(bits, ra[both], rb[both])

        one = np.flatnonzero((ra >= 0) ^ (rb >= 0))
        short = np.where(ra[one] >= 0, b[one], a[one])
        long_row = np.maximum(ra[one], rb[one])
        out[one] = _bit_tests(inc, bits, short, long_row)

        neither = np.flatnonzero((ra < 0) & (rb < 0))
        swap = lengths[a[neither]] > lengths[b[neither]]
        short = np.where(swap, b[neither], a[neither])
        other = np.where(swap, a[neither], b[neither])
        out[neither] = _membership(inc, short, other)
        return out

    def _bit_rows(self, involved: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bit rows for the longest involved items, as many as the budget holds, and only where a bit row
        beats binary search (rows longer than n_words / 8: a search costs ~25 scattered reads a context)."""
        inc = self.incidence
        n_words = (inc.n_contexts + 63) // 64
        capacity = self.bitset_budget_bytes // max(n_words * 8, 1)
        worth_it = involved[lengths[involved] > max(n_words // 8, 1)]
        chosen = worth_it[np.argsort(-lengths[worth_it], kind="stable")][:capacity]
        long_rows = np.full(inc.n_items, -1, dtype=np.int64)
        long_rows[chosen] = np.arange(chosen.size)
        bits = np.zeros((chosen.size, n_words), dtype=np.uint64)
        block = max(1, CHUNK // max(inc.n_contexts, 1))  # dense bool rows at a time
        for start in range(0, chosen.size, block):
            rows = chosen[start : start + block]
            dense = np.zeros((rows.size, n_words * 64), dtype=bool)
            owner, pos = ragged_positions(inc.indptr[rows], lengths[rows])
            dense[owner, inc.indices[pos]] = True
            bits[start : start + rows.size] = np.packbits(dense, axis=1, bitorder="little").view(np.uint64)
        return long_rows, bits


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique(values) for int64 keys. Written out because numpy 2's np.unique hashes, and on 24M
    distinct int64 keys that took 55 s where sort-and-compare takes 0.5 s."""
    out = np.sort(values)
    if out.size:
        out = out[np.concatenate([[True], out[1:] != out[:-1]])]
    return out


def _find(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in keys, found?) of each wanted key; keys sorted. The needles are searched in sorted order
    and put back: in-order binary searches hit the cache, about 3x faster than random order here."""
    order = np.argsort(wanted)
    pos_sorted = np.searchsorted(keys, wanted[order])
    pos = np.empty_like(pos_sorted)
    pos[order] = pos_sorted
    pos = np.minimum(pos, max(keys.size - 1, 0))
    found = keys[pos] == wanted if keys.size else np.zeros(wanted.size, dtype=bool)
    return pos, found


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[keys == wanted] for each wanted key (keys sorted), 0 where absent."""
    out = np.zeros(wanted.size, dtype=np.int64)
    for start in range(0, wanted.size, CHUNK):
        pos, hit = _find(keys, wanted[start : start + CHUNK])
        out[start : start + CHUNK][hit] = values[pos[hit]]
    return out


def chunks_by_length(lengths: np.ndarray, size: int = CHUNK):
    """Consecutive index ranges [start, end) whose lengths sum to at most `size` (or one index, if longer)."""
    cumulative = np.cumsum(lengths)
    start = 0
    while start < lengths.size:
        before = int(cumulative[start - 1]) if start else 0
        end = max(int(np.searchsorted(cumulative, before + size, side="right")), start + 1)
        yield start, end
        start = end


def _membership(inc: Incidence, short: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each pair, how many of `short`'s contexts also hold `other` (binary search in inc.keys)."""
    out = np.zeros(short.size, dtype=np.int64)
    lengths = inc.row_lengths[short]
    for start, end in chunks_by_length(lengths):
        owner, pos = ragged_positions(inc.indptr[short[start:end]], lengths[start:end])
        wanted = other[start:end][owner] * inc.n_contexts + inc.indices[pos]
        _, hit = _find(inc.keys, wanted)
        out[start:end] = np.bincount(owner[hit], minlength=end - start)
    return out


def _bit_tests(inc: Incidence, bits: np.ndarray, short: np.ndarray, long_row: np.ndarray) -> np.ndarray:
    """For each pair, how many of `short`'s contexts are set in the bit row `long_row`."""
    out = np.zeros(short.size, dtype=np.int64)
    lengths = inc.row_lengths[short]
    for start, end in chunks_by_length(lengths):
        owner, pos = ragged_positions(inc.indptr[short[start:end]], lengths[start:end])
        ctx = inc.indices[pos]
        word = bits[long_row[start:end][owner], ctx >> 6]
        hit = ((word >> (ctx & 63).astype(np.uint64)) & np.uint64(1)).astype(bool)
        out[start:end] = np.bincount(owner[hit], minlength=end - start)
    return out


def _popcount_and(bits: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    out = np.zeros(ra.size, dtype=np.int64)
    per_chunk = max(1, CHUNK // max(bits.shape[1], 1))
    for start in range(0, ra.size, per_chunk):
        sl = slice(start, start + per_chunk)
        out[sl] = np.bitwise_count(bits[ra[sl]] & bits[rb[sl]]).sum(axis=1, dtype=np.int64)
    return out


def _any_and(bits: np.ndarray, ra: np.ndarray, rb: np.ndarray, block_words: int = 64) -> np.ndarray:
    """1 where the bit rows share a set bit, else 0: word blocks in turn, pairs leave once one is found."""
    out = np.zeros(ra.size, dtype=np.int64)
    pending = np.arange(ra.size)
    for start in range(0, bits.shape[1], block_words):
        if pending.size == 0:
            break
        block = slice(start, start + block_words)
        for lo in range(0, pending.size, max(1, CHUNK // block_words)):
            idx = pending[lo : lo + CHUNK // block_words]
            out[idx] = (bits[ra[idx], block] & bits[rb[idx], block]).any(axis=1)
        pending = pending[out[pending] == 0]
    return out


# ---- the pairs each diagnostic looks at ----------------------------------------------------------------
@dataclass(frozen=True)
class Pairs:
    """Item pairs tagged with the test request (query) they come from."""

    query: np.ndarray  # int64
    a: np.ndarray  # int64
    b: np.ndarray  # int64

    def __len__(self) -> int:
        return self.query.size

    def take(self, mask_or_idx: np.ndarray) -> "Pairs":
        return Pairs(self.query[mask_or_idx], self.a[mask_or_idx], self.b[mask_or_idx])


def history_target_pairs(requests: RecExamples, targets: np.ndarray, rows: np.ndarray) -> Pairs:
    """(request, history item, target) for every history position of the requests `rows`: a history
    with a repeated item gives that pair once per position (the paper sums over positions i < t)."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = requests.history_len[rows].astype(np.int64)
    owner, pos = ragged_positions(requests.offsets[requests.user[rows]], lengths)
    query = rows[owner]
    return Pairs(query, requests.items[pos].astype(np.int64), np.asarray(targets, dtype=np.int64)[query])


def relevant_pairs(rel_offsets: np.ndarray, rel_items: np.ndarray) -> Pairs:
    """Every unordered pair {a, b}, a < b, of distinct relevant items of each query (repeats dropped)."""
    counts = np.diff(rel_offsets).astype(np.int64)
    query = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    span = int(np.max(rel_items, initial=0)) + 1
    keys = sorted_unique(query * span + np.asarray(rel_items, dtype=np.int64))
    query, items = keys // span, keys % span  # sorted by (query, item): distinct items per query
    n_per_query = np.bincount(query, minlength=counts.size)
    first_of_query = np.cumsum(n_per_query) - n_per_query
    position = np.arange(items.size) - first_of_query[query]
    partners = n_per_query[query] - 1 - position  # item at position p pairs with the later ones
    left, offset = ragged_positions(np.arange(items.size) + 1, partners)
    return Pairs(query[left], items[left], items[offset])
