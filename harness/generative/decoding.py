"""Diverse (group) beam search for T5-style encoder-decoder models, constrained by a prefix trie.

transformers 4.57 moved group beam search out of the library, so the harness owns it. It reproduces, to the
token and up to float rounding in the scores, what transformers 4.56.2 returned from
`model.generate(num_beams=N, num_beam_groups=G, diversity_penalty=p, prefix_allowed_tokens_fn=..., output_scores=True,
return_dict_in_generate=True)`, i.e. `_group_beam_search` + `BeamSearchScorer` + `BeamHypotheses` +
`HammingDiversityLogitsProcessor` + `PrefixConstrainedLogitsProcessor`. docs/decoding.md maps each piece here to
that code; tests/reference_group_beam_search.py is a slow loop-by-loop transcription the tests compare against.

What differs from transformers is only how the work is done, never what is computed:
- the encoder runs once per input and the first decoder step once per input (every beam starts from the same
  decoder start token), then the key/value cache is expanded to all beams;
- one decoder forward per step for all beams (as 4.56), groups then processed in order, each vectorised over
  the batch;
- the trie mask is built from a few cached dense rows (atomic IDs: one row at depth 0, one at depth 1), not by a
  Python call per beam;
- only EOS candidates (finished hypotheses) go through Python, into a port of `BeamHypotheses`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch

from harness.errors import HarnessError
from harness.generative.trie import DEAD, PrefixTrie

__all__ = ["DecodeOutput", "PrefixTrie", "diverse_beam_search"]

# transformers 4.56 starts every beam but the first of each group at -1e9 (not -inf), so that at step 1 the
# group's candidates all come from its first beam. Kept as is: it decides ties when few tokens are allowed.
_INITIAL_OTHER_BEAM_SCORE = -1e9


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
    settings = _Settings.checked(
        input_ids, attention_mask, num_beams, num_beam_groups, diversity_penalty, max_new_tokens,
        num_return_sequences, length_penalty, early_stopping,
    )
    with _eval_mode(model):
        decoder = _CachedDecoder(model, input_ids, attention_mask, num_beams)
        state = _BeamState(settings, input_ids.shape[0], constraint, input_ids.device)
        start = torch.full((input_ids.shape[0],), decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        last_tokens = start
        for step in range(1, settings.max_new_tokens + 1):
            logprobs = _step_logprobs(decoder.logits(last_tokens), state, constraint)
            parents, last_tokens = _advance_all_groups(logprobs, state, settings, step, eos_token_id, pad_token_id)
            state.reorder(parents, last_tokens, constraint)
            if state.all_done() or step == settings.max_new_tokens:
                break
            # the first forward ran on one row per input; parents index those rows only then
            decoder.reorder(parents if step > 1 else parents // settings.num_beams)
        state.finalize_open_beams()
    return _best_hypotheses(state, settings, eos_token_id, pad_token_id, input_ids.device)


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Settings:
    num_beams: int
    num_beam_groups: int
    group_size: int
    diversity_penalty: float
    max_new_tokens: int
    num_return_sequences: int
    length_penalty: float
    early_stopping: bool | str

    @classmethod
    def checked(
        cls, input_ids, attention_mask, num_beams, num_beam_groups, diversity_penalty, max_new_tokens,
        num_return_sequences, length_penalty, early_stopping,
    ) -> "_Settings":
        def fail(message: str) -> None:
            raise HarnessError(f"diverse_beam_search: {message}")

        if not _is_int(num_beams) or num_beams < 2:
            fail(f"num_beams must be an integer >= 2, got {num_beams!r}")
        if not _is_int(num_beam_groups) or not 1 <= num_beam_groups <= num_beams or num_beams % num_beam_groups:
            fail(f"num_beam_groups must divide num_beams={num_beams}, got {num_beam_groups!r}")
        if not isinstance(diversity_penalty, (int, float)) or not math.isfinite(diversity_penalty) or diversity_penalty < 0:
            fail(f"diversity_penalty must be a finite number >= 0, got {diversity_penalty!r}")
        if not _is_int(max_new_tokens) or max_new_tokens < 1:
            fail(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if num_return_sequences is None:
            num_return_sequences = num_beams
        if not _is_int(num_return_sequences) or not 1 <= num_return_sequences <= num_beams:
            fail(f"num_return_sequences must be between 1 and num_beams={num_beams}, got {num_return_sequences!r}")
        if not isinstance(length_penalty, (int, float)) or not math.isfinite(length_penalty):
            fail(f"length_penalty must be a finite number, got {length_penalty!r}")
        if not (isinstance(early_stopping, bool) or early_stopping == "never"):
            fail(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
        if input_ids.dim() != 2 or input_ids.shape[0] == 0:
            fail(f"input_ids must be a non-empty [batch, length] tensor, got shape {tuple(input_ids.shape)}")
        if attention_mask.shape != input_ids.shape:
            fail(f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids {tuple(input_ids.shape)}")
        return cls(
            num_beams, num_beam_groups, num_beams // num_beam_groups, float(diversity_penalty), max_new_tokens,
            num_return_sequences, float(length_penalty), early_stopping,
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------- model calls


class _CachedDecoder:
    """Runs the encoder once, then one cached decoder step per call (T5ForConditionalGeneration's interface)."""

    def __init__(self, model, input_ids, attention_mask, num_beams: int):
        self.model = model
        self.num_beams = num_beams
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        self.hidden = encoded.last_hidden_state
        self.mask = attention_mask
        self.cache = None
        self.expanded = False

    def logits(self, last_tokens: torch.LongTensor) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=self.hidden),
            attention_mask=self.mask,
            decoder_input_ids=last_tokens.unsqueeze(-1),
            past_key_values=self.cache,
            use_cache=True,
            return_dict=True,
        )
        self.cache = out.past_key_values
        return out.logits[:, -1, :]

    def reorder(self, rows: torch.LongTensor) -> None:
        """Row i of the next step continues row rows[i] of this one (the beam it extends)."""
        if not self.expanded:  # one row per input so far: expand the encoder side to every beam
            self.hidden = self.hidden.repeat_interleave(self.num_beams, dim=0)
            self.mask = self.mask.repeat_interleave(self.num_beams, dim=0)
            self.expanded = True
        self.cache = _reorder_cache(self.cache, rows)


