"""Atomic item IDs, Table 1's inputs and targets, and the offline tokenizer's determinism."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from harness.generative.tokenizer import (
    EOS,
    ItemVocabulary,
    add_item_tokens,
    encode_sources,
    item_token,
    rec_source,
    search_source,
    target_ids,
    tokenizer_hash,
    train_offline_tokenizer,
)

CORPUS = ["brazilian jazz", "jazz saxophone improvisation", "coffee roast beans", "volcano lava eruption"] * 5


@pytest.fixture(scope="module")
def tok():
    tokenizer = train_offline_tokenizer(CORPUS, vocab_size=200)
    items = add_item_tokens(tokenizer, 10)
    return tokenizer, items


def test_special_tokens_have_t5_ids(tok):
    tokenizer, _ = tok
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)


def test_item_tokens_are_one_contiguous_range(tok):
    tokenizer, items = tok
    assert items.n_items == 10
    assert tokenizer.convert_tokens_to_ids([item_token(i) for i in range(10)]) == list(range(items.offset, items.offset + 10))
    assert items.offset == len(tokenizer) - 10
    np.testing.assert_array_equal(items.items_of(np.array([items.offset + 3, 5, items.offset + 10, 1])), [3, -1, -1, -1])
    assert items.all_sequences()[7] == [items.offset + 7]


def test_rec_input_is_the_history_item_tokens_then_eos(tok):
    """Table 1, Gen_R: [phi(item_1), phi(item_2)] -> phi(item_3)."""
    tokenizer, items = tok
    text = rec_source(np.array([1, 2]))
    assert text == "<item_1> <item_2>"
    assert encode_sources(tokenizer, [text], max_length=16) == [[items.offset + 1, items.offset + 2, 1]]
    np.testing.assert_array_equal(target_ids(np.array([3]), items, tokenizer.eos_token_id), [[items.offset + 3, 1]])


def test_search_input_is_the_tokenized_query_then_eos(tok):
    """Table 1, Gen_S: tokenize("brazilian jazz") -> phi(item_3)."""
    tokenizer, items = tok
    ids = encode_sources(tokenizer, [search_source("Brazilian Jazz")], max_length=16)[0]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[:-1]) == ["brazilian", "jazz"]  # lower-cased words seen in training
    assert all(i < items.offset for i in ids)  # text never produces item tokens


def test_long_history_keeps_the_most_recent_items(tok):
    tokenizer, items = tok
    ids = encode_sources(tokenizer, [rec_source(range(8))], max_length=4, keep_end=True)[0]
    assert ids == [items.offset + 5, items.offset + 6, items.offset + 7, tokenizer.eos_token_id]


def test_inputs_without_eos_when_asked_and_never_empty(tok):
    """params.source_eos = false: the encoder input is the item tokens / query tokens alone (docs/generative.md)."""
    tokenizer, items = tok
    without = encode_sources(tokenizer, [rec_source([1, 2])], max_length=16, eos=False)
    assert without == [[items.offset + 1, items.offset + 2]]
    kept = encode_sources(tokenizer, [rec_source(range(8))], max_length=4, keep_end=True, eos=False)[0]
    assert kept == [items.offset + 4, items.offset + 5, items.offset + 6, items.offset + 7]  # all 4 places for items
    ids = encode_sources(tokenizer, [search_source("Brazilian Jazz")], max_length=16, eos=False)[0]
    assert tokenizer.convert_ids_to_tokens(ids) == ["brazilian", "jazz"]
    assert encode_sources(tokenizer, ["", "   "], max_length=16, eos=False) == [[tokenizer.eos_token_id]] * 2


def test_item_string_inside_a_query_is_not_split(tok):
    tokenizer, items = tok
    ids = encode_sources(tokenizer, ["jazz <item_4>"], max_length=16)[0]
    assert items.offset + 4 in ids


_HASH_SCRIPT = textwrap.dedent(
    """
    import sys
    from harness.generative.tokenizer import add_item_tokens, tokenizer_hash, train_offline_tokenizer
    texts = [f"query {w} {i % 13} about topic {i % 7}" for i, w in enumerate(["jazz", "coffee", "lava", "solar"] * 300)]
    tok = train_offline_tokenizer(texts, vocab_size=int(sys.argv[1]))
    add_item_tokens(tok, 50)
    print(tokenizer_hash(tok))
    """
)


def _hash_in_fresh_process(vocab_size: int, seed: str) -> str:
    env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _HASH_SCRIPT, str(vocab_size)], capture_output=True, text=True,
                         check=True, env=env, cwd=str(_repo()))
    return out.stdout.strip().splitlines()[-1]


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


def test_same_text_gives_a_byte_identical_tokenizer_across_processes():
    """Rust hash maps are seeded per process: determinism must hold across processes, not just calls."""
    first = _hash_in_fresh_process(50, "1")
    second = _hash_in_fresh_process(50, "2")
    assert first.startswith("sha256:") and first == second
    assert _hash_in_fresh_process(40, "1") != first  # and the hash does see the vocabulary


def test_row_order_does_not_change_the_tokenizer():
    a = train_offline_tokenizer(CORPUS, 200)
    b = train_offline_tokenizer(list(reversed(CORPUS)), 200)
    assert tokenizer_hash(a) == tokenizer_hash(b)
    add_item_tokens(b, 3)
    assert tokenizer_hash(a) != tokenizer_hash(b)  # item tokens are part of the hash


def test_eos_string_constant_matches(tok):
    tokenizer, _ = tok
    assert tokenizer.eos_token == EOS


def test_item_vocabulary_is_plain_arithmetic():
    vocab = ItemVocabulary(offset=100, n_items=5)
    np.testing.assert_array_equal(vocab.token_ids([0, 4]), [100, 104])
