"""One way to declare adapter [params] (harness.protocol.params): every adapter's keys and types checked alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from harness.baselines.biencoder import BiEncoderAdapter
from harness.baselines.bm25 import BM25Adapter
from harness.baselines.popularity import PopularityAdapter
from harness.baselines.sasrec import SASRecAdapter
from harness.baselines.toydata import toy_view
from harness.errors import HarnessError
from harness.protocol.params import parse_params

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Example:
    size: int = 4
    rate: float = 0.5
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    limit: int | None = None

    def check(self, fail) -> None:
        if self.size < 1:
            fail("size", "give an integer >= 1")


def parse(**table):
    return parse_params(Example, table, where="sub/config.toml")


def test_values_of_the_declared_types_are_taken_and_an_int_is_a_float():
    out = parse(size=8, rate=1, name="y", flag=True, mode="b", limit=3)
    assert out == Example(8, 1.0, "y", True, "b", 3) and isinstance(out.rate, float)
    assert parse() == Example()


@pytest.mark.parametrize(
    "table, message",
    [
        ({"sise": 3}, r"sub/config\.toml: unknown \[params\] key\(s\) \['sise'\]; allowed: size, rate"),
        ({"size": True}, r"sub/config\.toml: params\.size = True must be an int"),  # TOML true is not a number
        ({"rate": False}, r"params\.rate = False must be a float"),
        ({"size": 2.5}, r"params\.size = 2\.5 must be an int"),
        ({"name": 3}, r"params\.name = 3 must be a str"),
        ({"flag": 1}, r"params\.flag = 1 must be a bool"),
        ({"mode": "c"}, r"params\.mode = 'c'; allowed: 'a', 'b'"),
        ({"limit": "3"}, r"params\.limit = '3' must be an int"),
        ({"size": 0}, r"sub/config\.toml: params\.size = 0; give an integer >= 1"),  # the class's own check
    ],
)
def test_bad_keys_types_and_values_name_the_file_and_the_key(table, message):
    with pytest.raises(HarnessError, match=message):
        parse(**table)


def test_a_key_without_a_default_is_required():
    @dataclass(frozen=True)
    class Needs:
        which: Literal["rec", "search"]

    with pytest.raises(HarnessError, match=r"sub/config\.toml: params needs 'which'"):
        parse_params(Needs, {}, where="sub/config.toml")


@pytest.mark.parametrize(
    "adapter, params, message",
    [
        (PopularityAdapter, {"popularity": "rec", "noise": 1}, r"unknown \[params\] key\(s\) \['noise'\]"),
        (PopularityAdapter, {}, r"params needs 'popularity'"),
        (PopularityAdapter, {"popularity": "both"}, r"params\.popularity = 'both'; allowed: 'rec', 'search'"),
        (BM25Adapter, {"query_batch": True}, r"params\.query_batch = True must be an int"),
        (BM25Adapter, {"k1": -1}, r"params\.k1 = -1\.0; give a number >= 0"),
        (BiEncoderAdapter, {"batch_size": True}, r"params\.batch_size = True must be an int"),
        (BiEncoderAdapter, {"score_block": 0}, r"params\.score_block = 0; give an integer >= 1"),
        (SASRecAdapter, {"loss": "bpr"}, r"params\.loss = 'bpr'; allowed: 'ce', 'bce'"),
        (SASRecAdapter, {"batch_size": True}, r"params\.batch_size = True must be an int"),
        (SASRecAdapter, {"exclude_history": "yes"}, r"params\.exclude_history = 'yes'"),
        (SASRecAdapter, {"keep_within_se": 9}, r"params\.keep_within_se = 9\.0; give a number in \[0, 5\]"),
    ],
)
def test_every_shipped_adapter_checks_its_params_the_same_way(adapter, params, message, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    a = adapter(params=params, seed=0, workdir=tmp_path / "w", tasks=frozenset({"rec", "search"}), submission_dir=sub)
    view, _, _ = toy_view([[0, 1, 2, 3]] * 2, 5)
    with pytest.raises(HarnessError, match=message) as info:
        a.fit(view)
    assert str(sub / "config.toml") in str(info.value)  # the file at fault is named
