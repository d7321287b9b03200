"""SASRec and BERT4Rec: training data, learning a trivial pattern, early stopping, ranking rule, contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.baselines.bert4rec import BERT4RecAdapter
from harness.baselines.sasrec import SASRecAdapter
from harness.baselines.sequential import has_repeats, training_sequences, windows_from_end
from harness.baselines.toydata import successor_sequences, toy_view
from harness.data.views import SearchExamples
from harness.errors import HarnessError
from harness.protocol.checks import check_rankings

# threads=1: the test machine is shared; two spinning torch threads per process slow everyone down.
TINY = {"max_len": 10, "d_model": 32, "n_heads": 2, "batch_size": 16, "valid_k": 10, "threads": 1, "min_epoch_steps": 1}


def _fit(cls, view, tmp_path: Path, seed: int = 0, **params):
    a = cls(params={**TINY, **params}, seed=seed, workdir=tmp_path, tasks=frozenset({"rec"}), submission_dir=tmp_path)
    a.fit(view)
    return a


def _recall(rankings, targets) -> float:
    return float(np.mean([t in r for t, r in zip(targets, rankings)]))


# ---- training data -----------------------------------------------------------------------------------------
def test_training_sequence_is_each_users_longest_prefix_plus_target():
    view, _, _ = toy_view([[5, 6, 7, 8, 9, 1, 2], [3, 4, 0, 1]], 10)
    users, seqs = training_sequences(view.rec_train)
    assert users.tolist() == [0, 1]
    assert [s.tolist() for s in seqs] == [[5, 6, 7, 8, 9], [3, 4]]  # 1..t-2: never the valid/test items


def test_windows_cover_the_sequence_from_its_end():
    assert windows_from_end(7, 3) == [(0, 1), (1, 4), (4, 7)]
    assert windows_from_end(3, 5) == [(0, 3)]
    assert windows_from_end(0, 5) == []


def test_sasrec_windows_hold_every_next_item_target_once(tmp_path):
    seq = list(range(30))
    view, _, _ = toy_view([seq], 40)
    a = _fit(SASRecAdapter, view, tmp_path, max_epochs=1, max_len=8)
    targets = np.concatenate([w[1:] for w in a._windows])
    assert sorted(targets.tolist()) == list(range(1, 28))  # items 2..t-2 each predicted once per epoch
    assert all(len(w) <= 9 for w in a._windows)


def test_an_epoch_makes_at_least_min_epoch_steps(tmp_path):
    view, _, _ = toy_view([[0, 1, 2, 3, 4]] * 3, 6)  # 3 windows: one batch of 16 per pass
    a = _fit(SASRecAdapter, view, tmp_path, max_epochs=1, min_epoch_steps=5)
    assert a.describe()["steps_per_epoch"] == 5


def test_repeats_detection():
    assert not has_repeats([np.array([1, 2, 3])])
    assert has_repeats([np.array([1, 2, 1])])


# ---- learning ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def successor():
    return toy_view(successor_sequences(n_items=60, n_users=120, length=12, seed=1), 60)


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_sasrec_learns_the_successor_pattern(successor, tmp_path, loss):
    view, test, targets = successor
    a = _fit(SASRecAdapter, view, tmp_path, loss=loss, max_epochs=12, patience_steps=24)
    assert _recall(a.retrieve("rec", test, 10), targets) >= 0.9  # chance is about 10/50


def test_bert4rec_learns_the_successor_pattern(successor, tmp_path):
    view, test, targets = successor
    a = _fit(BERT4RecAdapter, view, tmp_path, lr=3e-3, dropout=0.1, last_item_mask_prob=0.2, max_epochs=40, patience_steps=100_000)
    assert _recall(a.retrieve("rec", test, 10), targets) >= 0.9


# ---- early stopping ----------------------------------------------------------------------------------------
class ScriptedValidation(SASRecAdapter):
    """Validation hits follow a script; the weights seen at each validation are remembered."""

    script = [10, 20, 21, 19, 20, 40]

    def validation_hits(self, valid):
        self.weights_at = getattr(self, "weights_at", [])
        self.weights_at.append(self._model.item_emb.weight.detach().clone())
        return self.script[len(self.weights_at) - 1]


def test_early_stopping_counts_hits_and_steps_and_keeps_the_latest_epoch_on_a_plateau(successor, tmp_path):
    view, _, _ = successor
    steps = _fit(SASRecAdapter, view, tmp_path / "probe", max_epochs=1).describe()["steps_per_epoch"]
    a = _fit(ScriptedValidation, view, tmp_path, max_epochs=6, patience_steps=3 * steps, tolerance_hits=1)
    info = a.describe()
    # 10 -> 20 is a gain; 21 is one hit more (not a gain, but within one hit of the best: kept); 19 is two below
    # the best (not kept); 20 is within one hit again (kept); three epochs without a gain: stop before the 40.
    assert info["epochs_run"] == 5
    assert info["best_epoch"] == 5
    assert info["stopping"]["gain_epochs"] == [1, 2] and info["stopping"]["best_valid_hits"] == 21
    n_valid = len(view.rec_valid)
    assert info["valid_recall_per_epoch"] == [round(h / n_valid, 6) for h in ScriptedValidation.script[:5]]
    final = a._model.item_emb.weight.detach()
    assert np.array_equal(final.numpy(), a.weights_at[4].numpy())
    assert not np.array_equal(final.numpy(), a.weights_at[2].numpy())


def test_a_one_hit_wobble_does_not_decide_the_kept_epoch_or_the_stop(successor, tmp_path):
    """Two runs whose validation differs by one hit at one epoch (float noise) stop and keep alike."""
    view, _, _ = successor
    steps = _fit(SASRecAdapter, view, tmp_path / "probe", max_epochs=1).describe()["steps_per_epoch"]
    outcomes = []
    for i, script in enumerate(([10, 30, 31, 30, 31, 30, 30], [10, 30, 30, 31, 31, 30, 31])):
        cls = type("Scripted", (ScriptedValidation,), {"script": script})
        info = _fit(cls, view, tmp_path / str(i), max_epochs=7, patience_steps=4 * steps).describe()
        outcomes.append((info["epochs_run"], info["best_epoch"]))
    assert outcomes == [(6, 6), (6, 6)]  # "strictly better" would keep epoch 3 in one run and epoch 4 in the other


# ---- ranking rule and contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SASRecAdapter, BERT4RecAdapter])
def test_output_contract_and_history_exclusion(cls, tmp_path):
    seqs = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [1, 3, 5, 7, 9, 11, 2]]
    view, test, _ = toy_view(seqs, 15)
    a = _fit(cls, view, tmp_path, max_epochs=2)
    out = a.retrieve("rec", test, 5)
    table = check_rankings(out, requests=test, task="rec", k=5, n_items=15, adapter=cls.__name__)
    assert (table >= 0).all()  # full rankings: 15 items, at most 6 excluded
    for i in range(len(test)):
        assert not set(out[i].tolist()) & set(test.history(i).tolist())  # no repeats in data -> excluded
    assert a.describe()["exclude_history"] is True


@pytest.mark.parametrize("cls", [SASRecAdapter, BERT4RecAdapter])
def test_history_items_stay_rankable_when_training_data_repeats(cls, tmp_path):
    seqs = [[0, 1, 0, 1, 0, 1, 2], [3, 4, 3, 4, 3, 2]]
    view, test, _ = toy_view(seqs, 5)
    a = _fit(cls, view, tmp_path, max_epochs=1)
    out = a.retrieve("rec", test, 5)
    assert a.describe()["exclude_history"] is False
    assert all(len(r) == 5 for r in out)
    forced = _fit(cls, view, tmp_path / "forced", max_epochs=1, exclude_history=True)
    assert [len(r) for r in forced.retrieve("rec", test, 5)] == [3, 3]  # 5 items minus {0, 1} / {3, 4}


@pytest.mark.parametrize("cls", [SASRecAdapter, BERT4RecAdapter])
def test_empty_history_gets_a_ranking_not_a_crash(cls, tmp_path):
    view, test, _ = toy_view([[0, 1, 2, 3], [4, 5, 6, 7]], 9)
    a = _fit(cls, view, tmp_path, max_epochs=1)
    empty = test.select(np.array([0]))
    empty = empty.__class__(empty.offsets, empty.items, empty.user, np.zeros(1, np.int32))
    assert len(a.retrieve("rec", empty, 3)[0]) == 3


@pytest.mark.parametrize("cls", [SASRecAdapter, BERT4RecAdapter])
def test_same_seed_same_rankings_and_checkpoint_is_reused(cls, successor, tmp_path):
    view, test, _ = successor
    first = _fit(cls, view, tmp_path / "a", max_epochs=2)
    again = _fit(cls, view, tmp_path / "b", max_epochs=2)
    reused = _fit(cls, view, tmp_path / "a", max_epochs=2)
    changed = _fit(cls, view, tmp_path / "a", max_epochs=2, seed=1)
    ranks = [np.stack(x.retrieve("rec", test, 10)) for x in (first, again, reused, changed)]
    assert np.array_equal(ranks[0], ranks[1]) and np.array_equal(ranks[0], ranks[2])
    assert not np.array_equal(ranks[0], ranks[3])
    assert [x.describe()["reused_checkpoint"] for x in (first, again, reused, changed)] == [False, False, True, False]


@pytest.mark.parametrize("cls", [SASRecAdapter, BERT4RecAdapter])
def test_refuses_search_and_names_bad_params(cls, tmp_path):
    view, _, _ = toy_view([[0, 1, 2, 3]] * 2, 5)
    a = _fit(cls, view, tmp_path, max_epochs=1)
    with pytest.raises(HarnessError, match="recommendation only"):
        a.retrieve("search", SearchExamples(np.zeros(1, np.int32), ["q"]), 3)
    for bad, key in [({"max_len": 0}, "max_len"), ({"d_model": 30, "n_heads": 4}, "d_model"), ({"epochs": 3}, "epochs")]:
        with pytest.raises(HarnessError, match=key):
            _fit(cls, view, tmp_path / key, **bad)


def test_sasrec_loss_and_bert4rec_mask_params_are_checked(tmp_path):
    view, _, _ = toy_view([[0, 1, 2, 3]] * 2, 5)
    with pytest.raises(HarnessError, match="loss"):
        _fit(SASRecAdapter, view, tmp_path / "s", loss="bpr")
    with pytest.raises(HarnessError, match="mask_prob"):
        _fit(BERT4RecAdapter, view, tmp_path / "b", mask_prob=1.5)


def test_bert4rec_cloze_masks_real_items_only_and_at_least_one(tmp_path):
    view, _, _ = toy_view([list(range(12))] * 3, 20)
    a = _fit(BERT4RecAdapter, view, tmp_path, max_epochs=1, mask_prob=0.01, last_item_mask_prob=0.0)
    tokens = np.array([[0, 0, 0, 5, 6, 7, 8, 9, 10, 11], [0] * 9 + [3]])
    batch = a.cloze(tokens, np.random.default_rng(0))
    masked = batch["inputs"] == a._mask_token
    assert masked.any(axis=1).all() and not (masked & (tokens == 0)).any()
    assert (batch["labels"][masked] == tokens[masked]).all() and (batch["labels"][~masked] == 0).all()


# ---- item vectors and the launcher -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SASRecAdapter, BERT4RecAdapter])
def test_item_embeddings_are_the_item_table_without_padding_or_mask_rows(cls, tmp_path):
    view, _, _ = toy_view([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]], 12)
    with pytest.raises(HarnessError, match="item_embeddings called before fit"):
        cls(params=TINY, seed=0, workdir=tmp_path, tasks=frozenset({"rec"}), submission_dir=tmp_path).item_embeddings()
    a = _fit(cls, view, tmp_path, max_epochs=1)
    table = a.item_embeddings()
    assert table.shape == (12, TINY["d_model"]) and table.dtype == np.float32 and np.isfinite(table).all()
    weight = a._model.item_emb.weight.detach().numpy()  # token = item + 1; 0 pads; BERT4Rec's last row is [MASK]
    assert weight.shape[0] == {SASRecAdapter: 13, BERT4RecAdapter: 14}[cls]
    for item in (0, 7, 11):
        np.testing.assert_array_equal(table[item], weight[item + 1])
    reused = _fit(cls, view, tmp_path, max_epochs=1)  # from the saved checkpoint, not retrained
    assert reused.describe()["reused_checkpoint"]
    np.testing.assert_array_equal(reused.item_embeddings(), table)


def test_only_rank_0_saves_the_checkpoint(tmp_path, monkeypatch):
    """Under a multi-process launcher every rank runs the adapter: one writer for the shared workdir."""
    view, _, _ = toy_view([[0, 1, 2, 3]] * 2, 5)
    monkeypatch.setenv("RANK", "1")
    _fit(SASRecAdapter, view, tmp_path / "r1", max_epochs=1)
    assert not (tmp_path / "r1" / "model.pt").exists()
    monkeypatch.delenv("RANK")
    _fit(SASRecAdapter, view, tmp_path / "r0", max_epochs=1)
    assert (tmp_path / "r0" / "model.pt").is_file()
