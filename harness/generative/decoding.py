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
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch

from harness.errors import HarnessError
from harness.generative.decoder_steps import NextTokenLogProbs, open_steps
from harness.generative.trie import PrefixTrie

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
        decoder = open_steps(model, input_ids, attention_mask)
        state = _BeamState(settings, input_ids.shape[0], constraint, input_ids.device)
        start = torch.full((input_ids.shape[0],), decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        last_tokens = start
        for number in range(1, settings.max_new_tokens + 1):
            step = _Step(number, decoder.step(last_tokens), state, constraint, eos_token_id, pad_token_id)
            parents, new_tokens = _advance_all_groups(step)
            state.extend(parents, new_tokens)
            if state.all_done() or step.last:
                break
            state.regroup(parents, new_tokens, constraint)
            decoder.reorder(state.row_parent, state.row_input)
            last_tokens = state.row_last_token
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
        # Forward rows: beams with the same input and prefix have the same next-token distribution, so the
        # decoder runs once per distinct (input, prefix). At the first step that is one row per input.
        self.row_of_beam = torch.arange(rows, device=device) // settings.num_beams
        self.representative = list(range(0, rows, settings.num_beams))  # a beam of each row
        self.row_parent = self.row_input = self.row_last_token = None

    def tokens_of(self, row: int) -> tuple[int, ...]:
        if self._tokens_list is None:
            self._tokens_list = self.tokens.tolist()
        return tuple(self._tokens_list[row])

    def extend(self, parents: torch.LongTensor, new_tokens: torch.LongTensor) -> None:
        """Beam i now extends beam parents[i] by new_tokens[i]."""
        self.tokens = torch.cat([self.tokens[parents], new_tokens.unsqueeze(-1)], dim=1)
        self._tokens_list = self.tokens.tolist()

    def regroup(self, parents: torch.LongTensor, new_tokens: torch.LongTensor, constraint: PrefixTrie | None) -> None:
        """What only a next step needs, after `extend`: each beam's trie node, the forward rows (one per distinct
        (input, prefix)) and each row's parent row of this step."""
        parent_list = parents.tolist()
        if self.nodes is not None:
            old = self.nodes
            self.nodes = [constraint.step(old[p], t) for p, t in zip(parent_list, new_tokens.tolist())]
        beams = self.settings.num_beams
        row_ids: dict[tuple, int] = {}
        row_of_beam, representative = [], []
        for beam, tokens in enumerate(self._tokens_list):
            key = (beam // beams, *tokens)
            row = row_ids.get(key)
            if row is None:
                row = row_ids[key] = len(representative)
                representative.append(beam)
            row_of_beam.append(row)
        old_row_of_beam = self.row_of_beam.tolist()
        device = self.tokens.device
        self.row_of_beam = torch.tensor(row_of_beam, device=device)
        self.representative = representative
        self.row_parent = torch.tensor([old_row_of_beam[parent_list[b]] for b in representative], device=device)
        self.row_input = torch.tensor([b // beams for b in representative], device=device)
        self.row_last_token = new_tokens[torch.tensor(representative, device=device)]

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

# Tests switch this off to check the exact path alone gives the same results.
_USE_SHORTLISTS = True


class _Step:
    """What the groups of one decoding step share.

    `logprobs` has one row per forward row, i.e. per distinct (input, prefix); state.row_of_beam maps beams to them.
    It computes float32 log_softmax rows only where the ranking asks for them.
    """

    def __init__(self, number: int, logprobs: NextTokenLogProbs, state: _BeamState, constraint: PrefixTrie | None,
                 eos_token_id: int, pad_token_id: int):
        self.number = number
        self.last = number == state.settings.max_new_tokens
        self.logprobs = logprobs
        self.state = state
        self.constraint = constraint
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        vocab = logprobs.vocab
        if constraint is not None:
            constraint.check_vocabulary(vocab)
        # a non-EOS token for beams that have no finite candidate left (see _shortlist_ranking)
        self.filler_token = eos_token_id + 1 if eos_token_id + 1 < vocab else eos_token_id - 1
        self.chosen: torch.LongTensor | None = None  # tokens the groups chose so far at this step
        # [batch, beams] per beam: its forward row and its score at the step's start (the groups' new scores
        # replace state.scores only once every group is ranked)
        self.beam_rows = state.row_of_beam.view(state.batch, -1)
        self.beam_scores = state.scores.view(state.batch, -1)
        # [batch, groups] done at the step's start: a group's flag changes only once that group is ranked
        self.done_at_start = torch.tensor(state.done, dtype=torch.bool, device=state.scores.device)
        self._shortlists: tuple[torch.Tensor, torch.Tensor] | None = None
        self._later_end_only: list[list[bool]] | None = None

    def forward_rows(self, beam_rows: torch.LongTensor) -> torch.LongTensor:
        return self.state.row_of_beam[beam_rows]

    def nodes_of_rows(self) -> list[int]:
        """The trie node of each forward row (all its beams share the prefix, so the node)."""
        return [self.state.nodes[beam] for beam in self.state.representative]

    def shortlists(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per forward row, its `width` most probable allowed tokens and their log-probs, best first where the row
        allows more than `width` tokens; rows allowing fewer are padded with -inf."""
        if self._shortlists is None:
            self._shortlists = _row_shortlists(self.logprobs, self, width)
        return self._shortlists

    def later_groups_only_end(self, b: int, group: int) -> bool:
        """Every group of input b after `group` is done, or each of its live beams may only emit EOS (or nothing),
        so no penalty can change its scores. Groups after `group` are not yet processed at this step, so their
        done flags are those of the step's start and the answer can be computed once per step."""
        if self._later_end_only is None:
            self._later_end_only = _later_groups_only_end(self)
        return self._later_end_only[b][group]


def _advance_all_groups(step: _Step) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Groups in order, each penalised by the tokens the earlier groups chose at this step.

    Returns, per new beam row, the row it extends and the token it appends.
    """
    state, settings = step.state, step.state.settings
    batch, beams, size = state.batch, settings.num_beams, settings.group_size
    device = state.scores.device
    chosen = step.chosen = torch.zeros((batch, beams), dtype=torch.long, device=device)  # current_tokens
    parents = torch.zeros((batch, beams), dtype=torch.long, device=device)
    new_scores = torch.zeros((batch, beams), dtype=torch.float, device=device)
    first_rows = torch.arange(batch, device=device).unsqueeze(1) * beams
    for group in range(settings.num_beam_groups):
        cols = slice(group * size, (group + 1) * size)
        penalise = settings.diversity_penalty > 0 and group > 0
        ranked = _shortlist_ranking(step, group, penalise) if _USE_SHORTLISTS else None
        if ranked is None:
            ranked = _exact_ranking(step, group, penalise)
        scores, tokens, local = _process_group(step, group, *ranked)
        chosen[:, cols], new_scores[:, cols] = tokens, scores
        parents[:, cols] = first_rows + group * size + local
    state.scores = new_scores.view(-1)
    return parents.view(-1), chosen.view(-1)


def _group_beam_rows(state: _BeamState, group: int) -> torch.LongTensor:
    """[batch, group_size] beam rows of one group."""
    settings = state.settings
    first = torch.arange(state.batch).unsqueeze(1) * settings.num_beams + group * settings.group_size
    return (first + torch.arange(settings.group_size)).to(state.scores.device)


def _exact_ranking(step: _Step, group: int, penalise: bool):
    """transformers' own computation: the 2 x group_size best of [batch, group_size x vocab] candidates.

    scores = (log_softmax - penalty x count) masked + beam score, as in 4.56, so ties break the same way.
    """
    state, settings = step.state, step.state.settings
    batch, size = state.batch, settings.group_size
    beam_rows = _group_beam_rows(state, group)
    forward_rows = step.forward_rows(beam_rows.view(-1))
    logprobs = step.logprobs.full()[forward_rows]  # [batch * size, vocab], a copy
    vocab = logprobs.shape[-1]
    if step.constraint is not None:
        nodes = [state.nodes[beam] for beam in beam_rows.view(-1).tolist()]
        allowed = step.constraint.allowed_mask(nodes, vocab, logprobs.device)
        logprobs.masked_fill_(~allowed, -math.inf)  # + 0 where allowed, -inf elsewhere, as the processor's mask
    logprobs = logprobs.view(batch, size, vocab)
    beam_scores = state.scores[beam_rows].unsqueeze(-1)
    candidates = logprobs + beam_scores
    if penalise:
        # only the counted tokens change: recompute just those entries, in transformers' order of operations
        earlier = _earlier_tokens(step, group)
        index = earlier.unsqueeze(1).expand(batch, size, earlier.shape[1])
        penalties = (settings.diversity_penalty * _times_chosen(earlier, earlier)).unsqueeze(1)
        candidates.scatter_(2, index, (logprobs.gather(2, index) - penalties) + beam_scores)
    top_scores, top_flat = torch.topk(candidates.view(batch, size * vocab), 2 * size, dim=1, largest=True, sorted=True)
    return top_scores, top_flat % vocab, torch.div(top_flat, vocab, rounding_mode="floor")


def _earlier_tokens(step: _Step, group: int) -> torch.LongTensor:
    return step.chosen[:, : group * step.state.settings.group_size]


def _times_chosen(tokens: torch.LongTensor, earlier: torch.LongTensor) -> torch.LongTensor:
    """[batch, n]: how many of the earlier groups' tokens earlier[b] equal tokens[b, i], i.e. the Hamming
    processor's count, without its [batch, vocab] table (the earlier tokens are few)."""
    return (tokens.unsqueeze(-1) == earlier.unsqueeze(1)).sum(dim=-1)


def _shortlist_ranking(step: _Step, group: int, penalise: bool):
    """The same ranking from a shortlist of each beam's best allowed tokens, or None where that could differ.

    The 2 x group_size best candidates of a group lie among each beam's best 2 x group_size + 1 tokens plus the
    tokens a penalty pushed down, so a shortlist of width 2 x group_size + 1 + (tokens earlier groups chose)
    ranks them with the same values, bit for bit. It is only trusted where the answer cannot depend on how
    torch.topk breaks ties:
    - no two of the best 2 x group_size + 1 finite candidates are equal (bf16 logits, or beams still at -1e9);
    - where fewer than group_size non-EOS candidates are finite, transformers fills the group with -inf beams
      chosen by topk among equal -inf values; those cannot matter when no step follows, every later group of
      the input can only end (their penalties touch only -inf entries), and the group's finite EOS hypotheses
      already fill its hypothesis list (so finalize keeps none of them). Atomic item IDs meet this at their EOS
      step, which is why that step needs no [beams, vocab] candidate tensor at all.
    """
    state, settings = step.state, step.state.settings
    batch, size = state.batch, settings.group_size
    width = 2 * size + 1 + (settings.num_beams - size if settings.diversity_penalty > 0 else 0)
    tokens, values = step.shortlists(width)
    cols = slice(group * size, (group + 1) * size)
    forward_rows = step.beam_rows[:, cols]
    tokens = tokens[forward_rows].view(batch, size * width)
    values = values[forward_rows]  # [batch, size, width]
    if penalise:  # (logprob - penalty x count) for every token, as transformers; count 0 leaves it as is
        counts = _times_chosen(tokens, _earlier_tokens(step, group))
        values = values - (settings.diversity_penalty * counts).view(batch, size, width)
    values = values + step.beam_scores[:, cols].unsqueeze(-1)
    top_scores, top_index = torch.topk(values.view(batch, size * width), 2 * size + 1, dim=1, largest=True, sorted=True)
    top_tokens = tokens.gather(1, top_index)
    top_beams = torch.div(top_index, width, rounding_mode="floor")

    finite = torch.isfinite(top_scores)
    live = ~step.done_at_start[:, group]
    tied = ((top_scores[:, 1:] == top_scores[:, :-1]) & finite[:, 1:]).any(dim=1)
    if bool((tied & live).any()):
        return None
    top_scores, top_tokens, top_beams, finite = (t[:, : 2 * size] for t in (top_scores, top_tokens, top_beams, finite))
    is_eos = top_tokens == step.eos_token_id
    short = ((~is_eos & finite).sum(dim=1) < size) & live
    if bool(short.any()):
        finished_in_top = (is_eos & finite)[:, :size].sum(dim=1).tolist()
        for b in short.nonzero()[:, 0].tolist():
            enough = len(state.hypotheses[b][group].beams) + finished_in_top[b] >= size
            if not (step.last and enough and step.later_groups_only_end(b, group)):
                return None
        # stand-ins for transformers' -inf beams: any non-EOS token, score -inf, never read again
        top_tokens = torch.where(finite, top_tokens, step.filler_token)
        top_beams = torch.where(finite, top_beams, 0)
    return top_scores, top_tokens, top_beams


def _row_shortlists(logprobs: NextTokenLogProbs, step: _Step, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose allowed set is small gather just those tokens' log-probs (no [rows, vocab] tensor); the others
    take the top `width` of their masked log-softmax rows."""
    rows, vocab, device = logprobs.num_rows, logprobs.vocab, step.state.scores.device
    tokens = torch.zeros((rows, width), dtype=torch.long, device=device)
    values = torch.full((rows, width), -math.inf, dtype=torch.float, device=device)
    if step.constraint is None:
        k = min(width, vocab)
        values[:, :k], tokens[:, :k] = torch.topk(logprobs.full(), k, dim=1)
        return tokens, values
    constraint = step.constraint
    nodes = step.nodes_of_rows()
    set_ids = torch.tensor([constraint.set_id(node) for node in nodes], dtype=torch.long)
    table, lengths = constraint.padded_sets(width)  # sets of at most `width` tokens; longer ones have length -1
    row_lengths = lengths[set_ids]
    small = row_lengths >= 0
    small_rows = small.nonzero()[:, 0]
    if small_rows.numel():
        small_tokens = table[set_ids[small_rows]].to(device)
        small_values = logprobs.gather(small_rows.to(device), small_tokens)
        padding = torch.arange(width).unsqueeze(0) >= row_lengths[small_rows].unsqueeze(1)
        small_values.masked_fill_(padding.to(device), -math.inf)
        tokens[small_rows.to(device)], values[small_rows.to(device)] = small_tokens, small_values
    large_rows = (~small).nonzero()[:, 0]
    if large_rows.numel():
        allowed = constraint.allowed_mask([nodes[r] for r in large_rows.tolist()], vocab, device)
        masked = logprobs.rows(large_rows.to(device)).masked_fill_(~allowed, -math.inf)
        values[large_rows.to(device)], tokens[large_rows.to(device)] = torch.topk(masked, width, dim=1)
    return tokens, values


def _later_groups_only_end(step: _Step) -> list[list[bool]]:
    """[input][group]: True where every later group of the input is done or can only end (see
    _Step.later_groups_only_end): a suffix "all" over the groups of the step's start."""
    state, settings = step.state, step.state.settings
    groups, size = settings.num_beam_groups, settings.group_size
    if step.constraint is None:
        return [[group == groups - 1 or all(state.done[b][group + 1 :]) for group in range(groups)] for b in range(state.batch)]
    # a beam can only end where its node allows EOS alone (or nothing), or its score is -inf
    ends = torch.tensor([step.constraint.ends_only(node) for node in state.nodes]) | ~torch.isfinite(state.scores.cpu())
    ends = ends.view(state.batch, groups, size).all(dim=2) | torch.tensor(state.done)
    # later[b, g] = all(ends[b, g + 1:]): a reversed cumulative "and", shifted by one group
    suffix = ends.flip(1).to(torch.int).cummin(dim=1).values.flip(1).bool()
    later = torch.ones_like(ends)
    later[:, :-1] = suffix[:, 1:]
    return later.tolist()


def _process_group(step: _Step, group: int, top_scores, top_tokens, top_beams):
    """BeamSearchScorer.process for one group, vectorised over the batch.

    The first group_size non-EOS candidates continue (a beam has at most one EOS candidate, so there are
    enough); EOS candidates ranked in the top group_size become finished hypotheses.
    """
    state, settings = step.state, step.state.settings
    batch, size = state.batch, settings.group_size
    is_eos = top_tokens == step.eos_token_id
    keep = ~is_eos & ((~is_eos).cumsum(dim=1) <= size)
    picks = keep.nonzero()[:, 1].view(batch, size)
    scores, tokens, local = top_scores.gather(1, picks), top_tokens.gather(1, picks), top_beams.gather(1, picks)

    was_done = [state.done[b][group] for b in range(batch)]
    _record_finished(state, group, step.number, top_scores, top_beams, is_eos, was_done)
    if any(was_done):  # a finished group pads: score 0, token pad (its rows are never read again)
        done_rows = torch.tensor(was_done, device=scores.device).unsqueeze(1)
        scores = scores.masked_fill(done_rows, 0.0)
        tokens = tokens.masked_fill(done_rows, step.pad_token_id)
        local = torch.where(done_rows, torch.arange(size, device=scores.device), local)
    return scores, tokens, local


def _record_finished(state: _BeamState, group, step_number, top_scores, top_beams, is_eos, was_done) -> None:
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
            state.hypotheses[b][group].add(state.tokens_of(row), scores[b][rank], step_number)
    best = top_scores[:, 0].tolist()
    for b in range(state.batch):
        if not was_done[b]:
            state.done[b][group] = state.hypotheses[b][group].is_done(best[b], step_number)


# ---------------------------------------------------------------------------------------------- results


def _best_hypotheses(state: _BeamState, settings: _Settings, eos_token_id, pad_token_id, device) -> DecodeOutput:
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
