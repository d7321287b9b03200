"""The runner's check of returned rankings: catalogue items only, no duplicates, at most k, -1 only as padding."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data.views import RecExamples, SearchExamples
from harness.errors import HarnessError
from harness.protocol.checks import check_rankings

SEARCH = SearchExamples(np.array([10, 11, 12], dtype=np.int32), ["jazz", "rock", "folk"])
REC = RecExamples(
    offsets=np.array([0, 3, 6], dtype=np.int64),
    items=np.array([1, 2, 3, 4, 5, 6], dtype=np.int32),
    user=np.array([0, 1], dtype=np.int32),
    history_len=np.array([3, 2], dtype=np.int32),
    user_key=np.array(["alice", "bob"], dtype=object),
)


def check(returned, requests=SEARCH, k=4, n_items=8):
    return check_rankings(returned, requests=requests, task="search", k=k, n_items=n_items, adapter="my:Adapter")


def test_lists_are_padded_to_k():
    out = check([np.array([3, 1]), np.array([], dtype=int), [0, 1, 2, 3]])
    assert out.tolist() == [[3, 1, -1, -1], [-1, -1, -1, -1], [0, 1, 2, 3]]
    assert out.dtype == np.int64


def test_a_2d_array_with_trailing_padding_is_accepted():
    table = np.array([[1, 2, -1], [3, -1, -1], [4, 5, 6]])
    assert check(table, k=3).tolist() == table.tolist()


@pytest.mark.parametrize(
    "returned, message",
    [
        ([[1, 1], [2], [3]], "item 1 appears twice for search query 10 'jazz'"),
        ([[1], [9], [3]], "item id 9 for search query 11 'rock' is not in the catalogue"),
        ([[1], [2], [0, 1, 2, 3, 4]], "5 items for search query 12 'folk'; at most k=4"),
        ([[1], [2]], "returned 2 rankings for 3 requests"),
        ([[1], [2.5], [3]], "not a 1-D integer array"),
        (np.array([[1, -1, 2]] * 3), "padding (-1) before real items"),
        ([[1], [-3], [3]], "negative item id"),
        (None, "returned None"),
    ],
)
def test_violations_name_the_adapter_and_the_request(returned, message):
    with pytest.raises(HarnessError) as info:
        check(returned)
    assert "my:Adapter" in str(info.value)
    assert message in str(info.value)


def test_recommendation_requests_are_named_by_user():
    with pytest.raises(HarnessError, match="user bob"):
        check_rankings([[1], [2, 2]], requests=REC, task="rec", k=3, n_items=8, adapter="a:B")