def _reorder_cache(cache, rows: torch.LongTensor):
    if hasattr(cache, "reorder_cache"):  # transformers' Cache objects (EncoderDecoderCache in 4.4x-5.x)
        cache.reorder_cache(rows)
        return cache
    # legacy tuple-of-tuples cache of older transformers versions
    return tuple(tuple(t.index_select(0, rows.to(t.device)) for t in layer) for layer in cache)


# ---------------------------------------------------------------------------------------------- beam state


class _Hypotheses:
    """Finished hypotheses of one (input, group): transformers 4.56's BeamHypotheses, without tensors.

    `beams` keeps insertion order (with deletions), which decides ties when groups are merged.
    """

    def __init__(self, capacity: int, length_penalty: float, early_stopping: bool | str, max_new_tokens: int):
        self.capacity = capacity
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_new_tokens = max_new_tokens
        self.beams: list[tuple[float, tuple[int, ...]]] = []
        self.worst_score = 1e9

    def add(self, tokens: tuple[int, ...], sum_logprobs: float, generated_len: int) -> None:
        """generated_len counts generated tokens including the EOS that finished it (if it did)."""
        score = sum_logprobs / (generated_len**self.length_penalty)
        if len(self.beams) < self.capacity or score > self.worst_score:
            self.beams.append((score, tokens))
            if len(self.beams) > self.capacity:
                ranked = sorted((s, index) for index, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, generated_len: int) -> bool:
        if len(self.beams) < self.capacity:
            return False
        if self.early_stopping is True:
            return True
        # False: a heuristic bound from the current length; "never": the true bound, which for a positive
        # length_penalty comes from the longest allowed length
        bound_len = generated_len
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            bound_len = self.max_new_tokens
        return self.worst_score >= best_sum_logprobs / bound_len**self.length_penalty


