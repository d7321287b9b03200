"""The generative T5 adapter end to end on a hand-made TrainView: data, fit, retrieve, record, bad input."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.generative.params import T5Params
from harness.generative.t5_adapter import GenerativeT5Adapter, unique_in_order
from harness.protocol.submission import load_submission
from test_t5_toy import toy_view

REPO = Path(__file__).resolve().parents[1]
# threads=1: the test machine is shared; two spinning torch threads per process slow everyone down.
TINY = {"backbone": "t5-offline-tiny", "epochs": 2, "batch_size": 16, "learning_rate": 0.01, "progress": False,
        "valid_max_examples": 8, "threads": 1}


def _adapter(tmp_path, tasks=("rec", "search"), workdir="w", **params):
    sub = tmp_path / "sub"
    if not (sub / "deepspeed.json").exists():
        sub.mkdir(exist_ok=True)
        shutil.copy(REPO / "submissions" / "joint_t5" / "deepspeed.json", sub / "deepspeed.json")
    return GenerativeT5Adapter(params={**TINY, **params}, seed=0, workdir=tmp_path / workdir,
                               tasks=frozenset(tasks), submission_dir=sub)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fitted")
    adapter = _adapter(tmp)
    view = toy_view()
    adapter.fit(view)
    return adapter, view, tmp


@pytest.mark.parametrize("source_eos", [True, False])
@pytest.mark.parametrize("tasks", [("rec",), ("search",), ("rec", "search")])
def test_training_data_is_the_served_tasks_concatenated(tmp_path, tasks, source_eos):
    from harness.generative.backbones import load_backbone
    from harness.generative.t5_adapter import tokenizer_corpus

    view = toy_view()
    adapter = _adapter(tmp_path, tasks=tasks, max_history=3, source_eos=source_eos)
    adapter.backbone = load_backbone("t5-offline-tiny", n_items=len(view.catalogue),
                                     tokenizer_texts=tokenizer_corpus(view), seed=0)
    data, counts = adapter._training_data(view)
    expected = {"rec": len(view.rec_train), "search": len(view.search_train.pairs()[0])}
    assert counts == {t: expected[t] for t in tasks}
    assert len(data) == sum(counts.values()) == len(data.targets)
    off, eos = adapter.backbone.items.offset, adapter.backbone.eos_token_id
    end = [eos] if source_eos else []  # targets always end with EOS; inputs only with source_eos
    if tasks[0] == "rec":  # rec comes first: history capped to the last 3 items, then EOS
        h = view.rec_train.history(5)[-3:]
        assert data.sources[5] == [off + int(i) for i in h] + end
        assert data.targets[5].tolist() == [off + int(view.rec_train.target[5]), eos]
    if "search" in tasks:  # search pairs last: query text tokens (never item tokens), then EOS
        first = counts.get("rec", 0)
        text = data.sources[first][:-1] if source_eos else data.sources[first]
        assert data.sources[first][-1] == eos if source_eos else eos not in data.sources[first]
        assert max(text) < off
        assert data.targets[first].tolist() == [off + int(view.search_train.pairs()[1][0]), eos]


def test_fit_then_retrieve_ranks_k_distinct_items(fitted):
    adapter, view, _ = fitted
    requests = view.rec_valid.without_targets()
    ranked = adapter.retrieve("rec", requests, 4)
    assert ranked.shape == (len(requests), 4) and ranked.dtype == np.int64
    for row in ranked:
        valid = row[row >= 0]
        assert len(valid) >= 1 and len(set(valid.tolist())) == len(valid)
        assert valid.max() < len(view.catalogue)
        assert np.all(row[len(valid):] == -1)  # padding only at the end
    search = adapter.retrieve("search", view.search_valid.without_relevance(), 4)
    assert search.shape == (len(view.search_valid), 4)


def test_distinct_decoding_is_the_first_steps_top_k_items_ranked_with_their_eos(fitted):
    """Plain beam search with K beams over atomic IDs: the first step keeps the K most probable item tokens, the
    second can only end each with EOS, so the list is those K items ordered by log p(item) + log p(EOS | item).
    Checked against teacher-forced forward passes of every item, computed here without the decoder."""
    import torch

    adapter, view, _ = fitted
    requests = view.rec_valid.without_targets()
    k = 6
    paper = adapter.retrieve("rec", requests, k)
    adapter.decoding = "distinct"
    try:
        ranked = adapter.retrieve("rec", requests, k)
        info = adapter.describe()["decoding"]
    finally:
        adapter.decoding = "diverse-beam"
    assert info["protocol"] == "distinct" and info["num_beam_groups"] == 1 and info["diversity_penalty"] == 0.0
    assert adapter.describe()["decoding"]["protocol"] == "diverse-beam"
    assert (ranked >= 0).all() and all(len(set(row)) == k for row in ranked.tolist())
    assert (paper < 0).any(), "the paper's decoding should leave some lists short on this toy (else the test is weak)"

    bb, model, n = adapter.backbone, adapter.model, adapter.n_items
    tokens = torch.as_tensor(bb.items.token_ids(np.arange(n)))
    was_training = model.training
    model.eval()
    try:
        for row, source in zip(ranked, adapter._encode("rec", requests)):
            ids = torch.tensor([list(source)] * n)
            decoder = torch.stack([torch.full((n,), bb.decoder_start_token_id), tokens], dim=1)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=decoder).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            first = logp[torch.arange(n), 0, tokens].numpy()
            total = first + logp[:, 1, bb.eos_token_id].numpy()
            kept = np.argsort(-first, kind="stable")[:k]
            np.testing.assert_array_equal(row, kept[np.argsort(-total[kept], kind="stable")])
    finally:
        model.train(was_training)


def test_describe_records_backbone_curve_and_settings(fitted):
    adapter, _, _ = fitted
    info = json.loads(json.dumps(adapter.describe()))  # JSON-able, as the record needs
    assert info["backbone"]["preset"] == "t5-offline-tiny"
    assert info["backbone"]["tokenizer_hash"].startswith("sha256:")
    assert [r["epoch"] for r in info["train"]["curve"]] == [1, 2]
    assert set(info["train"]["curve"][0]["valid"]) == {"rec", "search"}
    assert info["train"]["best_epoch"] in (1, 2)
    assert info["train"]["deepspeed_config"]["zero_optimization"]["stage"] == 2
    assert info["params"]["diversity_penalty"] == 0.25 and info["valid_k"] == 4  # the view's headline K
    assert info["training_examples"] == {"rec": len(toy_view().rec_train), "search": 24}


def test_refit_in_the_same_workdir_resumes_instead_of_retraining(fitted):
    adapter, view, tmp = fitted
    again = _adapter(tmp)
    again.fit(view)
    assert again.describe()["train"]["resumed_from_epoch"] == 2
    requests = view.rec_valid.without_targets()
    np.testing.assert_array_equal(again.retrieve("rec", requests, 4), adapter.retrieve("rec", requests, 4))
    # The finished checkpoint's item vectors are the trained ones (and not the fresh model's).
    np.testing.assert_array_equal(again.item_embeddings(), adapter.item_embeddings())


def test_item_embeddings_are_the_item_tokens_input_rows_in_catalogue_order(fitted):
    adapter, view, _ = fitted
    table = adapter.item_embeddings()
    d_model = adapter.model.config.d_model
    assert table.shape == (len(view.catalogue), d_model) and table.dtype == np.float32
    assert np.isfinite(table).all()
    weight = adapter.model.get_input_embeddings().weight.detach().numpy()
    tokenizer = adapter.backbone.tokenizer
    for item in (0, 5, len(view.catalogue) - 1):  # looked up through the tokenizer, not the offset arithmetic
        token = tokenizer.convert_tokens_to_ids(f"<item_{item}>")
        np.testing.assert_array_equal(table[item], weight[token])
    assert len(np.unique(table, axis=0)) == len(table)  # distinct rows: not one row repeated


def test_initial_item_embeddings_are_the_seeded_start_and_survive_a_resume(fitted):
    from harness.generative.backbones import load_backbone
    from harness.generative.t5_adapter import tokenizer_corpus

    adapter, view, tmp = fitted
    initial, trained = adapter.initial_item_embeddings(), adapter.item_embeddings()
    fresh = load_backbone("t5-offline-tiny", n_items=len(view.catalogue), tokenizer_texts=tokenizer_corpus(view),
                          seed=0)
    rows = fresh.model.get_input_embeddings().weight.detach().numpy()[fresh.items.token_ids(np.arange(12))]
    np.testing.assert_array_equal(initial, rows)
    assert initial.shape == trained.shape and not np.array_equal(initial, trained)  # training moved them
    again = _adapter(tmp)
    again.fit(view)  # resumes the finished checkpoint: the start is rebuilt from the seed, the same
    np.testing.assert_array_equal(again.initial_item_embeddings(), initial)


def test_item_embeddings_before_fit_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="item_embeddings called before fit"):
        _adapter(tmp_path).item_embeddings()


def test_item_embeddings_under_zero3_are_gathered_from_the_partitions(tmp_path):
    """ZeRO-3 partitions parameters (a rank holds an empty tensor outside forward passes): the rows must be
    gathered, and retrieval must work the same after the gather."""
    import deepspeed

    sub = tmp_path / "sub"
    sub.mkdir()
    # Persistence threshold 0: even tiny parameters are partitioned, as flan-t5-base's embedding would be.
    (sub / "deepspeed.json").write_text(json.dumps(
        {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}))
    adapter = _adapter(tmp_path, epochs=1, valid_max_examples=0)
    view = toy_view()
    adapter.fit(view)
    weight = adapter.model.get_input_embeddings().weight
    assert weight.numel() == 0 and hasattr(weight, "ds_id")  # partitioned: nothing to read without a gather
    requests = view.rec_valid.without_targets()
    before = adapter.retrieve("rec", requests, 4)
    table = adapter.item_embeddings()
    assert table.shape == (12, adapter.model.config.d_model) and np.isfinite(table).all()
    with deepspeed.zero.GatheredParameters([weight]):
        offset = adapter.backbone.items.offset
        np.testing.assert_array_equal(table, weight.detach()[offset : offset + 12].numpy())
    assert weight.numel() == 0  # partitioned again
    np.testing.assert_array_equal(adapter.retrieve("rec", requests, 4), before)


def test_checkpoint_from_another_dataset_is_refused(fitted):
    _, _, tmp = fitted
    other = _adapter(tmp)
    with pytest.raises(HarnessError, match="dataset fingerprint sha256:toy, but this run has sha256:changed"):
        other.fit(toy_view(fingerprint="sha256:changed"))


def test_a_capped_run_never_resumes_an_uncapped_runs_checkpoint(fitted):
    """Even in the same workdir (the runner gives it another one anyway: the config hash changes)."""
    _, view, tmp = fitted
    capped = _adapter(tmp, cap_per_item={"search": 1})
    with pytest.raises(HarnessError, match="training setup hash .* refusing to resume"):
        capped.fit(view)


@pytest.mark.parametrize(
    "name, setup_hash, ml_small_hash",
    [
        # the simulations' hashes changed on purpose with epochs 20 -> 10 (docs/experiments.md); ml-small kept 20
        ("joint_t5", "sha256:c2405e60f5dfd3131002f467bc3b95fa964f1d3f22f9b42603940d5213828bef",
         "sha256:f0d6affe3816de0f47754b894e6c61604ae8ecf5e72ec2bb74b4b69f55d8b5d0"),
        ("rec_t5", "sha256:633b05082b084266895bf26c0fedf54335c871b139643dedc7d210e0e7ebffe7",
         "sha256:e9734cf4259a8b8e388f84ce79965f46c42ffcdd354a428a6b51ad073c5a62f3"),
    ],
)
def test_setup_hash_of_the_shipped_configs_is_unchanged_by_new_params(name, setup_hash, ml_small_hash):
    """Checkpoints written before a param existed must stay resumable: an unset new param (cap_per_item = {})
    leaves the setup hash as it was. These hashes are the ones in checkpoints written before cap_per_item; if you
    change the shipped configs or deepspeed.json on purpose, update them (old checkpoints are then refused)."""
    sub = load_submission(REPO / "submissions" / name)
    adapter = GenerativeT5Adapter(params=sub.params, seed=0, workdir=Path("unused"), tasks=frozenset(sub.tasks),
                                  submission_dir=sub.folder)
    for sim in ("sim1", "sim2", "sim3:pairs_in_qrels=0.5"):  # what fit() trains a simulation with
        adapter._use_params(adapter.all_params.for_dataset(sim))
        assert adapter._setup_hash() == setup_hash
    adapter._use_params(adapter.all_params.for_dataset("ml-small"))  # its own settings: its own checkpoints
    assert adapter._setup_hash() == ml_small_hash != setup_hash


@pytest.mark.parametrize(
    "k, message",
    [(3, r"K = 3: .* even integer"), (14, r"K = 14 is larger than the catalogue \(12 items\)"), (0, "K = 0")],
)
def test_bad_k_is_a_clear_error(fitted, k, message):
    adapter, view, _ = fitted
    with pytest.raises(HarnessError, match=message):
        adapter.retrieve("rec", view.rec_valid.without_targets(), k)


def test_a_task_not_served_is_refused(tmp_path):
    adapter = _adapter(tmp_path, tasks=("rec",))
    adapter.model, adapter.n_items = object(), 12
    with pytest.raises(HarnessError, match="serves \\['rec'\\], not 'search'"):
        adapter.retrieve("search", toy_view().search_valid, 4)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"epoch": 3}, r"unknown \[params\] key\(s\) \['epoch'\]; allowed: backbone"),
        ({"epochs": "5"}, r"params\.epochs = '5' must be an int"),
        ({"learning_rate": True}, r"params\.learning_rate = True must be a float"),
        ({"lr_schedule": "cosine"}, r"params\.lr_schedule = 'cosine'"),
        ({"deepspeed_config": "missing.json"}, r"params\.deepspeed_config = 'missing\.json'.*does not exist"),
        ({"by_dataset": {"ml-small": {"epoch": 3}}}, r"unknown params\.by_dataset\.ml-small key\(s\) \['epoch'\]"),
        ({"by_dataset": {"ml-small": {"epochs": 0}}}, r"params\.by_dataset\.ml-small\.epochs = 0; give an integer >= 1"),
        ({"by_dataset": {"ml-small": {"max_history": 2.5}}},
         r"params\.by_dataset\.ml-small\.max_history = 2\.5 must be"),
        ({"by_dataset": {"ml-small": 5}}, r"params\.by_dataset\.ml-small must be a table"),
        ({"by_dataset": {"Bad Name": {}}}, r"params\.by_dataset\.Bad Name: dataset name"),
        ({"by_dataset": {"sim2": {"by_dataset": {}}}}, r"cannot nest"),
        ({"by_dataset": {"sim2": {"deepspeed_config": "nope.json"}}}, r"'nope\.json'.*does not exist"),
    ],
)
def test_bad_params_name_the_key(tmp_path, params, message):
    with pytest.raises(HarnessError, match=message):
        _adapter(tmp_path, **params)


def test_by_dataset_settings_apply_to_their_dataset_only_and_are_recorded(tmp_path):
    params = {"by_dataset": {"toy": {"epochs": 1, "max_history": 3}, "toy:x=1": {"epochs": 2},
                             "other": {"learning_rate": 1}}}
    base = T5Params.parse({**TINY, **params}, "here")
    assert base.for_dataset("toy") == replace(base, epochs=1, max_history=3, by_dataset={})
    assert base.for_dataset("toy:x=1").epochs == 2 and base.for_dataset("toy:x=1").max_history == 3  # full name wins
    assert base.for_dataset("sim1") == replace(base, by_dataset={})
    assert base.for_dataset("other").learning_rate == 1.0 and isinstance(base.for_dataset("other").learning_rate, float)

    adapter = _adapter(tmp_path, tasks=("rec",), **params)
    adapter.fit(toy_view())  # toy_view's dataset is "toy"
    info = adapter.describe()
    assert info["params"]["epochs"] == 1 and info["params"]["max_history"] == 3 and info["params"]["by_dataset"] == {}
    assert len(info["train"]["curve"]) == 1


def test_unavailable_backbone_fails_in_fit_with_the_way_out(tmp_path):
    adapter = _adapter(tmp_path, backbone="flan-t5-base", backbone_path=str(tmp_path / "no-such-folder"))
    with pytest.raises(HarnessError, match="backbone_path"):
        adapter.fit(toy_view())


def test_paper_defaults():
    p = T5Params()
    assert (p.epochs, p.learning_rate, p.batch_size, p.weight_decay, p.diversity_penalty) == (5, 0.002, 128, 0.01, 0.25)
    assert p.num_beams is None and p.num_beam_groups is None  # K and K / 2 at retrieval time


def test_first_occurrence_of_each_item_is_kept_in_order():
    np.testing.assert_array_equal(unique_in_order(np.array([5, 3, 5, -1, 2, 3, 9])), [5, 3, 2, 9])


@pytest.mark.parametrize("name", ["joint_t5", "rec_t5", "search_t5"])
def test_shipped_submissions_load_and_agree(name):
    sub = load_submission(REPO / "submissions" / name)
    assert sub.adapter == "harness.generative.t5_adapter:GenerativeT5Adapter" and sub.kind == "generative"
    params = T5Params.parse(sub.params, name)
    assert (params.learning_rate, params.batch_size, params.weight_decay) == (0.002, 128, 0.01)
    assert (sub.folder / params.deepspeed_config).is_file()
    expected_tasks = {"joint_t5": ("rec", "search"), "rec_t5": ("rec",), "search_t5": ("search",)}[name]
    assert sub.tasks == expected_tasks
    if name == "joint_t5":
        assert sub.references == {"rec": "rec_t5", "search": "search_t5"}
    others = [load_submission(REPO / "submissions" / n).params for n in ("joint_t5", "rec_t5", "search_t5")]
    assert all(o == sub.params for o in others)  # the three differ only in their tasks
