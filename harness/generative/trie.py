"""A prefix trie of valid output token sequences, for constrained decoding.

Each item ID is a sequence of token ids; the trie stores every such sequence followed by EOS, so a decoder may
only emit a full item ID and then stop. Atomic IDs (one new token per item) are the one-level case of it: the
root allows every item token and each item node allows only EOS. Multi-token IDs need no decoder change.

The decoder works on trie *nodes* (ints) rather than prefixes: it keeps one node per beam and steps it with
the chosen token. Nodes whose allowed-token sets are equal share one *set id*, so the decoder can build its
[rows, vocab] masks from a few dense rows (atomic IDs: two sets in all).
"""

from __future__ import annotations

from typing import Sequence

import torch

from harness.errors import HarnessError

DEAD = -1
"""The node of a prefix that is not in the trie (or runs past an EOS): no token is allowed after it."""

_ROOT = 0
_END = 1  # the one node every EOS edge leads to; it has no children


class PrefixTrie:
    """Valid output token sequences (each item ID's tokens followed by EOS).

    `allowed(prefix)` is the reference view (a list of token ids); `root`, `step`, `set_id` and
    `allowed_mask` are the vectorised view the decoder uses.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int) -> None:
        self.eos_token_id = int(eos_token_id)
        self._children: list[dict[int, int]] = [{}, {}]  # root, end
        count = 0
        for number, sequence in enumerate(sequences):
            tokens = [int(token) for token in sequence]
            _check_sequence(number, tokens, self.eos_token_id)
            node = _ROOT
            for token in tokens:
                node = self._child_or_new(node, token)
            self._children[node][self.eos_token_id] = _END
            count += 1
        if count == 0:
            raise HarnessError("PrefixTrie: no sequences given; the constraint would allow nothing")
        self.num_sequences = count
        self.max_token_id = max(max(children, default=-1) for children in self._children)
        self._set_of_node, self._sets = _dedupe_allowed_sets(self._children)
        self._dead_set = len(self._sets)  # set id of DEAD and of the end node: the empty set
        self._dense_rows: dict[tuple[int, int, str], torch.Tensor] = {}
        self._padded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ reference view
    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Token ids allowed after `prefix` (generated tokens, without the decoder start), ascending.

        Empty when `prefix` is not a path of the trie or already ends with EOS: no continuation is valid.
        """
        node = self.node(prefix)
        if node == DEAD:
            return []
        return sorted(self._children[node])

    def node(self, prefix: Sequence[int]) -> int:
        """The node reached by `prefix` from the root, or DEAD."""
        node = _ROOT
        for token in prefix:
            node = self.step(node, int(token))
        return node

    # ------------------------------------------------------------------ vectorised view
    @property
    def root(self) -> int:
        return _ROOT

    def step(self, node: int, token: int) -> int:
        """The node after emitting `token` at `node` (DEAD when that token is not allowed there)."""
        if node == DEAD:
            return DEAD
        return self._children[node].get(token, DEAD)

    def set_id(self, node: int) -> int:
        """Id of the node's allowed-token set; equal sets share one id, DEAD and the end node share the empty one."""
        if node == DEAD:
            return self._dead_set
        return self._set_of_node[node]

    def ends_only(self, node: int) -> bool:
        """True where nothing but EOS (or nothing at all) may follow."""
        set_id = self.set_id(node)
        return set_id == self._dead_set or self._sets[set_id] == (self.eos_token_id,)

    def padded_sets(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([sets + 1, width] tokens, [sets + 1] lengths) indexed by set id: each set of at most `width` tokens,
        padded with token 0; a longer set has length -1 and no tokens. The last row is the empty (dead) set."""
        cached = self._padded.get(width)
        if cached is None:
            tokens = torch.zeros((len(self._sets) + 1, width), dtype=torch.long)
            lengths = torch.zeros(len(self._sets) + 1, dtype=torch.long)
            for set_id, allowed in enumerate(self._sets):
                if len(allowed) > width:
                    lengths[set_id] = -1
                else:
                    tokens[set_id, : len(allowed)] = torch.tensor(allowed, dtype=torch.long)
                    lengths[set_id] = len(allowed)
            cached = self._padded[width] = (tokens, lengths)
        return cached

    def allowed_mask(self, nodes: Sequence[int], vocab_size: int, device: torch.device | str) -> torch.Tensor:
        """Bool [len(nodes), vocab_size]: True where a token is allowed after that node.

        Built from one dense row per distinct allowed set, cached per (set, vocab, device), then gathered.
        """
        self.check_vocabulary(vocab_size)
        set_ids = torch.tensor([self.set_id(node) for node in nodes], dtype=torch.long)
        distinct, inverse = torch.unique(set_ids, return_inverse=True)
        table = torch.stack([self._dense_row(int(s), vocab_size, device) for s in distinct.tolist()])
        return table[inverse.to(table.device)]

    def check_vocabulary(self, vocab_size: int) -> None:
        if self.max_token_id >= vocab_size:
            raise HarnessError(
                f"PrefixTrie: token id {self.max_token_id} is outside the model's vocabulary of {vocab_size} tokens"
            )

    def _dense_row(self, set_id: int, vocab_size: int, device: torch.device | str) -> torch.Tensor:
        key = (set_id, vocab_size, str(device))
        row = self._dense_rows.get(key)
        if row is None:
            row = torch.zeros(vocab_size, dtype=torch.bool)
            if set_id != self._dead_set:
                row[list(self._sets[set_id])] = True
            row = row.to(device)
            # A bounded cache: multi-token tries can have many distinct sets; keep at most ~64 MB of rows.
            if len(self._dense_rows) * vocab_size < (64 << 20):
                self._dense_rows[key] = row
        return row

    def _child_or_new(self, node: int, token: int) -> int:
        child = self._children[node].get(token)
        if child is None:
            child = len(self._children)
            self._children.append({})
            self._children[node][token] = child
        return child


def _check_sequence(number: int, tokens: list[int], eos_token_id: int) -> None:
    if not tokens:
        raise HarnessError(f"PrefixTrie: sequence #{number} is empty; every item ID needs at least one token")
    if eos_token_id in tokens:
        raise HarnessError(
            f"PrefixTrie: sequence #{number} {tokens} contains the EOS token {eos_token_id}; EOS is added by the trie"
        )
    if min(tokens) < 0:
        raise HarnessError(f"PrefixTrie: sequence #{number} {tokens} has a negative token id")


def _dedupe_allowed_sets(children: list[dict[int, int]]) -> tuple[list[int], list[tuple[int, ...]]]:
    """One id per distinct allowed-token set; the end node (no children) gets the empty set's id later."""
    set_ids: dict[tuple[int, ...], int] = {}
    set_of_node: list[int] = []
    for node_children in children:
        key = tuple(sorted(node_children))
        if not key:
            set_of_node.append(-1)  # patched below to the shared empty-set id
            continue
        set_of_node.append(set_ids.setdefault(key, len(set_ids)))
    sets = list(set_ids)
    empty = len(sets)
    return [empty if s == -1 else s for s in set_of_node], sets
