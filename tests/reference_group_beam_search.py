"""Reference for the decoder tests: transformers 4.56.2's group beam search, transcribed loop by loop.

Read it next to transformers v4.56.2: `GenerationMixin._group_beam_search` (generation/utils.py),
`BeamSearchScorer.process` / `.finalize` and `BeamHypotheses` (generation/beam_search.py),
`HammingDiversityLogitsProcessor` and `PrefixConstrainedLogitsProcessor` (generation/logits_process.py).
Each block below names the piece it transcribes. Deliberately slow and plain: no key/value cache (the whole
model runs on the whole prefix every step), one Python list of token ids per beam, Python loops over batch,
beams and candidates. Scores stay float32 torch tensors and candidates come from torch.topk on the same
[batch, group_size * vocab] layout as the original, because both decide ties (see the -1e9 start scores).

It shares no code with harness.generative.decoding on purpose.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch


class BeamHypotheses:
    """generation/beam_search.py BeamHypotheses (tokens as lists, beam_indices dropped)."""

    def __init__(self, num_beams: int, length_penalty: float, early_stopping, max_length: int):
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_length = max_length
        self.num_beams = num_beams
        self.beams: list = []
        self.worst_score = 1e9

    def __len__(self):
        return len(self.beams)

    def add(self, hyp: list[int], sum_logprobs: float, generated_len: int):
        score = sum_logprobs / (generated_len**self.length_penalty)
        if len(self) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp))
            if len(self) > self.num_beams:
                sorted_next_scores = sorted([(s, idx) for idx, (s, _) in enumerate(self.beams)])
                del self.beams[sorted_next_scores[0][1]]
                self.worst_score = sorted_next_scores[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int, decoder_prompt_len: int) -> bool:
        if len(self) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        elif self.early_stopping is False:
            highest_attainable_score = best_sum_logprobs / (cur_len - decoder_prompt_len) ** self.length_penalty
            return self.worst_score >= highest_attainable_score
        else:
            if self.length_penalty > 0.0:
                highest_attainable_score = best_sum_logprobs / (self.max_length - decoder_prompt_len) ** self.length_penalty
            else:
                highest_attainable_score = best_sum_logprobs / (cur_len - decoder_prompt_len) ** self.length_penalty
            return self.worst_score >= highest_attainable_score


def reference_group_beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    num_beams: int,
    num_beam_groups: int,
    diversity_penalty: float,
    max_new_tokens: int,
    allowed_fn: Callable[[int, Sequence[int]], Sequence[int]] | None = None,
    num_return_sequences: int = 1,
    length_penalty: float = 1.0,
    early_stopping=False,
    decoder_start_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (sequences [batch * num_return_sequences, length] with the decoder start, scores [batch * nrs]),
    i.e. transformers' `sequences` and `sequences_scores`.

    allowed_fn(batch_id, generated_tokens) plays prefix_allowed_tokens_fn (generated_tokens = the beam without
    its decoder start token). Where it returns an empty list, every token is masked; 4.56 raised instead, but
    only beams already at -inf (or of a finished group) can reach such a prefix, and for those every score is
    -inf whatever the mask, so the results are the same as with any non-empty answer.
    """
    batch_size = input_ids.shape[0]
    num_sub_beams = num_beams // num_beam_groups
    decoder_prompt_len = 1
    max_length = decoder_prompt_len + max_new_tokens
    device = input_ids.device

    # generate(): expand inputs to num_beams rows per input (_expand_inputs_for_generation)
    encoder_input_ids = input_ids.repeat_interleave(num_beams, dim=0)
    encoder_attention_mask = attention_mask.repeat_interleave(num_beams, dim=0)
    beams: list[list[int]] = [[decoder_start_token_id] for _ in range(batch_size * num_beams)]  # `input_ids`

    # BeamSearchScorer.__init__: one BeamHypotheses of num_beams=group_size per (input, group)
    beam_hyps = [
        BeamHypotheses(num_sub_beams, length_penalty, early_stopping, max_length)
        for _ in range(batch_size * num_beam_groups)
    ]
    done = [False] * (batch_size * num_beam_groups)

    beam_scores = torch.full((batch_size, num_beams), -1e9, dtype=torch.float, device=device)
    beam_scores[:, ::num_sub_beams] = 0
    beam_scores = beam_scores.view((batch_size * num_beams,))

    cur_len = decoder_prompt_len
    while True:
        current_tokens = [0] * (batch_size * num_beams)
        # one decoder step on all beams: here the full model on the full prefix, no cache
        logits = model(
            input_ids=encoder_input_ids,
            attention_mask=encoder_attention_mask,
            decoder_input_ids=torch.tensor(beams, dtype=torch.long, device=device),
            use_cache=False,
        ).logits[:, -1, :]
        vocab_size = logits.shape[-1]

        for beam_group_idx in range(num_beam_groups):
            group_start_idx = beam_group_idx * num_sub_beams
            group_end_idx = group_start_idx + num_sub_beams
            group_size = group_end_idx - group_start_idx
            batch_group_indices = [
                batch_idx * num_beams + idx for batch_idx in range(batch_size) for idx in range(group_start_idx, group_end_idx)
            ]
            group_input_ids = [list(beams[i]) for i in batch_group_indices]

            next_token_logits = logits[batch_group_indices].float()
            next_token_scores = torch.log_softmax(next_token_logits, dim=-1)

            # logits processors, in _get_logits_processor's order: Hamming diversity, then prefix constraint
            processed = next_token_scores
            if diversity_penalty > 0.0:
                processed = _hamming(processed, current_tokens, beam_group_idx, num_beams, num_sub_beams, diversity_penalty)
            if allowed_fn is not None:
                processed = _prefix_constrained(processed, group_input_ids, num_sub_beams, allowed_fn)

            next_token_scores = processed + beam_scores[batch_group_indices].unsqueeze(-1)
            next_token_scores = next_token_scores.view(batch_size, group_size * vocab_size)
            next_token_scores, next_tokens = torch.topk(next_token_scores, 2 * group_size, dim=1, largest=True, sorted=True)
            next_indices = torch.div(next_tokens, vocab_size, rounding_mode="floor")
            next_tokens = next_tokens % vocab_size

            # BeamSearchScorer.process
            next_beam_scores = torch.zeros((batch_size, group_size), dtype=torch.float, device=device)
            next_beam_tokens = [[0] * group_size for _ in range(batch_size)]
            next_beam_indices = [[0] * group_size for _ in range(batch_size)]
            for batch_idx in range(batch_size):
                batch_group_idx = batch_idx * num_beam_groups + beam_group_idx
                if done[batch_group_idx]:
                    next_beam_scores[batch_idx, :] = 0
                    next_beam_tokens[batch_idx] = [pad_token_id] * group_size
                    next_beam_indices[batch_idx] = [0] * group_size
                    continue
                beam_idx = 0
                for beam_token_rank in range(2 * group_size):
                    next_token = int(next_tokens[batch_idx, beam_token_rank])
                    next_score = next_token_scores[batch_idx, beam_token_rank]
                    batch_beam_idx = batch_idx * group_size + int(next_indices[batch_idx, beam_token_rank])
                    if next_token == eos_token_id:
                        if beam_token_rank >= group_size:
                            continue
                        beam_hyps[batch_group_idx].add(
                            list(group_input_ids[batch_beam_idx]),
                            next_score.item(),
                            generated_len=(cur_len + 1) - decoder_prompt_len,
                        )
                    else:
                        next_beam_scores[batch_idx, beam_idx] = next_score
                        next_beam_tokens[batch_idx][beam_idx] = next_token
                        next_beam_indices[batch_idx][beam_idx] = batch_beam_idx
                        beam_idx += 1
                    if beam_idx == group_size:
                        break
                assert beam_idx == group_size, "more EOS candidates than beams: cannot happen with one EOS id"
                done[batch_group_idx] = done[batch_group_idx] or beam_hyps[batch_group_idx].is_done(
                    next_token_scores[batch_idx].max().item(), cur_len + 1, decoder_prompt_len
                )

            # back in _group_beam_search: reorder the group's beams and note the tokens it chose
            beam_scores[batch_group_indices] = next_beam_scores.view(-1)
            for position, row in enumerate(batch_group_indices):
                batch_idx, offset = divmod(position, group_size)
                parent = next_beam_indices[batch_idx][offset]
                beams[row] = list(group_input_ids[parent])
                current_tokens[row] = next_beam_tokens[batch_idx][offset]

        for row in range(batch_size * num_beams):
            beams[row] = beams[row] + [current_tokens[row]]
        cur_len += 1
        if all(done) or cur_len >= max_length:
            break

    return _finalize(beams, beam_scores, beam_hyps, done, batch_size, num_beam_groups, num_sub_beams,
                     num_return_sequences, max_length, decoder_prompt_len, eos_token_id, pad_token_id)


