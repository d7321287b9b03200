"""Backbone presets: the output-layer fix, the pretrained loading path (from a local folder), and bad names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.generative.backbones import PRESETS, get_preset, load_backbone
from harness.generative.tokenizer import item_token

TEXTS = ["brazilian jazz", "coffee roast", "volcano lava", "solar panel grid"] * 3
REPO = Path(__file__).resolve().parents[1]



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is shared: two spinning torch threads per process slow everyone down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def _initial_logit_std(model, vocab: int) -> float:
    torch.manual_seed(1)
    ids = torch.randint(3, vocab, (16, 6))
    with torch.no_grad():
        logits = model(input_ids=ids, decoder_input_ids=torch.zeros((16, 1), dtype=torch.long)).logits
    return float(logits.std())


def test_offline_preset_output_layer_is_tied_and_scaled():
    """DESIGN.md trap: initial logits must be O(1), not O(sqrt(d_model)) as an untied std-1.0 layer gives."""
    from transformers import T5Config, T5ForConditionalGeneration

    overrides = {"d_model": 256, "d_ff": 256, "d_kv": 32}  # a wide model makes the trap obvious
    bb = load_backbone("t5-offline-tiny", n_items=500, tokenizer_texts=TEXTS, seed=0, model_overrides=overrides)
    model = bb.model
    assert model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    fixed = _initial_logit_std(model, model.config.vocab_size)

    # The same architecture with the output layer the trap describes (transformers' untied configuration).
    c = model.config
    torch.manual_seed(0)
    naive = T5ForConditionalGeneration(T5Config(
        vocab_size=c.vocab_size, d_model=c.d_model, d_ff=c.d_ff, d_kv=c.d_kv, num_heads=c.num_heads,
        num_layers=c.num_layers, num_decoder_layers=c.num_decoder_layers, feed_forward_proj=c.feed_forward_proj,
        dropout_rate=0.0, tie_word_embeddings=False,
    ))
    trap = _initial_logit_std(naive, model.config.vocab_size)
    assert fixed < 3.0, fixed
    assert trap > 5 * fixed, (trap, fixed)
    assert "tied" in bb.info["output_layer"]


def test_offline_backbone_records_what_it_is():
    bb = load_backbone("t5-offline-tiny", n_items=7, tokenizer_texts=TEXTS, seed=0)
    assert bb.info["preset"] == "t5-offline-tiny"
    assert bb.info["n_parameters"] == sum(p.numel() for p in bb.model.parameters())
    assert bb.info["vocab_size"] == len(bb.tokenizer) == bb.items.offset + 7
    assert bb.decoder_start_token_id == bb.pad_token_id == 0 and bb.eos_token_id == 1
    again = load_backbone("t5-offline-tiny", n_items=7, tokenizer_texts=list(reversed(TEXTS)), seed=0)
    assert again.tokenizer_hash == bb.tokenizer_hash
    assert all(torch.equal(a, b) for a, b in zip(bb.model.parameters(), again.model.parameters()))


def test_unknown_preset_names_the_available_ones():
    with pytest.raises(HarnessError, match=r"'flan-t5-bse'.*Did you mean 'flan-t5-base'.*t5-offline-small"):
        get_preset("flan-t5-bse")


def test_fixed_config_keys_cannot_be_overridden():
    with pytest.raises(HarnessError, match="tie_word_embeddings"):
        load_backbone("t5-offline-tiny", n_items=3, tokenizer_texts=TEXTS, seed=0,
                      model_overrides={"tie_word_embeddings": False})
    with pytest.raises(HarnessError, match="offline presets only"):
        load_backbone("flan-t5-base", n_items=3, tokenizer_texts=TEXTS, seed=0, model_overrides={"d_model": 8})


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="backbone_path.*no such folder"):
        load_backbone("flan-t5-base", n_items=3, tokenizer_texts=TEXTS, seed=0, local_path=tmp_path / "nope")


def test_uncached_pretrained_backbone_says_so_and_names_the_offline_preset(tmp_path):
    """In a fresh process with an empty Hugging Face cache: no download, a HarnessError naming the way out."""
    script = textwrap.dedent(
        """
        from harness.errors import HarnessError
        from harness.generative.backbones import load_backbone
        try:
            load_backbone("flan-t5-base", n_items=3, tokenizer_texts=["a"], seed=0)
        except HarnessError as exc:
            print("HarnessError:", exc)
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=str(REPO),
                         timeout=120)
    assert "HarnessError:" in out.stdout, out.stderr[-2000:]
    message = out.stdout
    assert "google/flan-t5-base" in message and "Hugging Face cache" in message
    assert "t5-offline-small" in message and "allow_download" in message and "backbone_path" in message


def test_pretrained_loading_path_from_a_local_folder(tmp_path):
    """The flan-t5-base code path, run on a small T5 saved to a folder (the real model cannot be fetched here)."""
    src = load_backbone("t5-offline-tiny", n_items=0, tokenizer_texts=TEXTS, seed=0,
                        model_overrides={"tokenizer_vocab_size": 60})
    # Mimic flan-t5's layout: an untied output layer and spare embedding rows beyond the tokenizer.
    src.model.resize_token_embeddings(len(src.tokenizer) + 5)
    src.model.save_pretrained(tmp_path / "model")
    src.tokenizer.save_pretrained(tmp_path / "model")
    base_rows = src.model.shared.weight.shape[0]

    bb = load_backbone("flan-t5-base", n_items=8, tokenizer_texts=[], seed=0, local_path=tmp_path / "model")
    assert bb.info["preset"] == "flan-t5-base" and bb.info["config"]["source"] == str(tmp_path / "model")
    assert bb.items.offset == len(src.tokenizer)  # item tokens continue the pretrained tokenizer
    assert bb.tokenizer.convert_tokens_to_ids(item_token(7)) == bb.items.offset + 7
    assert bb.model.shared.weight.shape[0] == max(base_rows, bb.items.offset + 8)
    rows = bb.model.shared.weight[bb.items.offset : bb.items.offset + 8]
    assert torch.all(rows.std(dim=1) > 0)  # every item row initialised (spare rows included), none left at zero
    assert not torch.equal(rows[0], rows[1])


def test_every_preset_is_described():
    for preset in PRESETS.values():
        assert preset.description and preset.output_layer and preset.source in ("offline", "pretrained")
