"""Diverse (group) beam search for T5-style encoder-decoder models, constrained by a prefix trie.

transformers 4.57 moved group beam search out of the library, so the harness owns it. It reproduces, to the
token and up to float rounding in the scores, what transformers 4.56.2 returned from
`model.generate(num_beams=N, num_beam_groups=G, diversity_penalty=p, prefix_allowed_tokens_fn=..., output_scores=True,
return_dict_in_generate=True)`, i.e. `_group_beam_search` + `BeamSearchScorer` + `BeamHypotheses` +
`HammingDiversityLogitsProcessor` + `PrefixConstrainedLogitsProcessor`. docs/decoding.md maps each piece here to
that code; tests/reference_group_beam_search.py is a slow loop-by-loop transcription the tests compare against.

What differs from transformers is only how the work is done, never what is computed:
- the encoder runs once per input; the decoder runs once per step on the batch's distinct (input, prefix)
  pairs rather than on every beam (beams with the same prefix have the same next-token distribution): one row
  per input at the first step, where every beam holds only the decoder start token, and at later steps as
  many rows as there are distinct prefixes (with atomic IDs, distinct items per query);
- the model calls live in harness.generative.decoder_steps: for a float32 T5 our own decoder step, which keeps
  the cross-attention keys/values once per input instead of copying them to every row, and otherwise
  transformers' cached forward with its cache reordered to those rows;
- log-softmax rows are computed only where the ranking reads them (with atomic IDs the EOS step needs one
  value per row), block by block of rows, never as one [rows, vocabulary] tensor;
- groups are processed in order as in 4.56, each vectorised over the batch; each group is ranked from a short
  list of every beam's best allowed tokens where that provably gives transformers' answer, and from the full
  [group beams x vocabulary] candidates (transformers' own computation) where ties could make it differ;
- the trie mask comes from cached dense rows per distinct allowed-token set, not a Python call per beam;
- only EOS candidates (finished hypotheses) go through Python, into a port of `BeamHypotheses`.

The search's state is in harness.generative.beam_state, one step's ranking of the groups in
harness.generative.beam_step; this module is the entry point and assembles the results.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from harness.generative.beam_state import BeamState, Settings
from harness.generative.beam_step import Step, advance_all_groups
from harness.generative.decoder_steps import open_steps
from harness.generative.trie import PrefixTrie

__all__ = ["DecodeOutput", "PrefixTrie", "diverse_beam_search"]


@dataclass
class DecodeOutput:
    """Best hypotheses per input, best first, as transformers' `sequences` / `sequences_scores`.

    sequences: [batch, num_return_sequences, width] generated tokens (no decoder start), each followed by EOS
      where it ended with one and padded with pad_token_id; width = min(longest hypothesis + 1, max_new_tokens),
      i.e. transformers' sequences[:, 1:].
    scores: [batch, num_return_sequences] float32, sum of processed log-probabilities / length ** length_penalty.
    """

    sequences: torch.LongTensor
    scores: torch.FloatTensor


@torch.no_grad()
def diverse_beam_search(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor,
    *,
    num_beams: int,
    num_beam_groups: int,
    diversity_penalty: float = 0.25,
    max_new_tokens: int,
    constraint: PrefixTrie | None = None,
    num_return_sequences: int | None = None,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    decoder_start_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
) -> DecodeOutput:
    """Group beam search with Hamming diversity (Vijayakumar et al. 2016), transformers <= 4.56 semantics.

    num_return_sequences defaults to num_beams (the harness asks for K = num_beams items). A diversity_penalty
    of 0 runs the groups without the Hamming processor (transformers refused 0 with several groups).
    The model is put in eval mode for the call (dropout would make decoding random) and restored after.
    """
    settings = Settings.checked(
        input_ids, attention_mask, num_beams, num_beam_groups, diversity_penalty, max_new_tokens,
        num_return_sequences, length_penalty, early_stopping,
    )
    with _eval_mode(model):
        decoder = open_steps(model, input_ids, attention_mask)
        state = BeamState(settings, input_ids.shape[0], constraint, input_ids.device)
        start = torch.full((input_ids.shape[0],), decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        last_tokens = start
        for number in range(1, settings.max_new_tokens + 1):
            step = Step(number, decoder.step(last_tokens), state, constraint, eos_token_id, pad_token_id)
            parents, new_tokens = advance_all_groups(step)
            state.extend(parents, new_tokens)
            if state.all_done() or step.last:
                break
            state.regroup(parents, new_tokens, constraint)
            decoder.reorder(state.row_parent, state.row_input)
            last_tokens = state.row_last_token
        state.finalize_open_beams()
    return _best_hypotheses(state, settings, eos_token_id, pad_token_id, input_ids.device)


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    """Modules in training mode switch to eval for the call and back after; a model already in eval mode is left
    alone (model.eval() walks and sets every module, ~10 ms on a small T5)."""
    training = [module for module in model.modules() if module.training]
    for module in training:
        module.training = False
    try:
        yield
    finally:
        for module in training:
            module.training = True


# ---------------------------------------------------------------------------------------------- results


def _best_hypotheses(state: BeamState, settings: Settings, eos_token_id, pad_token_id, device) -> DecodeOutput:
    """All groups' hypotheses of an input, sorted by score (stable), taken from the best end (ties: last first)."""
    chosen: list[list[tuple[float, tuple[int, ...]]]] = []
    for groups in state.hypotheses:
        ranked = sorted((beam for hyps in groups for beam in hyps.beams), key=lambda beam: beam[0])
        chosen.append([ranked.pop() for _ in range(settings.num_return_sequences)])
    longest = max(len(tokens) for best in chosen for _, tokens in best)
    width = min(longest + 1, settings.max_new_tokens)
    rows = [_padded_row(tokens, width, eos_token_id, pad_token_id) for best in chosen for _, tokens in best]
    sequences = torch.tensor(rows, dtype=torch.long).view(state.batch, settings.num_return_sequences, width)
    scores = torch.tensor([[score for score, _ in best] for best in chosen], dtype=torch.float)
    return DecodeOutput(sequences=sequences.to(device), scores=scores.to(device))


def _padded_row(tokens: tuple[int, ...], width: int, eos_token_id: int, pad_token_id: int) -> list[int]:
    """The hypothesis, then EOS where it fits (transformers appends it to every shorter one), then padding."""
    row = list(tokens[:width])
    if len(row) < width:
        row.append(eos_token_id)
    return row + [pad_token_id] * (width - len(row))