def _hamming(scores, current_tokens, beam_group_idx, num_beams, num_sub_beams, diversity_penalty):
    """logits_process.py HammingDiversityLogitsProcessor.__call__."""
    group_start_idx = beam_group_idx * num_sub_beams
    if group_start_idx == 0:
        return scores
    batch_size = len(current_tokens) // num_beams
    group_size = num_sub_beams
    scores_processed = scores.clone()
    for batch_idx in range(batch_size):
        previous_group_tokens = torch.tensor(
            current_tokens[batch_idx * num_beams : batch_idx * num_beams + group_start_idx], dtype=torch.long
        )
        token_frequency = torch.bincount(previous_group_tokens, minlength=scores.shape[-1]).to(scores.device)
        scores_processed[batch_idx * group_size : (batch_idx + 1) * group_size] -= diversity_penalty * token_frequency
    return scores_processed


def _prefix_constrained(scores, group_input_ids, num_sub_beams, allowed_fn):
    """logits_process.py PrefixConstrainedLogitsProcessor.__call__ (num_beams there = group size)."""
    mask = torch.full_like(scores, -math.inf)
    batch_size = len(group_input_ids) // num_sub_beams
    for batch_id in range(batch_size):
        for beam_id in range(num_sub_beams):
            sent = group_input_ids[batch_id * num_sub_beams + beam_id]
            allowed = list(allowed_fn(batch_id, sent[1:]))
            if allowed:
                mask[batch_id * num_sub_beams + beam_id, allowed] = 0
    return scores + mask


