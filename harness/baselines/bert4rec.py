"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer trained with the Cloze task.

As in the paper and the authors' code: item plus learned positional embeddings, LayerNorm and dropout;
post-LayerNorm Transformer blocks (multi-head self-attention over the whole window, GELU feed-forward of
4 x d, residuals); an output head GELU(h W + b) -> LayerNorm, scored against the shared item embeddings plus
a per-item bias, with a full softmax over the catalogue. Truncated-normal(0.02) initialisation.

Training (Cloze): every item of a window is replaced by the [MASK] token with probability `mask_prob` (the
authors' code always uses [MASK], never BERT's 10% random / 10% kept) and the model predicts the originals;
at least one item per window is masked. With probability `last_item_mask_prob` a window instead masks only
its last item: the paper's extra samples that match the test-time task (RecBole's ft_ratio, 0.5). Masks
are drawn afresh every epoch (the authors' code pre-generates `dupe_factor` masked copies instead).
Inference appends [MASK] after the last max_len - 1 history items and ranks the catalogue at that position.

Shared parts (training data, early stopping, ranking rule) are in harness.baselines.sequential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from harness.baselines.sequential import (
    SequentialAdapter, SequentialParams, attention_mask, build_attention_block, left_pad,
)


def build_bert4rec(n_items: int, *, max_len: int, d_model: int, n_layers: int, n_heads: int, dropout: float):
    import torch
    from torch import nn

    SelfAttention = build_attention_block()

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = SelfAttention(d_model, n_heads, dropout)
            self.norm1 = nn.LayerNorm(d_model, eps=1e-12)
            self.ffn = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
            self.norm2 = nn.LayerNorm(d_model, eps=1e-12)
            self.drop = nn.Dropout(dropout)

        def forward(self, x, allowed):
            x = self.norm1(x + self.drop(self.attn(x, allowed)))
            return self.norm2(x + self.drop(self.ffn(x)))

    class BERT4Rec(nn.Module):
        mask_token = n_items + 1

        def __init__(self) -> None:
            super().__init__()
            self.item_emb = nn.Embedding(n_items + 2, d_model, padding_idx=0)  # 0 pad, 1..n items, n+1 [MASK]
            self.pos_emb = nn.Embedding(max_len, d_model)
            self.emb_norm = nn.LayerNorm(d_model, eps=1e-12)
            self.emb_dropout = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
            self.head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model, eps=1e-12))
            self.out_bias = nn.Parameter(torch.zeros(n_items))
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

        def forward(self, tokens):
            """tokens [B, L] (left-padded) -> hidden states [B, L, d]."""
            length = tokens.shape[1]
            positions = torch.arange(max_len - length, max_len, device=tokens.device)
            x = self.emb_dropout(self.emb_norm(self.item_emb(tokens) + self.pos_emb(positions)[None]))
            allowed = attention_mask(tokens, causal=False)
            for block in self.blocks:
                x = block(x, allowed)
            return x

        def item_weights(self):
            return self.item_emb.weight[1 : n_items + 1]  # [n_items, d]: without padding (0) and [MASK] (n + 1)

        def logits(self, hidden):
            """hidden [..., d] -> scores over the catalogue [..., n_items]."""
            return self.head(hidden) @ self.item_weights().T + self.out_bias

    return BERT4Rec()


@dataclass(frozen=True)
class BERT4RecParams(SequentialParams):
    mask_prob: float = 0.2
    last_item_mask_prob: float = 0.5

    def check(self, fail) -> None:
        super().check(fail)
        for key in ("mask_prob", "last_item_mask_prob"):
            if not 0 <= getattr(self, key) <= 1:
                fail(key, "give a number in [0, 1]")
        if self.mask_prob == 0:
            fail("mask_prob", "masks nothing; give a number in (0, 1]")


class BERT4RecAdapter(SequentialAdapter):
    """Recommendation only. params: those of sequential.SequentialParams, plus mask_prob, last_item_mask_prob."""

    name = "BERT4Rec"
    params_class = BERT4RecParams

    def make_model(self, n_items: int):
        p = self._p
        self._mask_token = n_items + 1
        return build_bert4rec(
            n_items, max_len=p["max_len"], d_model=p["d_model"], n_layers=p["n_layers"], n_heads=p["n_heads"],
            dropout=p["dropout"],
        )

    def epoch_batches(self, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        p = self._p
        order = rng.permutation(len(self._windows))
        for start in range(0, len(order), p["batch_size"]):
            idx = order[start : start + p["batch_size"]]
            tokens = left_pad([self._windows[i] + 1 for i in idx], p["max_len"])
            yield self.cloze(tokens, rng)

    def cloze(self, tokens: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Mask a left-padded token batch: {"inputs": with [MASK]s, "labels": the original at masked places, else 0}."""
        p = self._p
        real = tokens > 0
        masked = real & (rng.random(tokens.shape) < p["mask_prob"])
        last_only = rng.random(len(tokens)) < p["last_item_mask_prob"]
        masked[last_only] = False
        masked[last_only, -1] = True  # windows are left-padded: the last column is the most recent item
        # A window whose draw masked nothing gets one random item masked, so it still teaches something.
        for row in np.flatnonzero(~masked.any(axis=1)):
            masked[row, rng.choice(np.flatnonzero(real[row]))] = True
        return {"inputs": np.where(masked, self._mask_token, tokens), "labels": np.where(masked, tokens, 0)}

    def batch_loss(self, model, batch: dict[str, Any]):
        import torch.nn.functional as F

        hidden = model(batch["inputs"])
        mask = batch["labels"] > 0
        return F.cross_entropy(model.logits(hidden[mask]), batch["labels"][mask] - 1)

    def score_histories(self, model, histories: list[np.ndarray]):
        import torch

        width = self._p["max_len"]
        rows = [np.append(h[-(width - 1) :] + 1, self._mask_token) for h in histories]
        tokens = torch.as_tensor(left_pad(rows, width), device=self._device)
        return model.logits(model(tokens)[:, -1])

    def model_facts(self) -> dict[str, Any]:
        return {
            "model": "BERT4Rec (Sun et al. 2019)",
            "loss": "Cloze: full softmax cross-entropy at masked positions",
            "mask_token": "[MASK] always (no random/keep replacement, as in the authors' code)",
        }