class _BeamState:
    """All beams of the batch, rows ordered (input, group, beam-in-group) as in transformers."""

    def __init__(self, settings: _Settings, batch: int, constraint: PrefixTrie | None, device):
        self.settings = settings
        self.batch = batch
        rows = batch * settings.num_beams
        self.tokens = torch.empty((rows, 0), dtype=torch.long, device=device)  # generated so far
        scores = torch.full((batch, settings.num_beams), _INITIAL_OTHER_BEAM_SCORE, dtype=torch.float, device=device)
        scores[:, :: settings.group_size] = 0
        self.scores = scores.view(rows)
        self.nodes: list[int] | None = [constraint.root] * rows if constraint is not None else None
        self.hypotheses = [
            [
                _Hypotheses(settings.group_size, settings.length_penalty, settings.early_stopping, settings.max_new_tokens)
                for _ in range(settings.num_beam_groups)
            ]
            for _ in range(batch)
        ]
        self.done = [[False] * settings.num_beam_groups for _ in range(batch)]
        self._tokens_list: list[list[int]] | None = None

    def tokens_of(self, row: int) -> tuple[int, ...]:
        if self._tokens_list is None:
            self._tokens_list = self.tokens.tolist()
        return tuple(self._tokens_list[row])

    def reorder(self, parents: torch.LongTensor, new_tokens: torch.LongTensor, constraint: PrefixTrie | None) -> None:
        self.tokens = torch.cat([self.tokens[parents], new_tokens.unsqueeze(-1)], dim=1)
        self._tokens_list = None
        if self.nodes is not None:
            old = self.nodes
            self.nodes = [constraint.step(old[p], t) for p, t in zip(parents.tolist(), new_tokens.tolist())]

    def all_done(self) -> bool:
        return all(all(groups) for groups in self.done)

    def finalize_open_beams(self) -> None:
        """Groups not done yet add their live beams as hypotheses (BeamSearchScorer.finalize)."""
        settings = self.settings
        scores = self.scores.tolist()
        generated_len = self.tokens.shape[1]
        for b in range(self.batch):
            for g in range(settings.num_beam_groups):
                if self.done[b][g]:
                    continue
                first_row = b * settings.num_beams + g * settings.group_size
                for row in range(first_row, first_row + settings.group_size):
                    self.hypotheses[b][g].add(self.tokens_of(row), scores[row], generated_len)


# ---------------------------------------------------------------------------------------------- one step


def _step_logprobs(logits: torch.Tensor, state: _BeamState, constraint: PrefixTrie | None) -> torch.Tensor:
    """log_softmax in float32, disallowed tokens at -inf; [batch, rows per input, vocab].

    Rows per input is 1 at the first step (all beams share the decoder start token) and num_beams after.
    Masking before the diversity penalty gives the same numbers as transformers' order (penalty, then mask):
    a masked token is -inf either way and an allowed one gets + 0.
    """
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    vocab = logprobs.shape[-1]
    if constraint is not None:
        nodes = state.nodes if logprobs.shape[0] == len(state.nodes) else state.nodes[:: state.settings.num_beams]
        allowed = constraint.allowed_mask(nodes, vocab, logprobs.device)
        logprobs.masked_fill_(~allowed, -math.inf)
    return logprobs.view(state.batch, -1, vocab)