def _finalize(beams, beam_scores, beam_hyps, done, batch_size, num_beam_groups, group_size,
              num_return_sequences, max_length, decoder_prompt_len, eos_token_id, pad_token_id):
    """BeamSearchScorer.finalize."""
    for batch_group_idx, beam_hyp in enumerate(beam_hyps):
        if done[batch_group_idx]:
            continue
        for index_per_group in range(group_size):
            batch_beam_idx = batch_group_idx * group_size + index_per_group
            final_tokens = beams[batch_beam_idx]
            beam_hyp.add(list(final_tokens), beam_scores[batch_beam_idx].item(), len(final_tokens) - decoder_prompt_len)

    best, best_scores = [], []
    for i in range(batch_size):
        beam_hyps_in_batch = beam_hyps[i * num_beam_groups : (i + 1) * num_beam_groups]
        candidate_beams = [beam for beam_hyp in beam_hyps_in_batch for beam in beam_hyp.beams]
        sorted_hyps = sorted(candidate_beams, key=lambda x: x[0])
        for _ in range(num_return_sequences):
            score, hyp = sorted_hyps.pop()
            best.append(hyp)
            best_scores.append(score)

    sent_lengths = [len(hyp) for hyp in best]
    sent_max_len = min(max(sent_lengths) + 1, max_length)
    decoded = torch.full((len(best), sent_max_len), pad_token_id, dtype=torch.long)
    for i, hyp in enumerate(best):
        decoded[i, : len(hyp)] = torch.tensor(hyp, dtype=torch.long)
        if len(hyp) < sent_max_len:
            decoded[i, len(hyp)] = eos_token_id
    return decoded, torch.tensor(best_scores, dtype=torch.float32)
