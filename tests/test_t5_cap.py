"""params.cap_per_item (paper Figure 4): at most N training instances per target item of a task, chosen by seed."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.generative.t5_adapter import GenerativeT5Adapter, cap_per_item
from harness.runner import Runner
from harness.protocol.submission import load_submission
from test_t5_toy import toy_view

REPO = Path(__file__).resolve().parents[1]


# ---- the selection itself ----------------------------------------------------------------------------------
def _items() -> np.ndarray:
    """Item 0 has 10 instances, item 1 has 3, item 2 has 1, item 3 none; interleaved."""
    return np.array([0, 1, 0, 2, 0, 1, 0, 0, 1, 0, 0, 0, 0], dtype=np.int32)


def test_at_most_cap_per_item_and_smaller_items_keep_everything():
    items = _items()
    kept = cap_per_item(items, 3, np.random.default_rng(0))
    assert np.all(np.diff(kept) > 0)  # ascending: the kept instances keep their original order
    counts = np.bincount(items[kept], minlength=4)
    assert counts.tolist() == [3, 3, 1, 0]
    assert set(np.flatnonzero(items != 0)) <= set(kept.tolist())  # items 1 and 2 are under the cap: all kept
    assert np.bincount(items[cap_per_item(items, 1, np.random.default_rng(0))]).tolist() == [1, 1, 1]
    assert len(cap_per_item(items, 100, np.random.default_rng(0))) == len(items)
    assert len(cap_per_item(np.zeros(0, np.int32), 5, np.random.default_rng(0))) == 0


def test_the_choice_is_deterministic_for_a_seed_and_differs_across_seeds():
    items = np.repeat(np.arange(20), 30)  # 30 instances each, 5 kept: C(30, 5) ways per item
    picks = [cap_per_item(items, 5, np.random.default_rng(seed)) for seed in (0, 0, 1)]
    np.testing.assert_array_equal(picks[0], picks[1])
    assert not np.array_equal(picks[0], picks[2])
    assert np.bincount(items[picks[2]]).tolist() == [5] * 20


def test_each_kept_instance_is_a_uniform_draw_within_its_item():
    """Over many seeds every instance of an over-cap item is kept about cap / n of the time (no position bias)."""
    items = np.zeros(10, dtype=np.int32)
    hits = np.zeros(10)
    for seed in range(2000):
        hits[cap_per_item(items, 3, np.random.default_rng(seed))] += 1
    np.testing.assert_allclose(hits / 2000, 0.3, atol=0.05)


# ---- in the adapter ----------------------------------------------------------------------------------------
def _adapter(tmp_path: Path, tasks=("rec", "search"), seed: int = 0, **params) -> GenerativeT5Adapter:
    sub = tmp_path / "sub"
    if not sub.exists():
        sub.mkdir()
        shutil.copy(REPO / "submissions" / "joint_t5" / "deepspeed.json", sub / "deepspeed.json")
    base = {"backbone": "t5-offline-tiny", "progress": False, "threads": 1}
    return GenerativeT5Adapter(params={**base, **params}, seed=seed, workdir=tmp_path / "w", tasks=frozenset(tasks),
                               submission_dir=sub)


@pytest.fixture(scope="module")
def backbone():
    from harness.generative.backbones import load_backbone
    from harness.generative.t5_adapter import tokenizer_corpus

    view = toy_view()
    return load_backbone("t5-offline-tiny", n_items=len(view.catalogue), tokenizer_texts=tokenizer_corpus(view), seed=0)


def _training_targets(adapter, backbone, view):
    adapter.backbone = backbone
    data, counts = adapter._training_data(view)
    return backbone.items.items_of(data.targets[:, 0]), counts, data


def test_search_cap_keeps_n_pairs_per_item_and_leaves_rec_alone(tmp_path, backbone):
    view = toy_view()  # search: 2 training queries per item, 12 items; rec: uncapped
    adapter = _adapter(tmp_path, cap_per_item={"search": 1})
    targets, counts, data = _training_targets(adapter, backbone, view)
    n_rec = len(view.rec_train)
    assert counts == {"rec": n_rec, "search": 12}
    assert np.bincount(targets[n_rec:], minlength=12).tolist() == [1] * 12
    np.testing.assert_array_equal(targets[:n_rec], view.rec_train.target)  # rec untouched, in order
    # Each kept pair is still a real (query, item) pair: its source is the encoded text of a query for that item.
    queries, items = view.search_train.pairs()
    encoded = adapter._encode("search", view.search_train)
    for source, item in zip(data.sources[n_rec:], targets[n_rec:]):
        assert any(encoded[q] == source for q in queries[items == item])
    assert adapter._cap_report == {"search": {"cap": 1, "instances": 24, "kept": 12, "dropped": 12,
                                              "items_capped": 12}}


def test_rec_cap_counts_per_target_item(tmp_path, backbone):
    view = toy_view()
    adapter = _adapter(tmp_path, tasks=("rec",), cap_per_item={"rec": 2})
    targets, counts, _ = _training_targets(adapter, backbone, view)
    before = np.bincount(view.rec_train.target, minlength=12)
    assert np.bincount(targets, minlength=12).tolist() == np.minimum(before, 2).tolist()
    report = adapter._cap_report["rec"]
    assert (report["kept"], report["dropped"]) == (int(np.minimum(before, 2).sum()), int(np.maximum(before - 2, 0).sum()))


def test_the_unit_seed_decides_which_pairs_are_kept(tmp_path, backbone):
    view = toy_view()
    runs = [_training_targets(_adapter(tmp_path, seed=s, tasks=("search",), cap_per_item={"search": 1}), backbone,
                              view)[2].sources for s in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # 12 items x 2 queries: the same choice under another seed has odds 2^-12


def test_uncapped_training_data_is_unchanged(tmp_path, backbone):
    view = toy_view()
    plain = _training_targets(_adapter(tmp_path), backbone, view)[2]
    huge = _training_targets(_adapter(tmp_path, cap_per_item={"search": 1000, "rec": 1000}), backbone, view)[2]
    assert plain.sources == huge.sources and np.array_equal(plain.targets, huge.targets)


def test_the_cap_is_recorded_and_changes_the_setup_hash(tmp_path):
    capped = _adapter(tmp_path, cap_per_item={"search": 5})
    assert capped.describe()["params"]["cap_per_item"] == {"search": 5}
    assert capped._setup_hash() != _adapter(tmp_path)._setup_hash()
    assert capped._setup_hash() != _adapter(tmp_path, cap_per_item={"search": 6})._setup_hash()


@pytest.mark.parametrize(
    "tasks, cap, message",
    [
        (("rec", "search"), {"serch": 5}, r"params\.cap_per_item has the key 'serch', not a task; allowed: rec, search"),
        (("rec", "search"), {"search": 0}, r"params\.cap_per_item\.search = 0; give an integer >= 1"),
        (("rec", "search"), {"search": -3}, r"params\.cap_per_item\.search = -3"),
        (("rec", "search"), {"rec": 2.5}, r"params\.cap_per_item\.rec = 2\.5; give an integer"),
        (("rec", "search"), {"rec": True}, r"params\.cap_per_item\.rec = True; give an integer"),
        (("rec", "search"), {"rec": "5"}, r"params\.cap_per_item\.rec = '5'; give an integer"),
        (("rec",), {"search": 5}, r"params\.cap_per_item caps \['search'\], but this submission trains only \['rec'\]"),
    ],
)
def test_bad_caps_name_the_key_and_value(tmp_path, tasks, cap, message):
    with pytest.raises(HarnessError, match=message):
        _adapter(tmp_path, tasks=tasks, cap_per_item=cap)


def test_cap_per_item_must_be_a_table(tmp_path):
    with pytest.raises(HarnessError, match=r"params\.cap_per_item = 5 must be a table"):
        _adapter(tmp_path, cap_per_item=5)


def test_a_capped_submission_gets_its_own_config_hash_and_workdir(tmp_path):
    """The runner keys the adapter's workdir by the config hash: a capped run never sees an uncapped checkpoint."""
    folders = {}
    for name, extra in (("plain", ""), ("capped", "cap_per_item = { search = 5 }\n")):
        folder = tmp_path / name / "joint_t5"
        shutil.copytree(REPO / "submissions" / "joint_t5", folder)
        config = folder / "config.toml"
        # into [params] itself: the file ends with [params.by_dataset.*] tables
        config.write_text(config.read_text().replace("[params]\n", "[params]\n" + extra, 1))
        folders[name] = load_submission(folder)
    assert folders["capped"].params["cap_per_item"] == {"search": 5}
    assert folders["plain"].config_hash != folders["capped"].config_hash
    ds = SimpleNamespace(name="sim2")
    workdirs = {name: Runner(sub, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache").workdir(ds, 0)
                for name, sub in folders.items()}
    assert workdirs["plain"] != workdirs["capped"]
