"""DiffRec: the schedule, learning a planted co-occurrence, params, determinism, ranking rule, the runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.baselines.diffrec import DiffRecAdapter, DiffRecParams, Schedule, make_betas
from harness.baselines.toydata import toy_view
from harness.cli import main
from harness.data.compile import build_dataset
from harness.data.views import SearchExamples
from harness.errors import HarnessError
from harness.protocol.checks import check_rankings
from harness.protocol.submission import load_submission

REPO = Path(__file__).resolve().parents[1]
# Small and fast; threads=1: the test machine is shared.
TINY = {"dims": [64], "steps": 5, "batch_size": 32, "valid_k": 10, "threads": 1, "min_epoch_steps": 1,
        "max_epochs": 2, "patience_steps": 100}


def _fit(view, tmp_path: Path, seed: int = 0, **params):
    a = DiffRecAdapter(params={**TINY, **params}, seed=seed, workdir=tmp_path, tasks=frozenset({"rec"}),
                       submission_dir=tmp_path)
    a.fit(view)
    return a


def _recall(rankings, targets) -> float:
    return float(np.mean([t in r for t, r in zip(targets, rankings)]))


# ---- the schedule ------------------------------------------------------------------------------------------
def test_linear_variance_schedule_matches_the_authors_formula():
    p = {"noise_scale": 0.005, "noise_min": 0.005, "noise_max": 0.01, "steps": 40, "noise_schedule": "linear-var",
         "beta_fixed": False}
    betas = make_betas(p)
    var = np.linspace(0.005 * 0.005, 0.005 * 0.01, 40)
    np.testing.assert_allclose(1 - np.cumprod(1 - betas), var, rtol=1e-9)  # 1 - abar_t is the linear variance
    fixed = make_betas({**p, "beta_fixed": True})
    assert fixed[0] == 1e-5 and np.array_equal(fixed[1:], betas[1:])
    lin = make_betas({**p, "noise_schedule": "linear"})
    np.testing.assert_allclose(lin, var)
    s = Schedule(fixed)
    assert s.abar.shape == (40,) and (np.diff(s.abar) < 0).all()
    # the posterior mean of q(x_{t-1} | x_t, x0) at a noiseless x_t = sqrt(abar_t) x0 is sqrt(abar_{t-1}) x0
    np.testing.assert_allclose(s.coef1 + s.coef2 * np.sqrt(s.abar), np.sqrt(s.abar_prev), rtol=1e-9)


def test_dims_are_read_as_the_authors_do():
    from harness.baselines.diffrec import build_denoiser

    net = build_denoiser(50, [8, 16], emb_size=10, dropout=0.5, norm=False)
    shapes = [tuple(layer.weight.shape) for layer in [*net.in_layers, *net.out_layers]]
    assert shapes == [(16, 60), (8, 16), (16, 8), (50, 16)]  # n+emb -> 16 -> 8 -> 16 -> n


# ---- learning a planted pattern ----------------------------------------------------------------------------
def planted_pairs(n_pairs: int = 30, n_users: int = 300, full_pairs: int = 4, seed: int = 0) -> list[list[int]]:
    """Items 2i and 2i+1 always come together. Each user: some whole pairs, then a, c, partner(a), partner(c):
    validation asks for partner(a) given ... a, c; the test asks for partner(c) given ... a, c, partner(a)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        pairs = rng.choice(n_pairs, size=full_pairs + 2, replace=False)
        s: list[int] = []
        for q in pairs[:-2]:
            s.extend(rng.permutation([2 * q, 2 * q + 1]).tolist())
        a, c = (2 * q + int(rng.integers(2)) for q in pairs[-2:])
        s += [a, c, a ^ 1, c ^ 1]
        seqs.append(s)
    return seqs


@pytest.fixture(scope="module")
def pairs_view():
    return toy_view(planted_pairs(), 60)


def test_diffrec_learns_the_planted_pairs_far_above_popularity(pairs_view, tmp_path):
    view, test, targets = pairs_view
    a = _fit(view, tmp_path, max_epochs=30, patience_steps=10_000, min_epoch_steps=10, lr=3e-3)
    learned = _recall(a.retrieve("rec", test, 10), targets)
    pop = np.argsort(-view.catalogue.pop_rec, kind="stable")
    popular = _recall([[i for i in pop if i not in set(test.history(j))][:10] for j in range(len(test))], targets)
    assert popular < 0.35  # chance is about 10/50
    assert learned >= 0.9, (learned, popular)
    assert a.describe()["best_epoch"] >= 1


