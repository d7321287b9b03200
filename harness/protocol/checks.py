"""The runner's check of what an adapter returned: catalogue items only, no duplicates, at most k."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.data.views import RecExamples, SearchExamples, Task
from harness.errors import HarnessError


def _describe_request(task: Task, requests: RecExamples | SearchExamples, i: int) -> str:
    if isinstance(requests, SearchExamples):
        return f"search query {requests.query_id[i]} {requests.text[i]!r}"
    user_key = requests.user_key[requests.user[i]] if requests.user_key is not None else requests.user[i]
    return f"recommendation request for user {user_key} (history of {requests.history_len[i]} items)"


def check_rankings(
    returned: Sequence[np.ndarray] | np.ndarray,
    *,
    requests: RecExamples | SearchExamples,
    task: Task,
    k: int,
    n_items: int,
    adapter: str,
) -> np.ndarray:
    """Return the rankings as an int64 array [n_requests, k] padded with -1, or raise naming the offender."""
    n = len(requests)
    where = f"adapter {adapter} ({task})"
    table = _as_padded_table(returned, n=n, k=k, where=where, describe=lambda i: _describe_request(task, requests, i))
    # Vectorised checks over the whole table; the first offending row is named.
    valid = table >= 0
    out_of_range = valid & (table >= n_items)
    if out_of_range.any():
        i, j = np.argwhere(out_of_range)[0]
        raise HarnessError(
            f"{where}: item id {table[i, j]} for {_describe_request(task, requests, i)} is not in the catalogue "
            f"(ids 0..{n_items - 1})"
        )
    ordered = np.sort(table, axis=1)
    dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if dup.any():
        i, j = np.argwhere(dup)[0]
        raise HarnessError(f"{where}: item {ordered[i, j]} appears twice for {_describe_request(task, requests, i)}")
    return table


def _as_padded_table(returned, *, n: int, k: int, where: str, describe) -> np.ndarray:
    """Rows of item ids -> int64 [n, k]; -1 is padding and may only trail."""
    if returned is None:
        raise HarnessError(f"{where}: retrieve() returned None")
    if isinstance(returned, np.ndarray) and returned.ndim == 2:
        if not np.issubdtype(returned.dtype, np.integer):
            raise HarnessError(f"{where}: rankings must be integer item ids, got dtype {returned.dtype}")
        if returned.shape[0] != n:
            raise HarnessError(f"{where}: returned {returned.shape[0]} rankings for {n} requests")
        rows_2d = returned.astype(np.int64)
        if rows_2d.shape[1] > k:
            extra = (rows_2d[:, k:] != -1).any(axis=1)
            if extra.any():
                i = int(np.argmax(extra))
                raise HarnessError(f"{where}: more than k={k} items for {describe(i)}")
            rows_2d = rows_2d[:, :k]
        table = np.full((n, k), -1, dtype=np.int64)
        table[:, : rows_2d.shape[1]] = rows_2d
    else:
        try:
            rows = list(returned)
        except TypeError as exc:
            raise HarnessError(f"{where}: retrieve() must return a sequence of arrays, got {type(returned).__name__}") from exc
        if len(rows) != n:
            raise HarnessError(f"{where}: returned {len(rows)} rankings for {n} requests")
        table = np.full((n, k), -1, dtype=np.int64)
        for i, row in enumerate(rows):
            arr = np.asarray(row)
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise HarnessError(
                    f"{where}: ranking for {describe(i)} is not a 1-D integer array (dtype {arr.dtype}, shape {arr.shape})"
                )
            if arr.size > k and (arr[k:] != -1).any():
                raise HarnessError(f"{where}: {int((arr != -1).sum())} items for {describe(i)}; at most k={k}")
            arr = arr[:k]
            table[i, : arr.size] = arr
    pad = table == -1
    misplaced = pad[:, :-1] & ~pad[:, 1:]
    if misplaced.any():
        i = int(np.argwhere(misplaced)[0][0])
        raise HarnessError(f"{where}: ranking for {describe(i)} has padding (-1) before real items")
    if (table < -1).any():
        i = int(np.argwhere(table < -1)[0][0])
        raise HarnessError(f"{where}: negative item id in the ranking for {describe(i)}")
    return table
