"""Training throughput: one optimizer step through DeepSpeed ZeRO-2 vs a plain PyTorch loop, same model and batch.

    python -m pytest bench/bench_training.py --benchmark-only

Both sides run the offline preset's architecture (t5-offline-small: d_model 128, 2+2 layers) at the paper's
batch of 128 examples, with the shipped DeepSpeed config's gradient clipping (1.0) and torch AdamW
(lr 0.002, weight decay 0.01) — the submission's real step. The DeepSpeed benchmark records the ratio
of the two medians (samples/s DeepSpeed / samples/s plain) in its extra_info; the aim is >= 0.9.
Both run on one torch thread (the shipped configs' `threads = 1`); keep the machine otherwise quiet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.generative.backbones import PRESETS

REPO = Path(__file__).resolve().parents[1]
BATCH, SOURCE_LEN, VOCAB = 128, 12, 4000
ROUNDS, WARMUP = 30, 5
MEDIANS: dict[str, float] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread, as the shipped configs (`threads = 1`): two threads spin-wait when a core is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=VOCAB, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                      **PRESETS["t5-offline-small"].model_config)
    return T5ForConditionalGeneration(config)


def _batch():
    gen = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(3, VOCAB, (BATCH, SOURCE_LEN), generator=gen),
        "attention_mask": torch.ones((BATCH, SOURCE_LEN), dtype=torch.long),
        "labels": torch.stack([torch.randint(3, VOCAB, (BATCH,), generator=gen), torch.ones(BATCH, dtype=torch.long)], 1),
    }


def _optimizer(model):
    from harness.generative.training import Hyperparameters, make_optimizer

    return make_optimizer(model, Hyperparameters())


def _record(benchmark, name: str) -> None:
    median = benchmark.stats.stats.median
    MEDIANS[name] = median
    benchmark.extra_info["samples_per_s_median"] = round(BATCH / median, 1)


def test_plain_pytorch_step(benchmark):
    model, batch = _model(), _batch()
    optimizer = _optimizer(model)
    model.train()

    def step():
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    benchmark.group = "train-step"
    benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    _record(benchmark, "plain")


def test_deepspeed_zero2_step(benchmark):
    import deepspeed

    from harness.generative.training import check_deepspeed_accepts, resolve_deepspeed_config, setup_distributed

    _, world = setup_distributed()
    path = REPO / "submissions" / "joint_t5" / "deepspeed.json"
    cfg = resolve_deepspeed_config(json.loads(path.read_text()), path=path, batch_size=BATCH, world_size=world,
                                   bf16_available=False)
    check_deepspeed_accepts(cfg, path)
    model = _model()
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=_optimizer(model), config=cfg)
    engine.train()
    batch = _batch()

    def step():
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()

    benchmark.group = "train-step"
    benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    _record(benchmark, "deepspeed")
    if "plain" in MEDIANS:
        benchmark.extra_info["throughput_ratio_vs_plain"] = round(MEDIANS["plain"] / MEDIANS["deepspeed"], 3)
