"""The diverse beam search decoder against a loop-by-loop reference of transformers 4.56.2's group beam search.

The reference (tests/reference_group_beam_search.py) is itself checked on hand-worked cases below, and, where
HARNESS_TRANSFORMERS_456_PYTHON names a Python with transformers 4.56.x installed, against the real library.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness.errors import HarnessError
from harness.generative import beam_step, decoder_steps
from harness.generative.decoding import DecodeOutput, diverse_beam_search
from harness.generative.trie import DEAD, PrefixTrie

sys.path.insert(0, str(Path(__file__).parent))
from reference_group_beam_search import reference_group_beam_search  # noqa: E402

PAD, EOS = 0, 1
SPECIAL = dict(decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD)
ATOMIC = [[token] for token in range(2, 42)]  # 40 single-token item IDs
MULTI = [[5, 6], [5, 7], [5, 7, 8], [9], [9, 10, 11], [12, 13], [12, 14, 15], [16], [17, 5], [18, 6, 7], [20], [21, 22], [23]]


# ---------------------------------------------------------------------------------------------- the trie


def test_trie_atomic_allows_items_then_only_eos():
    trie = PrefixTrie([[7], [3], [5]], eos_token_id=EOS)
    assert trie.allowed([]) == [3, 5, 7]
    assert trie.allowed([5]) == [EOS]
    assert trie.allowed([5, EOS]) == []
    assert trie.allowed([4]) == []
    assert trie.node([4]) == DEAD and trie.ends_only(trie.node([5])) and not trie.ends_only(trie.root)


def test_trie_multi_token_ids_with_one_the_prefix_of_another():
    trie = PrefixTrie(MULTI, eos_token_id=EOS)
    assert trie.allowed([5]) == [6, 7]
    assert trie.allowed([5, 7]) == [EOS, 8]  # [5, 7] is an item and the prefix of [5, 7, 8]
    assert trie.allowed([5, 7, 8]) == [EOS]
    assert trie.allowed([17]) == [5] and trie.allowed([17, 5]) == [EOS]
    assert trie.allowed([6]) == []


def test_trie_vectorised_views_agree_with_allowed():
    trie = PrefixTrie(MULTI, eos_token_id=EOS)
    prefixes = [[], [5], [5, 7], [5, 7, 8], [9], [9, 10], [6], [5, 7, 8, EOS]]
    nodes = [trie.node(p) for p in prefixes]
    mask = trie.allowed_mask(nodes, 30, "cpu")
    for row, prefix in enumerate(prefixes):
        assert mask[row].nonzero()[:, 0].tolist() == trie.allowed(prefix)
    tokens, lengths = trie.padded_sets(3)
    for prefix, node in zip(prefixes, nodes):
        allowed, length = trie.allowed(prefix), int(lengths[trie.set_id(node)])
        if len(allowed) > 3:
            assert length == -1
        else:
            assert tokens[trie.set_id(node), :length].tolist() == allowed
    root_tokens, root_length = trie.padded_sets(20)[0][trie.set_id(trie.root)], trie.padded_sets(20)[1][trie.set_id(trie.root)]
    assert root_tokens[:root_length].tolist() == trie.allowed([])


@pytest.mark.parametrize(
    "sequences, fault",
    [([], "no sequences"), ([[3], []], "#1 is empty"), ([[3, EOS]], "contains the EOS"), ([[-2]], "negative")],
)
def test_trie_rejects_bad_sequences(sequences, fault):
    with pytest.raises(HarnessError, match=fault):
        PrefixTrie(sequences, eos_token_id=EOS)


# ---------------------------------------------------------------------------------------------- hand-worked cases


class FixedLogitsModel(torch.nn.Module):
    """A stand-in encoder-decoder whose next-token distribution depends only on the step: row t of `table`.

    It speaks both ways the decoders call a T5: the reference's full re-run (decoder_input_ids = whole prefix,
    no cache) and our cached steps (one token per call, a cache object that counts steps and is reordered).
    """

    def __init__(self, step_probabilities: list[list[float]]):
        super().__init__()
        self.table = torch.log(torch.tensor(step_probabilities, dtype=torch.float))

    def get_encoder(self):
        return lambda input_ids, attention_mask, return_dict=True: SimpleNamespace(
            last_hidden_state=torch.zeros(input_ids.shape[0], input_ids.shape[1], 1)
        )

    def forward(self, decoder_input_ids, past_key_values=None, use_cache=False, **_):
        if use_cache:
            cache = past_key_values or _CountingCache()
            position = cache.steps
            cache.steps += 1
        else:
            cache, position = None, decoder_input_ids.shape[1] - 1
        logits = self.table[position].expand(decoder_input_ids.shape[0], 1, -1)
        return SimpleNamespace(logits=logits, past_key_values=cache)


class _CountingCache:
    def __init__(self):
        self.steps = 0

    def reorder_cache(self, rows):
        pass


def _both_decoders(model, **kwargs):
    """(ours, reference) on one dummy input, as ([sequences], [scores]) per input."""
    input_ids = torch.tensor([[5, 6, 7]])
    trie = kwargs.pop("constraint", None)
    ours = diverse_beam_search(model, input_ids, torch.ones_like(input_ids), constraint=trie, **kwargs, **SPECIAL)
    kwargs["num_return_sequences"] = kwargs.get("num_return_sequences") or kwargs["num_beams"]
    allowed_fn = (lambda b, prefix: trie.allowed(prefix)) if trie is not None else None
    sequences, scores = reference_group_beam_search(
        model, input_ids, torch.ones_like(input_ids), allowed_fn=allowed_fn, **kwargs, **SPECIAL
    )
    return ours, sequences[:, 1:].tolist(), scores.tolist()


def test_hand_worked_diverse_search_over_atomic_items():
    """Step 1: p(2, 3, 4, 5) = .30, .28, .25, .17; step 2: EOS is the only item continuation, p = .5.

    Group 0 takes items 2 and 3. Group 1 sees 2 and 3 penalised by 0.25: log .30 - .25 = -1.454 and
    log .28 - .25 = -1.523 fall below log .25 = -1.386, so it takes 4, then 2. Every beam then ends, score =
    (step-1 score + log .5) / 2 generated tokens, penalty included; all four are merged by score.
    """
    model = FixedLogitsModel([[0, 0, 0.30, 0.28, 0.25, 0.17], [0.1, 0.5, 0.1, 0.1, 0.1, 0.1]])
    trie = PrefixTrie([[2], [3], [4], [5]], eos_token_id=EOS)
    ours, ref_sequences, ref_scores = _both_decoders(
        model, num_beams=4, num_beam_groups=2, diversity_penalty=0.25, max_new_tokens=2, constraint=trie
    )
    half = math.log(0.5)
    expected_scores = [
        (math.log(0.30) + half) / 2,
        (math.log(0.28) + half) / 2,
        (math.log(0.25) + half) / 2,
        (math.log(0.30) - 0.25 + half) / 2,
    ]
    expected = [[2, EOS], [3, EOS], [4, EOS], [2, EOS]]
    assert ref_sequences == expected and ours.sequences[0].tolist() == expected
    assert ref_scores == pytest.approx(expected_scores, abs=1e-6)
    assert ours.scores[0].tolist() == pytest.approx(expected_scores, abs=1e-6)


def test_hand_worked_zero_penalty_repeats_each_group():
    model = FixedLogitsModel([[0, 0, 0.30, 0.28, 0.25, 0.17], [0.1, 0.5, 0.1, 0.1, 0.1, 0.1]])
    trie = PrefixTrie([[2], [3], [4], [5]], eos_token_id=EOS)
    ours, ref_sequences, _ = _both_decoders(
        model, num_beams=4, num_beam_groups=2, diversity_penalty=0.0, max_new_tokens=2, constraint=trie
    )
    expected = [[2, EOS], [2, EOS], [3, EOS], [3, EOS]]
    assert ref_sequences == expected and ours.sequences[0].tolist() == expected


def test_hand_worked_early_end_length_normalisation_and_padding():
    """One group of 2 beams, no constraint. Step 1: p(EOS, 2, 3) = .5, .3, .2: EOS ends at once (score log .5 / 1)
    and beams [2], [3] go on. Step 2: p(EOS, 2) = .7, .3: [2, EOS] scores log(.3 x .7) / 2 = -0.780 and fills the
    two hypotheses; [3, EOS] (-0.983) is worse than both. The best candidate left equals the worst kept
    hypothesis, so the search is done after 2 of 3 allowed steps. Shorter output is EOS then pad."""
    model = FixedLogitsModel([[0, 0.5, 0.3, 0.2, 0, 0], [0, 0.7, 0.3, 0, 0, 0], [0, 1, 0, 0, 0, 0]])
    ours, ref_sequences, ref_scores = _both_decoders(
        model, num_beams=2, num_beam_groups=1, diversity_penalty=0.0, max_new_tokens=3
    )
    expected_scores = [math.log(0.5), math.log(0.3 * 0.7) / 2]
    assert ref_sequences == [[EOS, PAD], [2, EOS]] and ours.sequences[0].tolist() == [[EOS, PAD], [2, EOS]]
    assert ref_scores == pytest.approx(expected_scores, abs=1e-6)
    assert ours.scores[0].tolist() == pytest.approx(expected_scores, abs=1e-6)


# ---------------------------------------------------------------------------------------------- random T5 models


def _tiny_t5(vocab: int = 60, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab, d_model=16, d_ff=32, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=2,
        dropout_rate=0.0, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS,
    )
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # make EOS likely in some contexts, so hypotheses end at different lengths
        model.lm_head.weight[EOS] *= 3
    return model


@pytest.fixture(scope="module")
def tiny_t5():
    return _tiny_t5()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine thread hand-offs dominate."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(batch: int, seed: int, vocab: int = 60):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, vocab, (batch, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 4:] = 0  # a padded input in every batch
    return input_ids, attention_mask


CASES = {
    # name: (batch, num_beams, groups, penalty, trie sequences, max_new_tokens, extra settings)
    "atomic-4/2": (3, 4, 2, 0.25, ATOMIC, 2, {}),
    "atomic-4/2-zero-penalty": (3, 4, 2, 0.0, ATOMIC, 2, {}),
    "atomic-6/3": (2, 6, 3, 0.25, ATOMIC, 2, {}),
    "atomic-10/5": (4, 10, 5, 0.25, ATOMIC, 2, {}),
    "atomic-10/5-zero-penalty": (1, 10, 5, 0.0, ATOMIC, 2, {}),
    "atomic-30/15": (2, 30, 15, 0.25, ATOMIC, 2, {}),
    "atomic-30/15-zero-penalty": (2, 30, 15, 0.0, ATOMIC, 2, {}),
    "atomic-catalogue-smaller-than-candidates": (2, 10, 2, 0.25, [[2], [3], [4]], 3, {}),
    "multi-4/2": (3, 4, 2, 0.25, MULTI, 4, {}),
    "multi-6/3": (2, 6, 3, 0.25, MULTI, 4, {}),
    "multi-10/5": (3, 10, 5, 0.25, MULTI, 4, {}),
    "free-6/3": (2, 6, 3, 0.25, None, 5, {}),
    "free-10/5": (1, 10, 5, 0.25, None, 4, {}),
    "free-early-stopping": (2, 6, 3, 0.5, None, 6, dict(num_return_sequences=3, length_penalty=0.6, early_stopping=True)),
    "multi-never-negative-length-penalty": (3, 6, 3, 0.25, MULTI, 5, dict(num_return_sequences=3, length_penalty=-0.5, early_stopping="never")),
    "multi-never-length-penalty-2": (3, 8, 4, 0.25, MULTI, 3, dict(num_return_sequences=8, length_penalty=2.0, early_stopping="never")),
}


@pytest.mark.parametrize("steps", ["t5", "generic"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference_on_random_t5(name, steps, tiny_t5, monkeypatch):
    """Both model-call paths (our own T5 step and transformers' cached forward), each with both ranking paths."""
    if steps == "generic":
        monkeypatch.setattr(decoder_steps.T5Steps, "supports", staticmethod(lambda model: False))
    batch, beams, groups, penalty, sequences, max_new_tokens, extra = CASES[name]
    input_ids, attention_mask = _inputs(batch, seed=len(name))
    trie = PrefixTrie(sequences, eos_token_id=EOS) if sequences is not None else None
    settings = dict(num_beams=beams, num_beam_groups=groups, diversity_penalty=penalty, max_new_tokens=max_new_tokens, **extra, **SPECIAL)
    returned = extra.get("num_return_sequences", beams)
    ref_sequences, ref_scores = reference_group_beam_search(
        tiny_t5, input_ids, attention_mask, allowed_fn=(lambda b, prefix: trie.allowed(prefix)) if trie else None,
        **{**settings, "num_return_sequences": returned},
    )
    ref_sequences = ref_sequences[:, 1:].reshape(batch, returned, -1)
    ref_scores = ref_scores.view(batch, returned)
    for shortlists in (True, False):  # the shortlist path with its exact fallback, and the exact path alone
        monkeypatch.setattr(beam_step, "_USE_SHORTLISTS", shortlists)
        ours = diverse_beam_search(tiny_t5, input_ids, attention_mask, constraint=trie, **settings)
        assert ours.sequences.tolist() == ref_sequences.tolist(), f"shortlists={shortlists}"
        torch.testing.assert_close(ours.scores, ref_scores, atol=1e-5, rtol=0)


def test_atomic_decoding_needs_no_full_vocabulary_ranking(tiny_t5, monkeypatch):
    """The speed claim: with atomic IDs every group of both steps is ranked from shortlists."""

    def refuse(*args, **kwargs):
        raise AssertionError("fell back to the exact [beams, vocab] ranking")

    monkeypatch.setattr(beam_step, "_exact_ranking", refuse)
    input_ids, attention_mask = _inputs(4, seed=3)
    trie = PrefixTrie(ATOMIC, eos_token_id=EOS)
    out = diverse_beam_search(
        tiny_t5, input_ids, attention_mask, num_beams=30, num_beam_groups=15, max_new_tokens=2, constraint=trie, **SPECIAL
    )
    assert out.sequences.shape == (4, 30, 2) and bool((out.sequences[:, :, 1] == EOS).all())


def test_decoder_runs_once_per_distinct_prefix(tiny_t5, monkeypatch):
    """Step 1 runs one row per input; later steps one row per distinct (input, prefix). Without the penalty the
    groups are identical, so 2 inputs x 10 beams in 5 groups need only 2 x 2 rows at step 2."""
    rows = []
    step = decoder_steps.T5Steps.step

    def counting(self, last_tokens):
        rows.append(last_tokens.shape[0])
        return step(self, last_tokens)

    monkeypatch.setattr(decoder_steps.T5Steps, "step", counting)
    input_ids, attention_mask = _inputs(2, seed=13)
    diverse_beam_search(tiny_t5, input_ids, attention_mask, num_beams=10, num_beam_groups=5, diversity_penalty=0.0,
                        max_new_tokens=2, constraint=PrefixTrie(ATOMIC, eos_token_id=EOS), **SPECIAL)
    assert rows == [2, 4]


def test_zero_penalty_equals_plain_beam_search_per_group(tiny_t5):
    """Without the penalty every group runs the same beam search: each of its hypotheses comes once per group."""
    input_ids, attention_mask = _inputs(3, seed=5)
    trie = PrefixTrie(MULTI, eos_token_id=EOS)
    grouped = diverse_beam_search(tiny_t5, input_ids, attention_mask, num_beams=6, num_beam_groups=3, diversity_penalty=0.0,
                                  max_new_tokens=4, constraint=trie, **SPECIAL)
    plain = diverse_beam_search(tiny_t5, input_ids, attention_mask, num_beams=2, num_beam_groups=1, max_new_tokens=4,
                                constraint=trie, **SPECIAL)
    assert grouped.sequences.tolist() == plain.sequences.repeat_interleave(3, dim=1).tolist()
    torch.testing.assert_close(grouped.scores, plain.scores.repeat_interleave(3, dim=1), atol=1e-6, rtol=0)


def test_penalty_spreads_groups_over_more_items(tiny_t5):
    input_ids, attention_mask = _inputs(4, seed=7)
    trie = PrefixTrie(ATOMIC, eos_token_id=EOS)
    distinct = {}
    for penalty in (0.0, 2.0):
        out = diverse_beam_search(tiny_t5, input_ids, attention_mask, num_beams=10, num_beam_groups=5,
                                  diversity_penalty=penalty, max_new_tokens=2, constraint=trie, **SPECIAL)
        distinct[penalty] = sum(len(set(row[:, 0].tolist())) for row in out.sequences)
    assert distinct[0.0] == 4 * 2 and distinct[2.0] > distinct[0.0]


def test_deterministic_and_restores_training_mode(tiny_t5):
    """Dropout is off during the call (same answer twice) and every module's own mode comes back after."""
    input_ids, attention_mask = _inputs(2, seed=11)
    tiny_t5.config.dropout_rate = 0.5  # only read at construction; the dropout modules below are what matter
    tiny_t5.train()
    tiny_t5.encoder.eval()  # a mixed model: the encoder frozen in eval mode, the rest training
    for module in tiny_t5.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    try:
        runs = [
            diverse_beam_search(tiny_t5, input_ids, attention_mask, num_beams=6, num_beam_groups=3, max_new_tokens=4, **SPECIAL)
            for _ in range(2)
        ]
        assert tiny_t5.training and tiny_t5.decoder.training and not tiny_t5.encoder.training
        assert all(not module.training for module in tiny_t5.encoder.modules())
    finally:
        tiny_t5.eval()
        tiny_t5.config.dropout_rate = 0.0
        for module in tiny_t5.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    assert isinstance(runs[0], DecodeOutput)
    assert torch.equal(runs[0].sequences, runs[1].sequences) and torch.equal(runs[0].scores, runs[1].scores)


# ---------------------------------------------------------------------------------------------- the model calls


def _t5(seed: int = 0, dtype=torch.float32, **config):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    settings = dict(vocab_size=60, d_model=16, d_ff=32, d_kv=8, num_layers=2, num_decoder_layers=3, num_heads=2,
                    dropout_rate=0.0, **SPECIAL)
    return T5ForConditionalGeneration(T5Config(**{**settings, **config})).eval().to(dtype)


# Each step's rows: parent row of the previous step, its input, and the token fed. Rows of an input need not be
# adjacent, an input can have no row, a parent can have several children or none.
_ROW_STEPS = [
    ([0, 0, 1, 2, 2, 2], [0, 0, 1, 2, 2, 2], [5, 9, 5, 11, 12, 13]),
    ([4, 1, 0, 5, 3, 5, 1], [2, 0, 0, 2, 2, 2, 0], [7, 8, 9, 10, 11, 12, 13]),
    ([6, 1, 3], [0, 0, 2], [20, 21, 22]),
]


@pytest.mark.parametrize(
    "config",
    [{}, dict(tie_word_embeddings=False), dict(feed_forward_proj="gated-gelu"), dict(relative_attention_num_buckets=4,
                                                                                  relative_attention_max_distance=3)],
    ids=["tied", "untied", "gated-gelu", "few-buckets"],
)
def test_t5_steps_match_transformers_cached_forward(config):
    """Our T5 step (cross-attention per input) gives transformers' logits, step after step, padded inputs included."""
    model = _t5(**config)
    input_ids, attention_mask = _inputs(3, seed=2)
    attention_mask[2, 2:] = 0
    with torch.no_grad():
        ours = decoder_steps.open_steps(model, input_ids, attention_mask)
        theirs = decoder_steps.GenericSteps(model, input_ids, attention_mask)
        assert isinstance(ours, decoder_steps.T5Steps)
        start = torch.full((3,), PAD)
        torch.testing.assert_close(ours.logits(start), theirs.logits(start), atol=2e-5, rtol=1e-5)
        for parents, inputs, tokens in _ROW_STEPS:
            for steps in (ours, theirs):
                steps.reorder(torch.tensor(parents), torch.tensor(inputs))
            tokens = torch.tensor(tokens)
            torch.testing.assert_close(ours.logits(tokens), theirs.logits(tokens), atol=2e-5, rtol=1e-5)


def test_log_probs_in_blocks_equal_a_full_log_softmax(monkeypatch):
    """gather, rows and full, block by block of rows, give one log_softmax over all the logits: bit for bit where the
    logits are given, and from hidden states up to the rounding of the product (its blocking depends on the rows)."""
    monkeypatch.setattr(decoder_steps, "_CHUNK_BYTES", 4 * 60 * 2)  # blocks of 2 rows of a 60-token vocabulary
    model = _t5(seed=4)
    input_ids, attention_mask = _inputs(5, seed=4)
    rows = torch.tensor([4, 0, 3, 3, 1])
    tokens = torch.randint(0, 60, (5, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = decoder_steps.T5Steps(model, input_ids, attention_mask).final_hidden(torch.full((5,), PAD))
        logits = model.lm_head(hidden)
    expected = torch.log_softmax(logits, dim=-1)
    projected = decoder_steps.NextTokenLogProbs(hidden, model.lm_head.weight)
    given = decoder_steps.NextTokenLogProbs(logits)
    for logprobs, tolerance in ((projected, 2e-6), (given, 0.0)):
        close = dict(atol=tolerance, rtol=0)
        torch.testing.assert_close(logprobs.gather(rows, tokens), expected[rows].gather(1, tokens), **close)
        torch.testing.assert_close(logprobs.rows(rows), expected[rows], **close)
        torch.testing.assert_close(logprobs.full(), expected, **close)
        torch.testing.assert_close(logprobs.gather(rows, tokens), expected[rows].gather(1, tokens), **close)  # from full


def test_other_models_and_dtypes_take_transformers_forward():
    input_ids, attention_mask = _inputs(2, seed=0)
    assert isinstance(decoder_steps.open_steps(_t5(), input_ids, attention_mask), decoder_steps.T5Steps)
    bf16 = decoder_steps.open_steps(_t5(dtype=torch.bfloat16), input_ids, attention_mask)
    assert isinstance(bf16, decoder_steps.GenericSteps)
    stand_in = FixedLogitsModel([[0.5, 0.5]])
    assert isinstance(decoder_steps.open_steps(stand_in, input_ids, attention_mask), decoder_steps.GenericSteps)


def test_bf16_model_decodes_through_the_fallback():
    """bf16 logits tie often: the exact ranking path and transformers' forward still give a valid, sorted answer."""
    model = _t5(seed=3, dtype=torch.bfloat16)
    input_ids, attention_mask = _inputs(3, seed=3)
    trie = PrefixTrie(MULTI, eos_token_id=EOS)
    out = diverse_beam_search(model, input_ids, attention_mask, num_beams=6, num_beam_groups=3, max_new_tokens=4,
                              constraint=trie, **SPECIAL)
    assert out.scores.dtype == torch.float32 and bool(torch.isfinite(out.scores).all())
    assert bool((out.scores[:, :-1] >= out.scores[:, 1:]).all())
    for row in out.sequences.view(-1, out.sequences.shape[-1]).tolist():
        item = row[: row.index(EOS)] if EOS in row else row
        assert item in MULTI


@pytest.mark.parametrize(
    "override, fault",
    [
        (dict(num_beams=6, num_beam_groups=4), "num_beam_groups must divide num_beams=6, got 4"),
        (dict(num_beams=1, num_beam_groups=1), "num_beams must be an integer >= 2, got 1"),
        (dict(diversity_penalty=-0.1), "diversity_penalty must be a finite number >= 0, got -0.1"),
        (dict(num_return_sequences=7), "num_return_sequences must be between 1 and num_beams=6, got 7"),
        (dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1, got 0"),
        (dict(early_stopping="sometimes"), "early_stopping must be True, False or 'never', got 'sometimes'"),
    ],
)
def test_rejects_bad_settings(override, fault, tiny_t5):
    input_ids, attention_mask = _inputs(1, seed=0)
    settings = dict(num_beams=6, num_beam_groups=3, max_new_tokens=2, **SPECIAL)
    with pytest.raises(HarnessError, match=fault.replace("(", r"\(").replace(")", r"\)")):
        diverse_beam_search(tiny_t5, input_ids, attention_mask, **{**settings, **override})


def test_rejects_trie_tokens_outside_the_vocabulary(tiny_t5):
    input_ids, attention_mask = _inputs(1, seed=0)
    trie = PrefixTrie([[3], [75]], eos_token_id=EOS)
    with pytest.raises(HarnessError, match="token id 75 is outside the model's vocabulary of 60"):
        diverse_beam_search(tiny_t5, input_ids, attention_mask, num_beams=4, num_beam_groups=2, max_new_tokens=2,
                            constraint=trie, **SPECIAL)


# ---------------------------------------------------------------------------------------------- the real 4.56


_GENERATE_WITH_456 = textwrap.dedent(
    """
    import sys, torch, transformers
    from transformers import T5Config, T5ForConditionalGeneration
    assert transformers.__version__.startswith("4.56"), transformers.__version__
    spec = torch.load(sys.argv[1])
    model = T5ForConditionalGeneration(T5Config(**spec["config"])).eval()
    missing, unexpected = model.load_state_dict(spec["state_dict"], strict=False)
    assert not unexpected and all("embed_tokens" in key for key in missing), (missing, unexpected)
    results = []
    for case in spec["cases"]:
        items, eos = case.pop("items"), spec["config"]["eos_token_id"]
        def allowed(batch_id, sent, items=items):
            prefix = sent.tolist()[1:]
            found = {(s + [eos])[len(prefix)] for s in items if len(s) >= len(prefix) and s[: len(prefix)] == prefix}
            return sorted(found) or [0]  # 4.56 refuses an empty list; only -inf beams get here
        out = model.generate(**case, prefix_allowed_tokens_fn=allowed if items else None, output_scores=True,
                             return_dict_in_generate=True, do_sample=False)
        results.append((out.sequences, out.sequences_scores))
    torch.save(results, sys.argv[2])
    """
)


@pytest.mark.skipif(
    not os.environ.get("HARNESS_TRANSFORMERS_456_PYTHON"),
    reason="set HARNESS_TRANSFORMERS_456_PYTHON to a Python with transformers 4.56.x to compare with the library itself",
)
def test_matches_transformers_4_56_itself(tiny_t5, tmp_path):
    cases = []
    for name in ("atomic-4/2", "atomic-30/15", "atomic-catalogue-smaller-than-candidates", "multi-10/5", "free-6/3",
                 "free-early-stopping", "multi-never-negative-length-penalty", "multi-never-length-penalty-2"):
        batch, beams, groups, penalty, sequences, max_new_tokens, extra = CASES[name]
        if penalty == 0:
            continue  # 4.56 refused a zero penalty with several groups
        input_ids, attention_mask = _inputs(batch, seed=len(name))
        cases.append(dict(input_ids=input_ids, attention_mask=attention_mask, num_beams=beams, num_beam_groups=groups,
                          diversity_penalty=penalty, max_new_tokens=max_new_tokens, items=sequences,
                          num_return_sequences=extra.get("num_return_sequences", beams),
                          length_penalty=extra.get("length_penalty", 1.0), early_stopping=extra.get("early_stopping", False)))
    config = {key: getattr(tiny_t5.config, key) for key in (
        "vocab_size", "d_model", "d_ff", "d_kv", "num_layers", "num_decoder_layers", "num_heads", "dropout_rate",
        "decoder_start_token_id", "pad_token_id", "eos_token_id")}
    torch.save({"config": config, "state_dict": tiny_t5.state_dict(), "cases": [dict(c) for c in cases]}, tmp_path / "in.pt")
    (tmp_path / "generate.py").write_text(_GENERATE_WITH_456)
    subprocess.run([os.environ["HARNESS_TRANSFORMERS_456_PYTHON"], str(tmp_path / "generate.py"), str(tmp_path / "in.pt"),
                    str(tmp_path / "out.pt")], check=True)
    for case, (sequences, scores) in zip(cases, torch.load(tmp_path / "out.pt")):
        items = case.pop("items")
        trie = PrefixTrie(items, eos_token_id=EOS) if items else None
        ours = diverse_beam_search(tiny_t5, case.pop("input_ids"), case.pop("attention_mask"), constraint=trie, **case, **SPECIAL)
        batch, returned = ours.scores.shape
        assert ours.sequences.tolist() == sequences[:, 1:].reshape(batch, returned, -1).tolist()
        torch.testing.assert_close(ours.scores, scores.view(batch, returned), atol=1e-5, rtol=0)
