"""SASRec (Kang & McAuley, ICDM 2018): a causal self-attention sequential recommender.

As in the paper and the authors' code: item embeddings scaled by sqrt(d) plus learned absolute positional
embeddings over a left-padded window (the most recent item always sits in the last position), dropout, then
blocks of [LayerNorm -> causal multi-head attention whose queries are the normalised input, residual from
them -> LayerNorm -> point-wise two-layer ReLU feed-forward with a residual], padding zeroed after every
block, a final LayerNorm; an item's score is the inner product of the last position's output with the item's
(shared) input embedding. Xavier-normal initialisation, Adam(betas 0.9, 0.98).

Loss, `loss` param:
- "bce" (the adapter's default): the paper's objective, binary cross-entropy of each position's next item
  against one negative drawn uniformly from the items the user never interacted with. Cheap: on ml-small an
  epoch takes ~3.4 s on one CPU thread, where the full softmax takes ~17.5 s.
- "ce": full softmax cross-entropy over the catalogue at every position. This is RecBole's default for
  SASRec (loss_type: CE), which is what Penha et al. ran for Table 5, and it matches full-catalogue ranking
  (sampled-negative training ranks a full catalogue worse: Klenitskiy & Vasilev, RecSys 2023).
  submissions/sasrec uses it: better on ml-small validation (docs/baselines.md, "Tuning").

Shared parts (training data, early stopping, ranking rule) are in harness.baselines.sequential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import numpy as np

from harness.baselines.sequential import (
    SequentialAdapter,
    SequentialParams,
    attention_mask,
    build_attention_block,
    left_pad,
    windows_from_end,
)


def build_sasrec(n_items: int, *, max_len: int, d_model: int, n_layers: int, n_heads: int, dropout: float):
    import torch
    from torch import nn

    SelfAttention = build_attention_block()

    class FeedForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(d_model, d_model), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_model, d_model), nn.Dropout(dropout)
            )

        def forward(self, x):
            return x + self.net(x)

    class SASRec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=0)  # token = item id + 1; 0 pads
            self.pos_emb = nn.Embedding(max_len, d_model)
            self.emb_dropout = nn.Dropout(dropout)
            self.attn_norms = nn.ModuleList(nn.LayerNorm(d_model, eps=1e-8) for _ in range(n_layers))
            self.attns = nn.ModuleList(SelfAttention(d_model, n_heads, dropout) for _ in range(n_layers))
            self.ffn_norms = nn.ModuleList(nn.LayerNorm(d_model, eps=1e-8) for _ in range(n_layers))
            self.ffns = nn.ModuleList(FeedForward() for _ in range(n_layers))
            self.last_norm = nn.LayerNorm(d_model, eps=1e-8)
            for name, param in self.named_parameters():  # the authors' PyTorch port: Xavier normal
                if param.dim() > 1:
                    nn.init.xavier_normal_(param)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

        def forward(self, tokens):
            """tokens [B, L] (left-padded) -> hidden states [B, L, d]."""
            length = tokens.shape[1]
            positions = torch.arange(max_len - length, max_len, device=tokens.device)
            x = self.item_emb(tokens) * math.sqrt(d_model) + self.pos_emb(positions)[None]
            keep = (tokens != 0).unsqueeze(-1).to(x.dtype)
            x = self.emb_dropout(x) * keep
            allowed = attention_mask(tokens, causal=True)
            for attn_norm, attn, ffn_norm, ffn in zip(self.attn_norms, self.attns, self.ffn_norms, self.ffns):
                q = attn_norm(x)
                x = q + attn(x, allowed, query=q)
                x = ffn(ffn_norm(x)) * keep
            return self.last_norm(x)

        def item_weights(self):
            return self.item_emb.weight[1:]  # [n_items, d]

    return SASRec()


@dataclass(frozen=True)
class SASRecParams(SequentialParams):
    loss: Literal["ce", "bce"] = "bce"


class SASRecAdapter(SequentialAdapter):
    """Recommendation only. params: those of harness.baselines.sequential.SequentialParams, plus loss."""

    name = "SASRec"
    params_class = SASRecParams

    def make_model(self, n_items: int):
        p = self._p
        return build_sasrec(
            n_items, max_len=p["max_len"], d_model=p["d_model"], n_layers=p["n_layers"], n_heads=p["n_heads"],
            dropout=p["dropout"],
        )

    def make_windows(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        """Spans of up to max_len (input, next item) pairs, so a window holds up to max_len + 1 items."""
        windows, owners = [], []
        for user_idx, s in enumerate(seqs):
            for a, b in windows_from_end(len(s) - 1, self._p["max_len"]):
                windows.append(s[a : b + 1])
                owners.append(user_idx)
        self._window_owner = np.asarray(owners, dtype=np.int64)
        return windows

    def epoch_batches(self, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        p = self._p
        order = rng.permutation(len(self._windows))
        for start in range(0, len(order), p["batch_size"]):
            idx = order[start : start + p["batch_size"]]
            inputs = left_pad([self._windows[i][:-1] + 1 for i in idx], p["max_len"])
            targets = left_pad([self._windows[i][1:] + 1 for i in idx], p["max_len"])
            batch = {"inputs": inputs, "targets": targets}
            if p["loss"] == "bce":
                batch["negatives"] = self._negatives(rng, idx, targets)
            yield batch

    def _negatives(self, rng: np.random.Generator, idx: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """One uniformly drawn item per position that the window's user never interacted with (as tokens)."""
        neg = rng.integers(0, self._n_items, size=targets.shape)
        for row, w in enumerate(idx):
            seen = self._user_items[self._window_owner[w]]
            for _ in range(20):  # redraw collisions; a user who has seen nearly everything may keep a few
                clash = np.isin(neg[row], seen)
                if not clash.any():
                    break
                neg[row, clash] = rng.integers(0, self._n_items, size=int(clash.sum()))
        return np.where(targets > 0, neg + 1, 0)

    def batch_loss(self, model, batch: dict[str, Any]):
        import torch
        import torch.nn.functional as F

        hidden = model(batch["inputs"])
        mask = batch["targets"] > 0
        if self._p["loss"] == "ce":
            logits = hidden[mask] @ model.item_weights().T
            return F.cross_entropy(logits, batch["targets"][mask] - 1)
        emb = model.item_emb
        pos = (hidden * emb(batch["targets"])).sum(-1)[mask]
        neg = (hidden * emb(batch["negatives"])).sum(-1)[mask]
        return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
            neg, torch.zeros_like(neg)
        )

    def score_histories(self, model, histories: list[np.ndarray]):
        import torch

        tokens = torch.as_tensor(left_pad([h + 1 for h in histories], self._p["max_len"]), device=self._device)
        return model(tokens)[:, -1] @ model.item_weights().T

    def model_facts(self) -> dict[str, Any]:
        loss = self._p["loss"]
        return {
            "model": "SASRec (Kang & McAuley 2018)",
            "loss": "full softmax cross-entropy" if loss == "ce" else "BCE, one sampled negative per position",
            "positional_embedding": "learned, absolute over the left-padded window",
        }