def _advance_all_groups(
    logprobs: torch.Tensor, state: _BeamState, settings: _Settings, step: int, eos_token_id: int, pad_token_id: int
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Groups in order, each penalised by the tokens the earlier groups chose at this step.

    Returns, per new beam row, the row it extends and the token it appends.
    """
    batch, beams, size = state.batch, settings.num_beams, settings.group_size
    device = logprobs.device
    chosen = torch.zeros((batch, beams), dtype=torch.long, device=device)  # transformers' current_tokens
    parents = torch.zeros((batch, beams), dtype=torch.long, device=device)
    new_scores = torch.zeros((batch, beams), dtype=torch.float, device=device)
    counts = torch.zeros((batch, logprobs.shape[-1]), dtype=torch.long, device=device)
    penalise = settings.diversity_penalty > 0
    first_rows = torch.arange(batch, device=device).unsqueeze(1) * beams
    for group in range(settings.num_beam_groups):
        cols = slice(group * size, (group + 1) * size)
        earlier = chosen[:, : group * size] if penalise and group > 0 else None
        scores, tokens, local = _advance_group(logprobs, state, settings, group, step, earlier, counts, eos_token_id, pad_token_id)
        chosen[:, cols], new_scores[:, cols] = tokens, scores
        parents[:, cols] = first_rows + group * size + local
        if penalise:
            counts.scatter_add_(1, tokens, torch.ones_like(tokens))
    state.scores = new_scores.view(-1)
    return parents.view(-1), chosen.view(-1)


def _advance_group(
    logprobs, state: _BeamState, settings: _Settings, group: int, step: int, earlier, counts, eos_token_id, pad_token_id
):
    """One group of one step for the whole batch: topk of 2 x group_size, then BeamSearchScorer.process."""
    batch, size, vocab = state.batch, settings.group_size, logprobs.shape[-1]
    cols = slice(group * size, (group + 1) * size)
    beam_scores = state.scores.view(batch, settings.num_beams)[:, cols].unsqueeze(-1)  # [batch, size, 1]
    group_logprobs = logprobs[:, cols] if logprobs.shape[1] > 1 else logprobs.expand(batch, size, vocab)
    candidates = group_logprobs + beam_scores  # a fresh [batch, size, vocab] tensor
    if earlier is not None:
        _apply_hamming_penalty(candidates, group_logprobs, beam_scores, earlier, counts, settings.diversity_penalty)
    top_scores, top_flat = torch.topk(candidates.view(batch, size * vocab), 2 * size, dim=1, largest=True, sorted=True)
    top_beams = torch.div(top_flat, vocab, rounding_mode="floor")
    top_tokens = top_flat % vocab

    # the first group_size non-EOS candidates continue (<= one EOS per beam, so there are enough)
    is_eos = top_tokens == eos_token_id
    keep = ~is_eos & ((~is_eos).cumsum(dim=1) <= size)
    picks = keep.nonzero()[:, 1].view(batch, size)
    scores, tokens, local = top_scores.gather(1, picks), top_tokens.gather(1, picks), top_beams.gather(1, picks)

    was_done = [state.done[b][group] for b in range(batch)]
    _record_finished(state, group, step, top_scores, top_beams, is_eos, was_done)
    if any(was_done):  # a finished group pads: score 0, token pad (its rows are never read again)
        done_rows = torch.tensor(was_done, device=scores.device)
        scores = scores.masked_fill(done_rows.unsqueeze(1), 0.0)
        tokens = tokens.masked_fill(done_rows.unsqueeze(1), pad_token_id)
        local = torch.where(done_rows.unsqueeze(1), torch.arange(size, device=scores.device), local)
    return scores, tokens, local


def _apply_hamming_penalty(candidates, group_logprobs, beam_scores, earlier, counts, penalty: float) -> None:
    """Rewrite the entries of tokens chosen by earlier groups as transformers computes them.

    transformers: (logprob - penalty * count) + beam_score over the whole vocabulary; an entry with count 0 is
    logprob + beam_score, which `candidates` already holds, so only the counted tokens are recomputed, in the
    same float32 order of operations (so values match bit for bit).
    """
    batch, size, _ = candidates.shape
    index = earlier.unsqueeze(1).expand(batch, size, earlier.shape[1])
    penalties = (penalty * counts.gather(1, earlier)).unsqueeze(1)  # float32, like penalty * bincount
    candidates.scatter_(2, index, (group_logprobs.gather(2, index) - penalties) + beam_scores)


def _record_finished(state: _BeamState, group, step, top_scores, top_beams, is_eos, was_done) -> None:
    """EOS among the top group_size candidates: a finished hypothesis; then the group's done check."""
    settings = state.settings
    size = settings.group_size
    finished = is_eos[:, :size].nonzero().tolist()
    if finished:
        scores = top_scores[:, :size].tolist()
        beams = top_beams[:, :size].tolist()
        for b, rank in finished:  # row-major: per input, in rank order, as BeamSearchScorer.process
            if was_done[b]:
                continue
            row = b * settings.num_beams + group * size + beams[b][rank]
            state.hypotheses[b][group].add(state.tokens_of(row), scores[b][rank], step)
    best = top_scores[:, 0].tolist()
    for b in range(state.batch):
        if not was_done[b]:
            state.done[b][group] = state.hypotheses[b][group].is_done(best[b], step)


# ---------------------------------------------------------------------------------------------- results


def _best_hypotheses(state: _BeamState, settings: _Settings, eos_token_id, pad_token_id, device) -> DecodeOutput:
    """All groups' hypotheses of an input, sorted by score (stable), taken from the best end (ties: last first)."""
    chosen: list[list[tuple[float, tuple[int, ...]]]] = []
    for groups in state.hypotheses:
        ranked = sorted((beam for hyps in groups for beam in hyps.beams), key=lambda beam: beam[0])
        chosen.append([ranked.pop() for _ in range(settings.num_return_sequences)])
    longest = max(len(tokens) for best in chosen for _, tokens in best)
    width = min(longest + 1, settings.max_new_tokens)
    sequences = torch.full((state.batch, settings.num_return_sequences, width), pad_token_id, dtype=torch.long)
    for b, best in enumerate(chosen):
        for j, (_, tokens) in enumerate(best):
            sequences[b, j, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            if len(tokens) < width:
                sequences[b, j, len(tokens)] = eos_token_id
    scores = torch.tensor([[score for score, _ in best] for best in chosen], dtype=torch.float)
    return DecodeOutput(sequences=sequences.to(device), scores=scores.to(device))
