"""Named T5 backbones: the paper's pretrained flan-t5-base, and small from-scratch models that need no network.

Every preset name is recorded in the result record with its resolved model config, parameter count,
tokenizer hash and output-layer policy, so two records with the same preset trained the same model.

- `flan-t5-base`: the paper's `google/flan-t5-base` (248M parameters), loaded through transformers from a
  local folder (`backbone_path`) or the Hugging Face cache, never from the network unless the submission
  opts in with `allow_download = true`. Its output layer is pretrained (untied in the checkpoint) and kept.
- `t5-offline-small` (the default of the shipped submissions) and `t5-offline-tiny` (tests): a T5 built from
  a `T5Config` with a BPE tokenizer trained on the dataset's training text (tokenizer.py).

Output layer at the offline presets (DESIGN.md, known traps): an untied T5 output layer is initialised
with standard deviation 1.0, which gives logits of standard deviation ~sqrt(d_model) over thousands of
item tokens at step 0 and trains poorly. The offline presets TIE it: lm_head shares the input embedding
and transformers scales the decoder output by d_model**-0.5 before it (T5's tied convention), so initial
logits have standard deviation ~1. Note that transformers 5 always ties T5's lm_head to the embedding;
`tie_word_embeddings=False` there only switches off that d_model**-0.5 scale and so brings the trap back,
which is why a `model` override of `tie_word_embeddings` is refused.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.errors import HarnessError
from harness.generative.semantic_ids import SemanticCodes, SemanticVocabulary, add_semantic_tokens
from harness.generative.tokenizer import (
    ItemVocabulary,
    add_item_tokens,
    tokenizer_hash,
    train_offline_tokenizer,
)

OFFLINE_DEFAULT = "t5-offline-small"


@dataclass(frozen=True)
class BackbonePreset:
    name: str
    description: str
    source: str  # "pretrained" (transformers checkpoint) | "offline" (built from a T5Config)
    hf_id: str | None = None
    model_config: Mapping[str, Any] = field(default_factory=dict)  # T5Config kwargs (offline)
    tokenizer_vocab_size: int = 0  # BPE vocabulary before item tokens (offline)
    output_layer: str = ""


_TIED = "tied to the input embedding, decoder output scaled by d_model**-0.5 (initial logit std ~1)"

PRESETS: dict[str, BackbonePreset] = {
    p.name: p
    for p in (
        BackbonePreset(
            name="flan-t5-base",
            description="the paper's google/flan-t5-base (248M parameters), from a local folder or the HF cache",
            source="pretrained",
            hf_id="google/flan-t5-base",
            output_layer="pretrained (untied), item-token rows initialised from the pretrained rows' mean/std",
        ),
        BackbonePreset(
            name="t5-offline-small",
            description="from-scratch T5 (d_model 128, 2+2 layers) with a BPE tokenizer trained on the "
            "training text; sized for the 15-minute CPU run",
            source="offline",
            model_config=dict(
                d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=2, num_decoder_layers=2,
                feed_forward_proj="gated-gelu", dropout_rate=0.1,
            ),
            tokenizer_vocab_size=4000,
            output_layer=_TIED,
        ),
        BackbonePreset(
            name="t5-offline-tiny",
            description="from-scratch T5 (d_model 32, 1+1 layers) for tests",
            source="offline",
            model_config=dict(
                d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1, num_decoder_layers=1,
                feed_forward_proj="relu", dropout_rate=0.0,
            ),
            tokenizer_vocab_size=300,
            output_layer=_TIED,
        ),
    )
}

# Keys the offline presets fix themselves; a `model` override of these is refused.
_FIXED_CONFIG_KEYS = {"vocab_size", "pad_token_id", "eos_token_id", "decoder_start_token_id", "tie_word_embeddings"}


@dataclass
class Backbone:
    """A ready model + tokenizer with the item tokens in its vocabulary."""

    preset: BackbonePreset
    model: Any  # transformers T5ForConditionalGeneration
    tokenizer: Any  # transformers fast tokenizer
    items: ItemVocabulary | SemanticVocabulary
    tokenizer_hash: str
    info: dict[str, Any]  # what the result record says about the backbone

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def decoder_start_token_id(self) -> int:
        return int(self.model.config.decoder_start_token_id)


def get_preset(name: str) -> BackbonePreset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=2)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise HarnessError(f"params.backbone = {name!r} is not a backbone preset.{hint} Available: {', '.join(PRESETS)}")
    return PRESETS[name]


def load_backbone(
    name: str,
    *,
    n_items: int,
    tokenizer_texts: Iterable[str],
    seed: int,
    model_overrides: Mapping[str, Any] | None = None,
    local_path: str | Path | None = None,
    allow_download: bool = False,
    semantic_codes: SemanticCodes | None = None,
) -> Backbone:
    """Build or load the named backbone and add the item ID tokens: one per catalogue item (atomic IDs), or,
    given `semantic_codes`, one per code of each level (semantic IDs, harness.generative.semantic_ids)."""
    preset = get_preset(name)
    add_ids = ((lambda tok: add_item_tokens(tok, n_items)) if semantic_codes is None
               else (lambda tok: add_semantic_tokens(tok, semantic_codes)))
    if preset.source == "offline":
        return _build_offline(preset, add_ids, tokenizer_texts, seed, dict(model_overrides or {}))
    if model_overrides:
        raise HarnessError(f"params.model overrides the architecture of offline presets only, not {name!r}")
    return _load_pretrained(preset, add_ids, seed, local_path, allow_download)


# ---- offline presets --------------------------------------------------------------------------------
def _build_offline(
    preset: BackbonePreset, add_ids: Callable, texts: Iterable[str], seed: int, overrides: dict[str, Any]
) -> Backbone:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    fixed = sorted(set(overrides) & _FIXED_CONFIG_KEYS)
    if fixed:
        raise HarnessError(f"params.model: {', '.join(fixed)} cannot be overridden (the preset sets them)")
    vocab_size = int(overrides.pop("tokenizer_vocab_size", preset.tokenizer_vocab_size))
    tokenizer = train_offline_tokenizer(texts, vocab_size)
    items = add_ids(tokenizer)
    config_kwargs = {**preset.model_config, **overrides}
    try:
        config = T5Config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,  # the output-layer fix: see the module docstring
            **config_kwargs,
        )
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"params.model = {overrides!r}: not a valid T5 configuration ({exc})") from exc
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    check_output_layer_tied(model)
    return _finish(preset, model, tokenizer, items, {**config_kwargs, "tokenizer_vocab_size": vocab_size})


def check_output_layer_tied(model) -> None:
    """The offline presets rely on a tied, scaled output layer; fail loudly if transformers changes that."""
    tied = model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    scaled = getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings)
    if not (tied and scaled):
        raise RuntimeError(
            f"T5 output layer is not tied and scaled (tied={tied}, scaled={scaled}); the offline preset's "
            "output-layer fix needs revisiting for this transformers version"
        )


# ---- pretrained presets -----------------------------------------------------------------------------
def _load_pretrained(
    preset: BackbonePreset, add_ids: Callable, seed: int, local_path: str | Path | None, allow_download: bool
) -> Backbone:
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    if local_path is not None:
        source = str(Path(local_path).expanduser())
        if not Path(source).is_dir():
            raise HarnessError(f"params.backbone_path = {str(local_path)!r}: no such folder")
    else:
        source = preset.hf_id
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=not allow_download)
        model = T5ForConditionalGeneration.from_pretrained(source, local_files_only=not allow_download)
    except OSError as exc:
        where = f"the folder {source}" if local_path is not None else f"the Hugging Face cache ({source})"
        raise HarnessError(
            f"params.backbone = {preset.name!r}: not found in {where}, and downloading is off. "
            f"Put a copy in a folder and set params.backbone_path, or set params.allow_download = true on a "
            f"machine with network access, or use the offline preset {OFFLINE_DEFAULT!r} "
            f"(params.backbone = {OFFLINE_DEFAULT!r}). Cause: {str(exc).splitlines()[0]}"
        ) from exc
    items = add_ids(tokenizer)
    old_rows = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(max(old_rows, len(tokenizer)))
    _init_item_rows(model, items, seed)
    return _finish(preset, model, tokenizer, items, {"source": source})


def _init_item_rows(model, items: ItemVocabulary | SemanticVocabulary, seed: int) -> None:
    """Every item row (input embedding and untied output layer) drawn alike from the pretrained rows' stats.

    Needed because the first few item ids may land on unused pretrained rows (flan-t5's tokenizer has 32100
    tokens, its embedding 32128 rows) while the rest are new: without this, items would start unequal.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    lo, hi = items.offset, items.offset + items.n_tokens
    matrices = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings().weight
    if out.data_ptr() != matrices[0].data_ptr():
        matrices.append(out)
    with torch.no_grad():
        for weight in matrices:
            known = weight[:lo].float()
            mean, std = known.mean(dim=0), known.std(dim=0)
            noise = torch.randn(hi - lo, weight.shape[1], generator=gen)
            weight[lo:hi] = (mean + noise * std).to(weight.dtype)


# ---- shared -----------------------------------------------------------------------------------------
def _finish(preset: BackbonePreset, model, tokenizer, items: ItemVocabulary | SemanticVocabulary, config: dict[str, Any]) -> Backbone:
    tok_hash = tokenizer_hash(tokenizer)
    info = {
        "preset": preset.name,
        "source": preset.source,
        "hf_id": preset.hf_id,
        "config": config,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": int(model.config.vocab_size),
        "item_token_offset": items.offset,
        "tokenizer_hash": tok_hash,
        "output_layer": preset.output_layer,
    }
    return Backbone(preset, model, tokenizer, items, tok_hash, info)
