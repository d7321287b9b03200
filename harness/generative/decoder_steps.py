"""The model calls of the diverse beam search decoder: the encoder once, then one cached decoder step at a time.

Rows, not beams: each step runs on the batch's distinct (input, prefix) pairs (see beam_state.BeamState), ordered
by input. Two implementations of the same interface (`step`, `reorder`):

- `T5Steps`, for transformers' T5ForConditionalGeneration in float32. It runs the model's own modules (layer
  norms, q/k/v/o projections, relative position bias, feed-forward, final norm, output scaling, lm_head) but
  does the attention itself, so that what depends only on the input is stored once per input, never copied per
  row: cross-attention keys and values are [inputs, heads, input length, d], and each input's rows attend to
  them as one batched attention (rows padded to the input with most rows). Only the small self-attention cache
  is gathered per row. transformers' own cached forward instead copies the cross-attention cache to every row
  (at K = 30 with atomic IDs: 18x the input rows, most of a step's memory traffic).
- `GenericSteps`: transformers' own cached forward, for every other model (and bf16/fp16 T5s).

`step` returns `NextTokenLogProbs`, which computes log-softmax rows only where the search asks for them: the
logits of a few rows at a time (for T5Steps straight from the lm_head, so a [rows, vocabulary] logits tensor is
never written), log_softmax on those, then the requested tokens. Given the same logits, the values are those of
one log_softmax over all rows, bit for bit (torch's kernel works row by row); the lm_head's matrix product on a
block of rows can round differently from one on all rows (its blocking depends on the row count), as transformers'
own forward does when the batch changes.

tests/test_decoding.py checks T5Steps' logits against transformers' forward on random tiny T5s (padded inputs,
several steps, reordered rows, tied and untied outputs, gated activations).
"""

from __future__ import annotations

import math
import threading
from typing import Iterator

import torch

__all__ = ["GenericSteps", "NextTokenLogProbs", "T5Steps", "open_steps"]

# Row blocks of logits for log_softmax: ~16 MB of float32 (233 rows of an 18,000-token vocabulary), so a block is
# still in the 32 MB cache when log_softmax reads it. Measured in the whole decode on the 2-core machine: blocks of
# 180 to 300 rows were the fastest, ~10% faster than 64 rows or all 1,141 rows at once.
_CHUNK_BYTES = 16 << 20


