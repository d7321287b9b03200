"""The compile's one big sort: every kept interaction in (user_id, ts, seq, item_id) order, with its position.

Why numpy and not DuckDB's ORDER BY (or polars): at ML-25M size (25M rows) DuckDB sorts the four-column key in
about 12.6 CPU-s and polars in 7.6, while numpy argsorts one packed uint64 (user_id, ts - min ts) in about 2
(bench/compile_floor.py measures all three). The packed key covers (user_id, ts); rows that tie on it (the same
user at the same second) are few and are put in (seq, item_id) order afterwards, run by run. The result is the
order the SQL gave, so the compiled tables and fingerprints do not change. Keys that do not fit in 64 bits
(user_id bits + the bits of the ts range: can_pack) or a NULL seq are sorted in SQL by the caller instead.
"""

from __future__ import annotations

import numpy as np


def _ts_bits(ts: np.ndarray) -> int:
    return (int(ts.max()) - int(ts.min())).bit_length() if len(ts) else 0


def can_pack(user: np.ndarray, ts: np.ndarray) -> bool:
    """Whether (user, ts - min ts) fits one uint64: what sequence_order needs."""
    return not len(user) or int(user.max()).bit_length() + _ts_bits(ts) <= 64


def sequence_order(user: np.ndarray, ts: np.ndarray, seq: np.ndarray | None, item: np.ndarray) -> np.ndarray:
    """Row indices in ascending (user, ts, seq, item) order; can_pack(user, ts) must hold.

    `user` and `item` are non-negative dense ids, `ts` int64, `seq` int64 without NULLs (None: the source has
    none, so ties fall to item alone). Rows equal in all four keys may come in any order: they are the same row
    of the output."""
    if not can_pack(user, ts):
        raise ValueError("(user, ts) does not fit one uint64 key; sort in SQL")
    n = len(user)
    if n == 0:
        return np.empty(0, np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    low, ts_bits = int(ts.min()), _ts_bits(ts)
    key = user.astype(np.uint64) << np.uint64(ts_bits)
    key |= (ts - low).astype(np.uint64)  # ts - low >= 0 and < 2**ts_bits
    order = np.argsort(key)  # not stable: ties are settled below, by (seq, item)
    sorted_key = key[order]
    del key
    tie = sorted_key[1:] == sorted_key[:-1]
    if tie.any():
        in_run = np.zeros(n, bool)
        in_run[1:] |= tie
        in_run[:-1] |= tie
        at = np.flatnonzero(in_run)  # the positions of every tied row, ascending; each run is contiguous
        rows = order[at]
        tie_keys = (item[rows],) if seq is None else (item[rows], seq[rows])
        # lexsort is by the last key first: runs (their packed key) stay where they are, rows inside a run go by
        # (seq, item)
        order[at] = rows[np.lexsort((*tie_keys, sorted_key[at]))]
    return order


def positions(user_sorted: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """1..length within each user of rows sorted by user; `lengths` per user id (0..n_users-1) must match the
    rows (the caller's per-user counts), or this raises: a misalignment is an error, never a silent shift."""
    counts = np.bincount(user_sorted, minlength=len(lengths))
    if len(counts) != len(lengths) or not np.array_equal(counts, lengths):
        raise RuntimeError("internal error: sorted interactions and users' lengths disagree")
    width = np.int32 if len(user_sorted) < 2**31 else np.int64  # half the memory in the common case
    starts = (np.cumsum(lengths, dtype=np.int64) - lengths).astype(width)
    pos = np.arange(len(user_sorted), dtype=width)
    pos -= np.repeat(starts, lengths)
    pos += 1
    return pos.astype(np.int32, copy=False)
