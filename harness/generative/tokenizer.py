"""Atomic item IDs and the model's inputs and targets (paper Table 1), plus the offline preset's tokenizer.

Atomic IDs: item `i` of the catalogue is one new vocabulary token, `<item_i>`, added in id order, so item
tokens are the contiguous range `offset .. offset + n_items - 1` (`ItemVocabulary`).

    Gen_R  input: the history's item tokens joined by spaces   "<item_4> <item_17> <item_2>"
    Gen_S  input: the query text                                "brazilian jazz"
    both   target: the target item's token, then EOS           [offset + 3, eos]

Inputs always go through the tokenizer as text (never by mapping ids by hand), so a pretrained backbone
such as flan-t5-base sees exactly what its tokenizer makes of "<item_4> <item_17>"; the offline tokenizer
turns it into the bare item tokens followed by EOS, which a test checks.

The offline tokenizer is a character-level BPE trained with the `tokenizers` library (BPE, not WordPiece:
the WordPiece trainer serialises differently from one process to the next, BPE was byte-identical across
processes and thread counts in our checks), NFKC + lowercase, whitespace/punctuation pre-tokenisation,
T5's special-token ids (pad 0, EOS 1, unk 2) and EOS appended to every input. Same training text ->
byte-identical tokenizer -> same `tokenizer_hash`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)  # ids 0, 1, 2 as in T5
ITEM_TOKEN_FORMAT = "<item_{}>"


def item_token(item: int) -> str:
    return ITEM_TOKEN_FORMAT.format(int(item))


def rec_source(history: Sequence[int] | np.ndarray, vocab=None) -> str:
    """Gen_R input text: the history's item IDs joined by spaces (Table 1, concat with a space). `vocab` spells
    each item's ID (semantic IDs: several tokens); without one, atomic `<item_i>`."""
    if vocab is not None:
        return " ".join(vocab.item_text(i) for i in history)
    return " ".join(item_token(i) for i in history)


def search_source(query: str) -> str:
    """Gen_S input text: the query itself."""
    return query


@dataclass(frozen=True)
class ItemVocabulary:
    """Where the item tokens sit in the vocabulary: token id = offset + item id."""

    offset: int
    n_items: int

    def token_ids(self, items: np.ndarray | Sequence[int]) -> np.ndarray:
        return np.asarray(items, dtype=np.int64) + self.offset

    def items_of(self, token_ids: np.ndarray) -> np.ndarray:
        """Item id of each token id, -1 where the token is not an item token."""
        items = np.asarray(token_ids, dtype=np.int64) - self.offset
        return np.where((items >= 0) & (items < self.n_items), items, -1)

    def all_sequences(self) -> list[list[int]]:
        """Each item's ID token sequence (one token each: atomic IDs), for the decoder's prefix trie."""
        return [[self.offset + i] for i in range(self.n_items)]

    # The interface semantic_ids.SemanticVocabulary shares (IDs of `id_length` tokens), so the adapter needs no
    # branch per scheme.
    @property
    def n_tokens(self) -> int:
        return self.n_items

    @property
    def id_length(self) -> int:
        return 1

    def sequences(self, items: np.ndarray | Sequence[int]) -> np.ndarray:
        """[n, 1] token ids of the items' IDs."""
        return self.token_ids(items)[:, None]

    def item_text(self, item: int) -> str:
        return item_token(item)

    def items_of_sequences(self, tokens: np.ndarray) -> np.ndarray:
        """Item id of each [..., 1] token sequence, -1 where it is not an item token."""
        return self.items_of(np.asarray(tokens)[..., 0])


def add_item_tokens(tokenizer, n_items: int) -> ItemVocabulary:
    """Add `<item_0>` .. `<item_{n-1}>` to a transformers tokenizer and check they are contiguous.

    They are added as special tokens so no normaliser or pre-tokeniser ever splits them.
    """
    from tokenizers import AddedToken

    first = len(tokenizer)
    tokens = [AddedToken(item_token(i), normalized=False, special=True) for i in range(n_items)]
    tokenizer.add_tokens(tokens, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids([item_token(0), item_token(n_items - 1)]) if n_items else []
    if n_items and (ids[0] != first or ids[1] != first + n_items - 1):
        # A tokenizer that already knew some "<item_i>" string would break the id arithmetic; refuse loudly.
        raise RuntimeError(
            f"item tokens are not contiguous in the vocabulary (first {ids[0]}, last {ids[1]}, expected "
            f"{first}..{first + n_items - 1})"
        )
    return ItemVocabulary(offset=first, n_items=n_items)


def train_offline_tokenizer(texts: Iterable[str], vocab_size: int):
    """A deterministic BPE tokenizer trained on `texts`, wrapped as a transformers fast tokenizer.

    Item tokens are not added here (see `add_item_tokens`).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=1, show_progress=False
    )
    # Sorted, de-duplicated text: the trainer's input never depends on the order rows came in.
    tok.train_from_iterator(sorted(set(texts)), trainer)
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def tokenizer_hash(tokenizer) -> str:
    """sha256 of the tokenizer's full serialisation (model, normaliser, added item tokens)."""
    return "sha256:" + hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


def encode_sources(
    tokenizer, texts: Sequence[str], max_length: int, keep_end: bool = False, eos: bool = True
) -> list[list[int]]:
    """Token ids of each input text, truncated to `max_length` tokens, EOS appended (T5's convention) unless
    `eos` is False. An input that would have no token at all gets EOS alone: the encoder needs one position.

    `keep_end`: truncate from the left, keeping the most recent items of a history.
    """
    if not texts:
        return []
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left" if keep_end else "right"
    try:
        enc = tokenizer(list(texts), add_special_tokens=eos, truncation=True, max_length=max_length)
    finally:
        tokenizer.truncation_side = side
    return [list(ids) or [tokenizer.eos_token_id] for ids in enc["input_ids"]]


def target_ids(items: np.ndarray, vocab: ItemVocabulary, eos_token_id: int) -> np.ndarray:
    """[n, id_length + 1]: each target item's ID tokens, then EOS (teacher-forced labels)."""
    tokens = vocab.sequences(items)
    return np.concatenate([tokens, np.full((len(tokens), 1), eos_token_id, dtype=tokens.dtype)], axis=1)