def open_steps(model, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> "T5Steps | GenericSteps":
    """Run the encoder on the batch and return the decoder-step object for this model (T5Steps where it applies)."""
    if T5Steps.supports(model):
        return T5Steps(model, input_ids, attention_mask)
    return GenericSteps(model, input_ids, attention_mask)


class NextTokenLogProbs:
    """log_softmax over the vocabulary of every row's next-token logits, computed only where asked for.

    `source` is [rows, vocab] logits, or, with `output_weight` ([vocab, features], an output layer without bias),
    [rows, features] hidden states whose logits are source @ output_weight.T.
    """

    def __init__(self, source: torch.Tensor, output_weight: torch.Tensor | None = None,
                 workspace: "_Workspace | None" = None):
        """Inference only: nothing here is differentiable."""
        self.source = source
        self.output_weight = output_weight
        self.vocab = source.shape[1] if output_weight is None else output_weight.shape[0]
        self.num_rows = source.shape[0]
        self.workspace = workspace or _thread_workspace()
        self._full: torch.Tensor | None = None

    def full(self) -> torch.Tensor:
        """[rows, vocab] float32 log-probabilities, computed once."""
        if self._full is None:
            self._full = self._log_softmax(self.source)
        return self._full

    def rows(self, rows: torch.LongTensor) -> torch.Tensor:
        """[len(rows), vocab] log-probabilities of the given rows (a new tensor the caller may modify)."""
        if self._full is not None:
            return self._full[rows]
        return self._log_softmax(self.source[rows])

    def gather(self, rows: torch.LongTensor, tokens: torch.LongTensor) -> torch.Tensor:
        """[len(rows), width] log-probabilities of tokens[i] in row rows[i], without a [rows, vocab] tensor."""
        if self._full is not None:
            return self._full[rows].gather(1, tokens)
        out = torch.empty(tokens.shape, dtype=torch.float, device=tokens.device)
        for block, logits in self.logits_in_blocks(self.source[rows]):
            logprobs = self.workspace.tensor("logprobs", logits.shape, logits.device)
            out[block] = torch.log_softmax(logits, dim=-1, out=logprobs).gather(1, tokens[block])
        return out

    def logits_in_blocks(self, source: torch.Tensor | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
        """(rows, float logits of those rows) for consecutive blocks of `source`'s rows (default: all rows).

        The logits of a block live in a buffer the next block overwrites: read them before asking for the next."""
        source = self.source if source is None else source
        chunk = self._chunk_rows()
        for start in range(0, source.shape[0], chunk):
            block = slice(start, start + chunk)
            yield block, self._project(source[block])

    def _log_softmax(self, source: torch.Tensor) -> torch.Tensor:
        out = torch.empty((source.shape[0], self.vocab), dtype=torch.float, device=source.device)
        for block, logits in self.logits_in_blocks(source):
            torch.log_softmax(logits, dim=-1, out=out[block])
        return out

    def _chunk_rows(self) -> int:
        return max(1, _CHUNK_BYTES // (4 * self.vocab))

    @torch.no_grad()
    def _project(self, source: torch.Tensor) -> torch.Tensor:
        if self.output_weight is None:
            return source.float()
        logits = self.workspace.tensor("logits", (source.shape[0], self.vocab), source.device, self.output_weight.dtype)
        return torch.mm(source, self.output_weight.t(), out=logits).float()


class _Workspace:
    """Named buffers reused from block to block, step to step and call to call (one set per thread).

    Why: a fresh 16 MB tensor per block is fresh memory from the allocator, and touching it costs a page fault
    per 4 KB page (glibc hands large freed blocks back to the system). Measured on the 2-core machine: ~6,500
    page faults per 64-query decode in the lm_head blocks alone, and decoding ~10% faster with
    MALLOC_TRIM_THRESHOLD_/MALLOC_MMAP_THRESHOLD_ raised. Keeping two blocks' buffers (~32 MB at an 18,000-token
    vocabulary) avoids most of that without changing the process's allocator settings.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def tensor(self, name: str, shape: tuple[int, ...], device, dtype: torch.dtype = torch.float) -> torch.Tensor:
        """A contiguous tensor of `shape` over the named buffer (grown when too small); its values are garbage."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.device != torch.device(device) or buffer.dtype != dtype:
            buffer = self._buffers[name] = torch.empty(size, dtype=dtype, device=device)
        return buffer[:size].view(shape)


_WORKSPACES = threading.local()


def _thread_workspace() -> _Workspace:
    workspace = getattr(_WORKSPACES, "workspace", None)
    if workspace is None:
        workspace = _WORKSPACES.workspace = _Workspace()
    return workspace


# ---------------------------------------------------------------------------------------------- generic


class GenericSteps:
    """transformers' own cached forward (T5ForConditionalGeneration's interface): any encoder-decoder it runs."""

    def __init__(self, model, input_ids, attention_mask):
        self.model = model
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        self.encoded = encoded.last_hidden_state
        self.encoded_mask = attention_mask
        self.hidden, self.mask = self.encoded, self.encoded_mask
        self.cache = None

    def step(self, last_tokens: torch.LongTensor) -> NextTokenLogProbs:
        return NextTokenLogProbs(self.logits(last_tokens))

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

    def reorder(self, parent_rows: torch.LongTensor, row_inputs: torch.LongTensor) -> None:
        """Row i of the next step extends row parent_rows[i] of this one and belongs to input row_inputs[i]."""
        self.hidden = self.encoded.index_select(0, row_inputs)
        self.mask = self.encoded_mask.index_select(0, row_inputs)
        self.cache = _reorder_cache(self.cache, parent_rows)


def _reorder_cache(cache, rows: torch.LongTensor):
    if hasattr(cache, "reorder_cache"):  # transformers' Cache objects (EncoderDecoderCache in 4.4x-5.x)
        cache.reorder_cache(rows)
        return cache
    # legacy tuple-of-tuples cache of older transformers versions
    return tuple(tuple(t.index_select(0, rows.to(t.device)) for t in layer) for layer in cache)


# ---------------------------------------------------------------------------------------------- T5


class T5Steps:
    """T5ForConditionalGeneration's decoder, one token per row per step, with the cross-attention per input."""

    @staticmethod
    def supports(model) -> bool:
        """float32 transformers T5ForConditionalGeneration whose forward is transformers' own, weights not
        partitioned (DeepSpeed ZeRO-3 keeps them elsewhere between its hooks)."""
        try:
            from transformers import T5ForConditionalGeneration
        except ImportError:  # pragma: no cover - transformers is a dependency
            return False
        if not isinstance(model, T5ForConditionalGeneration) or type(model).forward is not T5ForConditionalGeneration.forward:
            return False
        parameter = next(model.parameters(), None)
        if parameter is None or parameter.dtype != torch.float32 or hasattr(parameter, "ds_id"):
            return False
        blocks = model.decoder.block
        plain_head = isinstance(model.lm_head, torch.nn.Linear) and model.lm_head.bias is None
        return plain_head and len(blocks) > 0 and all(len(block.layer) == 3 for block in blocks)

    def __init__(self, model, input_ids, attention_mask):
        self.model = model
        config = model.config
        self.heads, self.head_dim = config.num_heads, config.d_kv
        # transformers 5 calls it scale_decoder_outputs; before, a tied output layer implied it
        self.output_scale = config.d_model**-0.5 if getattr(config, "scale_decoder_outputs", config.tie_word_embeddings) else None
        self.blocks = list(model.decoder.block)
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        self.cross = [self._cross_keys_values(block.layer[1].EncDecAttention, encoded) for block in self.blocks]
        # additive mask as transformers' eager attention: the dtype's minimum where the input is padding
        self.cross_mask = (1.0 - attention_mask.to(encoded.dtype))[:, None, None, :] * torch.finfo(encoded.dtype).min
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: [rows, heads, steps, head_dim]
        self.row_inputs = torch.arange(input_ids.shape[0], device=input_ids.device)
        self.parent_rows: torch.LongTensor | None = None
        self.position = 0

    def step(self, last_tokens: torch.LongTensor) -> NextTokenLogProbs:
        return NextTokenLogProbs(self.final_hidden(last_tokens), self.model.lm_head.weight)

    def logits(self, last_tokens: torch.LongTensor) -> torch.Tensor:
        return self.model.lm_head(self.final_hidden(last_tokens))

    def reorder(self, parent_rows: torch.LongTensor, row_inputs: torch.LongTensor) -> None:
        """Row i of the next step extends row parent_rows[i] of this one and belongs to input row_inputs[i]."""
        self.parent_rows, self.row_inputs = parent_rows, row_inputs

    def final_hidden(self, last_tokens: torch.LongTensor) -> torch.Tensor:
        """[rows, d_model]: what lm_head maps to logits (the decoder's output, scaled where transformers does)."""
        rows = _RowsByInput(self.row_inputs, self.cross_mask.shape[0])
        bias = self._self_attention_bias()
        past = self.self_cache
        if past and self.parent_rows is not None:
            past = [(k.index_select(0, self.parent_rows), v.index_select(0, self.parent_rows)) for k, v in past]
        hidden = self.model.decoder.embed_tokens(last_tokens)
        new_cache = []
        for number, block in enumerate(self.blocks):
            hidden, keys_values = self._self_attention(block.layer[0], hidden, bias, past[number] if past else None)
            new_cache.append(keys_values)
            hidden = self._cross_attention(block.layer[1], hidden, self.cross[number], rows)
            hidden = block.layer[2](hidden)  # T5LayerFF: norm, feed-forward (gated or not), residual
        self.self_cache, self.parent_rows = new_cache, None
        self.position += 1
        hidden = self.model.decoder.final_layer_norm(hidden)
        if self.output_scale is not None:
            hidden = hidden * self.output_scale
        return hidden

    def _cross_keys_values(self, attention, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, _ = encoded.shape
        keys = attention.k(encoded).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        values = attention.v(encoded).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        return keys, values

    def _self_attention_bias(self) -> torch.Tensor:
        """[heads, position + 1]: T5's relative position bias of the query at this position to every earlier key
        (the first block's embedding, shared by all blocks, as transformers' T5Stack)."""
        attention = self.blocks[0].layer[0].SelfAttention
        device = attention.relative_attention_bias.weight.device
        relative = torch.arange(self.position + 1, device=device) - self.position
        buckets = attention._relative_position_bucket(
            relative, bidirectional=False, num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance,
        )
        return attention.relative_attention_bias(buckets).t()

    def _self_attention(self, layer, hidden, bias, past):
        attention = layer.SelfAttention
        normed = layer.layer_norm(hidden)
        rows = hidden.shape[0]
        query = attention.q(normed).view(rows, self.heads, 1, self.head_dim)
        keys = attention.k(normed).view(rows, self.heads, 1, self.head_dim)
        values = attention.v(normed).view(rows, self.heads, 1, self.head_dim)
        if past is not None:
            keys, values = torch.cat([past[0], keys], dim=2), torch.cat([past[1], values], dim=2)
        # T5 does not scale q.k; the bias carries the positions; every earlier position is visible. One query
        # against a few keys per row: products and sums beat a batched matmul of [1 x d] by [d x steps] matrices
        weights = torch.softmax((query * keys).sum(dim=-1) + bias, dim=-1)  # [rows, heads, steps]
        out = (weights.unsqueeze(-1) * values).sum(dim=2).view(rows, self.heads * self.head_dim)
        return hidden + attention.o(out), (keys, values)

    def _cross_attention(self, layer, hidden, keys_values, rows: "_RowsByInput"):
        attention = layer.EncDecAttention
        keys, values = keys_values
        query = attention.q(layer.layer_norm(hidden)).view(hidden.shape[0], self.heads, self.head_dim)
        query = rows.pad(query).transpose(1, 2)  # [inputs, heads, most rows of an input, head_dim]
        weights = torch.softmax(query @ keys.transpose(-1, -2) + self.cross_mask, dim=-1)
        out = rows.unpad((weights @ values).transpose(1, 2))  # [rows, heads, head_dim]
        return hidden + attention.o(out.reshape(hidden.shape[0], self.heads * self.head_dim))


class _RowsByInput:
    """Rows laid out per input as [inputs, most rows of an input, ...] (padding rows are zeros, never read)."""

    def __init__(self, row_inputs: torch.LongTensor, num_inputs: int):
        counts = torch.bincount(row_inputs, minlength=num_inputs)
        self.width = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        # each row's rank among its input's rows, in row order
        ordered_inputs, order = torch.sort(row_inputs, stable=True)
        slots = torch.empty_like(row_inputs)
        slots[order] = torch.arange(row_inputs.shape[0], device=row_inputs.device) - starts[ordered_inputs]
        self.index = row_inputs * self.width + slots
        self.num_inputs = num_inputs
        self.identity = self.width == 1 and row_inputs.shape[0] == num_inputs

    def pad(self, per_row: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return per_row.unsqueeze(1)
        padded = per_row.new_zeros((self.num_inputs * self.width, *per_row.shape[1:]))
        padded.index_copy_(0, self.index, per_row)
        return padded.view(self.num_inputs, self.width, *per_row.shape[1:])

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return padded.squeeze(1)
        return padded.reshape(self.num_inputs * self.width, *padded.shape[2:]).index_select(0, self.index)
