"""Canonical dataset names (harness.data.spec, harness.data.params): every spelling of the same parameters gives one
name, one file and one fingerprint; the names already in use keep theirs."""

from __future__ import annotations

import random
from dataclasses import fields

import pytest

from harness.data.compile import compile_dataset
from harness.data.params import SPLIT_PARAMS, Param
from harness.data.spec import DatasetSpec, name_from_slug
from harness.data.split_params import SplitParams
from harness.errors import HarnessError

# Fingerprints of names in use before names were canonical (bench/baselines/quick and docs); they must not move.
PINNED = {
    "sim1": "sha256:8ed2549d31d20a85463b7cea0655f30e802001cdd2862d09f1e24a4445e1cd8a",
    "sim2": "sha256:da45368efc49f106b37aac5111e146863274f40b65615ca8e6fc15cfa50d5d97",
    "sim2:q_match=0.5": "sha256:8eed408e8575ef3320afbd488355877e236646c8baaa12dcf5bdb71f4fa18677",
    "sim2:q_match=0": "sha256:e2652365ece6159a0ee3d3ff2776cfd5ce2447a713c932d0776ed5d9e31357c5",
    "sim3:pairs_in_qrels=0.25,seed=3": "sha256:a934a58eec1f3756f4f14a7fa223119c26e1c56273b3e25d685ede7ad8892f83",
}


@pytest.mark.parametrize("spellings, canonical", [
    (["sim2:q_match=0.5", "sim2:q_match=0.50", "sim2:q_match=.5", "sim2:q_match=+0.5", "sim2:q_match=5e-1"],
     "sim2:q_match=0.5"),
    (["sim2", "sim2:q_match=1", "sim2:q_match=1.0", "sim2:sample=1,seed=0", "sim2:valid_frac=0.10,split_seed=00"],
     "sim2"),
    (["sim2:sample=0.65,q_match=0.5", "sim2:q_match=0.5,sample=0.650", "sim2:q_match=0.5,sample=0.65"],
     "sim2:q_match=0.5,sample=0.65"),
    (["sim2:q_match=0", "sim2:q_match=0.0", "sim2:q_match=-0", "sim2:q_match=0e3"], "sim2:q_match=0"),
    (["sim1:shuffle=0.00001", "sim1:shuffle=1e-5", "sim1:shuffle=1E-05"], "sim1:shuffle=1e-05"),
    (["sim3:test_queries=1", "sim3:pairs_in_qrels=1", "sim3"], "sim3"),
    (["sim3:seed=03,pairs_in_qrels=0.250", "sim3:pairs_in_qrels=0.25,seed=3"], "sim3:pairs_in_qrels=0.25,seed=3"),
    (["ml-small:split_seed=1", "ml-small:split_seed=+01,head_fraction=0.010"], "ml-small:split_seed=1"),
    (["ml-25m:genome_min=0.80", "ml-25m"], "ml-25m"),
    (["ml-25m:genome_min=.9"], "ml-25m:genome_min=0.9"),
    (["mpd:max_slices=002"], "mpd:max_slices=2"),
    (["toy:min_user_interactions=4,zeta=.5"], "toy:min_user_interactions=4,zeta=.5"),  # unregistered: kept as is
])
def test_every_spelling_gives_one_canonical_name(spellings, canonical):
    names = {str(DatasetSpec.parse(s)) for s in spellings}
    assert names == {canonical}
    assert {DatasetSpec.parse(s).slug for s in spellings} == {DatasetSpec.parse(canonical).slug}
    assert name_from_slug(DatasetSpec.parse(canonical).slug) == canonical


def test_three_spellings_and_the_default_give_one_name_and_one_fingerprint(tmp_path):
    builds = {s: compile_dataset(s, dest=tmp_path / f"{i}.duckdb")
              for i, s in enumerate(["sim2:q_match=0.5", "sim2:q_match=0.50", "sim2:q_match=.5"])}
    assert {b.manifest["dataset"] for b in builds.values()} == {"sim2:q_match=0.5"}
    assert {b.fingerprint for b in builds.values()} == {PINNED["sim2:q_match=0.5"]}
    default = [compile_dataset(s, dest=tmp_path / f"d{i}.duckdb") for i, s in enumerate(["sim2", "sim2:q_match=1"])]
    assert {b.manifest["dataset"] for b in default} == {"sim2"}
    assert {b.fingerprint for b in default} == {PINNED["sim2"]}
    # through the cache: one file for every spelling
    cache = tmp_path / "cache"
    first = compile_dataset("sim2:q_match=.5", cache_dir=cache)
    again = compile_dataset("sim2:q_match=0.50", cache_dir=cache)
    assert again.skipped and again.path == first.path and first.path.name == "sim2__q_match-0.5.duckdb"


@pytest.mark.parametrize("name", ["sim1", "sim2:q_match=0", "sim3:pairs_in_qrels=0.25,seed=3"])
def test_names_in_use_keep_their_fingerprints(tmp_path, name):
    assert compile_dataset(name, dest=tmp_path / "x.duckdb").fingerprint == PINNED[name]


@pytest.mark.parametrize("text, fragments", [
    ("sim2:q_match=half", ["dataset sim2:q_match=half", "q_match='half'", "a number in [0, 1]"]),
    ("sim2:q_match=1.5", ["q_match='1.5'", "[0, 1]"]),
    ("sim2:q_match=nan", ["q_match='nan'"]),
    ("sim2:sample=0", ["sample='0'", "(0, 1]"]),
    ("sim1:seed=1.0", ["seed='1.0'", "an integer in [0, 4294967295]"]),
    ("sim2:shuffle=0.5", ["unknown parameter 'shuffle'", "sim2 takes q_match, sample, seed",
                          "every dataset takes split_seed"]),
    ("ml-small:genome_min=0.5", ["unknown parameter 'genome_min'", "ml-small takes no parameters of its own"]),
    ("mpd:max_slices=0", ["max_slices='0' is not a positive integer"]),
    ("logs:format=csv", ["unknown parameter 'format'", "logs takes no parameters"]),
    ("ml-small:split_seed=abc", ["split_seed='abc' is not a valid int"]),
    ("sim2:q_match=0.5,q_match=0.6", ["parameter 'q_match' given twice"]),
    ("sim2:q_match", ["'q_match' is not of the form key=value"]),
])
def test_unknown_parameters_and_bad_values_are_named(text, fragments):
    with pytest.raises(HarnessError) as caught:
        DatasetSpec.parse(text)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_direct_construction_is_canonical_too():
    """experiments.context builds DatasetSpec(name, merged params) itself."""
    assert str(DatasetSpec("sim3", (("test_queries", "10"), ("pairs_in_qrels", "0.50")))) == \
        "sim3:pairs_in_qrels=0.5,test_queries=10"
    assert DatasetSpec("sim2", (("q_match", "1.00"),)) == DatasetSpec.parse("sim2")


def test_split_param_declarations_match_the_compiler():
    assert {p.name: p.default for p in SPLIT_PARAMS} == {f.name: f.default for f in fields(SplitParams)}


def test_canonical_numbers_read_back_exactly():
    param = Param("x", float, 0.5, 0.0, 1.0)
    rng = random.Random(7)
    for value in [rng.random() for _ in range(500)] + [1e-7, 0.1, 1 / 3, 0.25, 1.0]:
        text = param.format(value)
        assert param.parse("t", text) == value and param.format(param.parse("t", text)) == text
    for level in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0):  # the experiments' own spelling (f"{level:g}") is canonical
        assert param.format(level) == f"{level:g}"