# ---- params ------------------------------------------------------------------------------------------------
def test_params_unknown_key_wrong_type_and_range_are_named(tmp_path):
    view, _, _ = toy_view([[0, 1, 2, 3]] * 2, 5)
    cases = [({"epochs": 3}, "epochs"), ({"lr": True}, "lr"), ({"steps": "5"}, "steps"), ({"dims": [0]}, "dims"),
             ({"mean_type": "v"}, "mean_type"), ({"noise_min": 0.02}, "noise_min"),
             ({"sampling_steps": 9}, "sampling_steps"), ({"dropout": 1.0}, "dropout")]
    for bad, key in cases:
        with pytest.raises(HarnessError, match=rf"config\.toml.*{key}"):
            _fit(view, tmp_path / key, **bad)
        with pytest.raises(HarnessError, match=key):  # the runner's check, before anything trains
            DiffRecAdapter.check_config({**TINY, **bad}, tasks=frozenset({"rec"}), submission_dir=tmp_path)
    assert DiffRecAdapter.params_class is DiffRecParams


def test_the_shipped_submission_loads_and_its_params_parse():
    sub = load_submission(REPO / "submissions" / "diffrec")
    assert sub.adapter_class() is DiffRecAdapter and set(sub.tasks) == {"rec"}
    DiffRecAdapter.check_config(sub.params, tasks=frozenset({"rec"}), submission_dir=REPO / "submissions" / "diffrec")


# ---- determinism, ranking rule, contract -------------------------------------------------------------------
def test_same_seed_same_rankings_other_seed_differs_and_checkpoint_is_reused(pairs_view, tmp_path):
    view, test, _ = pairs_view
    first = _fit(view, tmp_path / "a")
    again = _fit(view, tmp_path / "b")
    reused = _fit(view, tmp_path / "a")
    changed = _fit(view, tmp_path / "c", seed=1)
    ranks = [np.stack(x.retrieve("rec", test, 10)) for x in (first, again, reused, changed)]
    assert np.array_equal(ranks[0], ranks[1]) and np.array_equal(ranks[0], ranks[2])
    assert not np.array_equal(ranks[0], ranks[3])
    assert [x.describe()["reused_checkpoint"] for x in (first, again, reused, changed)] == [False, False, True, False]


def test_output_contract_history_exclusion_and_empty_history(tmp_path):
    seqs = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [1, 3, 5, 7, 9, 11, 2]]
    view, test, _ = toy_view(seqs, 15)
    a = _fit(view, tmp_path, sampling_steps=2, sampling_noise=True, mean_type="eps")
    out = a.retrieve("rec", test, 5)
    check_rankings(out, requests=test, task="rec", k=5, n_items=15, adapter="DiffRec")
    for i in range(len(test)):
        assert len(out[i]) == 5 and not set(out[i].tolist()) & set(test.history(i).tolist())
    empty = test.select(np.array([0]))
    empty = empty.__class__(empty.offsets, empty.items, empty.user, np.zeros(1, np.int32))
    assert len(a.retrieve("rec", empty, 3)[0]) == 3
    table = a.item_embeddings()
    assert table.shape == (15, 64) and np.isfinite(table).all()
    with pytest.raises(HarnessError, match="recommendation only"):
        a.retrieve("search", SearchExamples(np.zeros(1, np.int32), ["q"]), 3)


def test_history_items_stay_rankable_when_training_data_repeats(tmp_path):
    view, test, _ = toy_view([[0, 1, 0, 1, 0, 1, 2], [3, 4, 3, 4, 3, 2]], 5)
    a = _fit(view, tmp_path)
    assert a.describe()["exclude_history"] is False
    assert all(len(r) == 5 for r in a.retrieve("rec", test, 5))


# ---- end to end --------------------------------------------------------------------------------------------
def test_runs_end_to_end_on_sim1_through_the_runner(tmp_path):
    build_dataset("sim1")
    folder = tmp_path / "diffrec_quick"
    folder.mkdir()
    config = (REPO / "submissions" / "diffrec" / "config.toml").read_text()
    config = config.replace("max_epochs = 200", "max_epochs = 2").replace("min_epoch_steps = 10", "min_epoch_steps = 2")
    config = config.replace('datasets = ["ml-small", "sim1", "sim2", "sim3"]', 'datasets = ["sim1"]')
    assert "max_epochs = 2\n" in config and "min_epoch_steps = 2\n" in config
    (folder / "config.toml").write_text(config)
    out = tmp_path / "out"
    assert main(["run", str(folder), "-d", "sim1", "--out", str(out), "--no-site", "--no-progress"]) == 0
    assert list(out.rglob("record.json"))
    shutil.rmtree(out)
