"""Decoding speed at K = 30 (30 beams, 15 groups, penalty 0.25) with the atomic item constraint.

    python -m pytest bench/bench_decoding.py --benchmark-only -s

Model: a ~12M-parameter T5 (d_model 256, 4+4 layers, 8 heads, d_ff 1024, tied embeddings, vocabulary 18,000 of
which 15,000 item tokens), random weights (speed does not depend on training); 64 queries of 20 tokens.
Measured, each as the median of several rounds:
- ours: diverse_beam_search, queries per second;
- bare passes: what the issue names as the reference cost, one encoder pass + max_new_tokens = 2 cached decoder
  steps on batch x beams rows, nothing else;
- our passes: the forward passes ours actually makes (encoder, step 1 on one row per query, the cache reordered
  to step 2's rows, step 2 on one row per distinct (query, item) among the beams): ours minus this is the
  decoding overhead proper.
- transformers 4.56.2's generate on the same weights, only where HARNESS_TRANSFORMERS_456_PYTHON names a
  Python that has it (a subprocess; its own median is reported, not pytest-benchmark's single round).
The summary printed at the end gives the medians and ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
import torch

from harness.generative.decoding import diverse_beam_search
from harness.generative.trie import PrefixTrie

VOCAB, ITEMS, BATCH, INPUT_LEN, BEAMS, GROUPS, STEPS = 18_000, 15_000, 64, 20, 30, 15, 2
PAD, EOS = 0, 1
CONFIG = dict(vocab_size=VOCAB, d_model=256, d_ff=1024, d_kv=32, num_layers=4, num_decoder_layers=4, num_heads=8,
              dropout_rate=0.0, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
MEDIANS: dict[str, float] = {}
MEDIANS_ROWS: dict[str, int] = {}


@pytest.fixture(scope="module")
def setup():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**CONFIG)).eval()
    trie = PrefixTrie([[token] for token in range(VOCAB - ITEMS, VOCAB)], eos_token_id=EOS)
    input_ids = torch.randint(2, VOCAB - ITEMS, (BATCH, INPUT_LEN), generator=torch.Generator().manual_seed(0))
    yield model, trie, input_ids, torch.ones_like(input_ids)
    _print_summary(sum(p.numel() for p in model.parameters()))


def _decode(model, trie, input_ids, attention_mask):
    return diverse_beam_search(model, input_ids, attention_mask, num_beams=BEAMS, num_beam_groups=GROUPS,
                               diversity_penalty=0.25, max_new_tokens=STEPS, constraint=trie,
                               decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD)


@torch.no_grad()
def _passes(model, input_ids, attention_mask, second_step_rows: list[tuple[int, int]] | None):
    """Encoder + 2 cached decoder steps. second_step_rows=None: every step on batch x beams rows (the issue's
    reference cost). Otherwise step 1 on one row per query, step 2 on the given (query, item) rows."""
    from transformers.modeling_outputs import BaseModelOutput

    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = attention_mask
    if second_step_rows is None:
        hidden, mask = hidden.repeat_interleave(BEAMS, 0), mask.repeat_interleave(BEAMS, 0)
    cache, tokens = None, torch.full((hidden.shape[0], 1), PAD, dtype=torch.long)
    for step in range(STEPS):
        out = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                    decoder_input_ids=tokens, past_key_values=cache, use_cache=True)
        cache, tokens = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        if second_step_rows is not None and step == 0:
            queries = torch.tensor([query for query, _ in second_step_rows])
            cache.reorder_cache(queries)
            hidden, mask = hidden[queries], mask[queries]
            tokens = torch.tensor([[item] for _, item in second_step_rows])
    return tokens


def _record(benchmark, name: str) -> None:
    MEDIANS[name] = benchmark.stats.stats.median


def test_ours(benchmark, setup):
    out = benchmark.pedantic(_decode, args=setup, rounds=7, warmup_rounds=1)
    assert out.sequences.shape == (BATCH, BEAMS, STEPS)
    _record(benchmark, "ours")


def test_bare_passes(benchmark, setup):
    model, _, input_ids, attention_mask = setup
    benchmark.pedantic(_passes, args=(model, input_ids, attention_mask, None), rounds=7, warmup_rounds=1)
    _record(benchmark, "bare passes")


def test_our_passes(benchmark, setup):
    """With atomic IDs ours runs step 2 once per distinct (query, item) among the beams, which are exactly the
    first tokens of its 30 outputs per query."""
    model, _, input_ids, attention_mask = setup
    first_tokens = _decode(*setup).sequences[:, :, 0].tolist()
    rows = [(query, item) for query, items in enumerate(first_tokens) for item in dict.fromkeys(items)]
    MEDIANS_ROWS["step-2 rows"] = len(rows)
    benchmark.pedantic(_passes, args=(model, input_ids, attention_mask, rows), rounds=7, warmup_rounds=1)
    _record(benchmark, "our passes")


_GENERATE_456 = textwrap.dedent(
    """
    import json, statistics, sys, time, torch, transformers
    from transformers import T5Config, T5ForConditionalGeneration
    spec = torch.load(sys.argv[1])
    model = T5ForConditionalGeneration(T5Config(**spec["config"])).eval()
    model.load_state_dict(spec["state_dict"], strict=False)
    items = set(range(spec["first_item"], spec["config"]["vocab_size"]))
    item_list, eos = sorted(items), spec["config"]["eos_token_id"]
    def allowed(batch_id, sent):  # the usual trie function: items at depth 1, then EOS
        return item_list if len(sent) == 1 else [eos] if len(sent) == 2 and int(sent[1]) in items else [0]
    times = []
    for _ in range(spec["rounds"]):
        start = time.perf_counter()
        model.generate(input_ids=spec["input_ids"], attention_mask=spec["attention_mask"], num_beams=30,
                       num_beam_groups=15, diversity_penalty=0.25, max_new_tokens=2, num_return_sequences=30,
                       prefix_allowed_tokens_fn=allowed, do_sample=False)
        times.append(time.perf_counter() - start)
    print(json.dumps({"version": transformers.__version__, "median_s": statistics.median(times)}))
    """
)


@pytest.mark.skipif(not os.environ.get("HARNESS_TRANSFORMERS_456_PYTHON"),
                    reason="set HARNESS_TRANSFORMERS_456_PYTHON to a Python with transformers 4.56.x")
def test_transformers_4_56(benchmark, setup, tmp_path):
    model, _, input_ids, attention_mask = setup
    torch.save({"config": CONFIG, "state_dict": model.state_dict(), "first_item": VOCAB - ITEMS, "rounds": 3,
                "input_ids": input_ids, "attention_mask": attention_mask}, tmp_path / "in.pt")
    (tmp_path / "generate.py").write_text(_GENERATE_456)
    command = [os.environ["HARNESS_TRANSFORMERS_456_PYTHON"], str(tmp_path / "generate.py"), str(tmp_path / "in.pt")]
    result = benchmark.pedantic(lambda: subprocess.run(command, check=True, capture_output=True, text=True), rounds=1)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    MEDIANS[f"transformers {report['version']}"] = report["median_s"]


def _print_summary(parameters: int) -> None:
    if not MEDIANS:
        return
    lines = [f"\ndecoding K={BEAMS} ({GROUPS} groups), {BATCH} queries x {INPUT_LEN} tokens, T5 {parameters / 1e6:.1f}M "
             f"parameters, vocabulary {VOCAB} ({ITEMS} items), torch threads {torch.get_num_threads()}"]
    for name, seconds in MEDIANS.items():
        lines.append(f"  {name:<22} median {seconds:7.3f} s   {BATCH / seconds:8.1f} queries/s")
    if MEDIANS_ROWS:
        lines.append(f"  decoder rows at step 2: {MEDIANS_ROWS['step-2 rows']} distinct (query, item) of {BATCH * BEAMS} beams")
    if "ours" in MEDIANS:
        for name in ("bare passes", "our passes"):
            if name in MEDIANS:
                lines.append(f"  ours / {name}: {MEDIANS['ours'] / MEDIANS[name]:.2f}x "
                             f"(overhead {100 * (MEDIANS['ours'] / MEDIANS[name] - 1):+.0f}%)")
        for name in MEDIANS:
            if name.startswith("transformers"):
                lines.append(f"  speed-up over {name}: {MEDIANS[name] / MEDIANS['ours']:.1f}x")
    print("\n".join(lines))
