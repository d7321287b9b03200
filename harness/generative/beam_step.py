"""One step of a diverse beam search (harness.generative.decoding): the groups in order, each ranked from its beams'
shortlists or, where ties could make that differ, from transformers' full candidates; then BeamSearchScorer.process
for the group. Separate from the search's state (harness.generative.beam_state) and its entry point: this is where
the equivalence with transformers 4.56 is argued (docs/decoding.md), and the tests switch its paths here.
"""

from __future__ import annotations

import math

import torch

from harness.generative.beam_state import BeamState
from harness.generative.decoder_steps import NextTokenLogProbs
from harness.generative.trie import PrefixTrie

# Tests switch this off to check the exact path alone gives the same results.
_USE_SHORTLISTS = True


class Step:
    """What the groups of one decoding step share.

    `logprobs` has one row per forward row, i.e. per distinct (input, prefix); state.row_of_beam maps beams to them.
    It computes float32 log_softmax rows only where the ranking asks for them.
    """

    def __init__(self, number: int, logprobs: NextTokenLogProbs, state: BeamState, constraint: PrefixTrie | None,
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


def advance_all_groups(step: Step) -> tuple[torch.LongTensor, torch.LongTensor]:
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


def _group_beam_rows(state: BeamState, group: int) -> torch.LongTensor:
    """[batch, group_size] beam rows of one group."""
    settings = state.settings
    first = torch.arange(state.batch).unsqueeze(1) * settings.num_beams + group * settings.group_size
    return (first + torch.arange(settings.group_size)).to(state.scores.device)


def _exact_ranking(step: Step, group: int, penalise: bool):
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


def _earlier_tokens(step: Step, group: int) -> torch.LongTensor:
    return step.chosen[:, : group * step.state.settings.group_size]


def _times_chosen(tokens: torch.LongTensor, earlier: torch.LongTensor) -> torch.LongTensor:
    """[batch, n]: how many of the earlier groups' tokens earlier[b] equal tokens[b, i], i.e. the Hamming
    processor's count, without its [batch, vocab] table (the earlier tokens are few)."""
    return (tokens.unsqueeze(-1) == earlier.unsqueeze(1)).sum(dim=-1)


def _shortlist_ranking(step: Step, group: int, penalise: bool):
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


def _row_shortlists(logprobs: NextTokenLogProbs, step: Step, width: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def _later_groups_only_end(step: Step) -> list[list[bool]]:
    """[input][group]: True where every later group of the input is done or can only end (see
    Step.later_groups_only_end): a suffix "all" over the groups of the step's start."""
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


def _process_group(step: Step, group: int, top_scores, top_tokens, top_beams):
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


def _record_finished(state: BeamState, group, step_number, top_scores, top_beams, is_eos, was_done) -> None:
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

