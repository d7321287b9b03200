"""The state of a diverse beam search (harness.generative.decoding): its checked settings, every beam of the batch
(tokens, scores, trie nodes, the decoder's forward rows) and each (input, group)'s finished hypotheses, a port of
transformers 4.56's BeamHypotheses. Separate from the per-step ranking (harness.generative.beam_step), which reads
and advances this state, and from the entry point, which only creates and finalizes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.errors import HarnessError
from harness.generative.trie import PrefixTrie

# transformers 4.56 starts every beam but the first of each group at -1e9 (not -inf), so that at step 1 the
# group's candidates all come from its first beam. Kept as is: it decides ties when few tokens are allowed.
_INITIAL_OTHER_BEAM_SCORE = -1e9


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
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
    ) -> "Settings":
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


class BeamState:
    """All beams of the batch, rows ordered (input, group, beam-in-group) as in transformers."""

    def __init__(self, settings: Settings, batch: int, constraint: PrefixTrie | None, device):
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

