"""Decoding speed at K = 30 (30 beams, 15 groups, penalty 0.25) with the atomic item constraint, at 1 and 2 torch
threads.

    python -m pytest bench/bench_decoding.py --benchmark-only -s
    HARNESS_TRANSFORMERS_456_PYTHON=/path/to/python-with-transformers-4.56 python -m pytest bench/bench_decoding.py --benchmark-only -s
    (add -k threads1 or -k threads2 for one thread count)

Model: a ~12M-parameter T5 (d_model 256, 4+4 layers, 8 heads, d_ff 1024, tied embeddings, vocabulary 18,000 of
which 15,000 item tokens), random weights (speed does not depend on training); 64 queries of 20 tokens.
Measured, each as the median of several rounds:
- ours: diverse_beam_search, queries per second;
- bare passes: what the issue names as the reference cost, transformers' forward: one encoder pass +
  max_new_tokens = 2 cached decoder steps on batch x beams rows, nothing else;
- our passes: the model computation ours makes (harness.generative.decoder_steps.T5Steps): encoder and
  cross-attention keys/values once per query, step 1 on one row per query, step 2 on one row per distinct
  (query, item) among the beams, each with its lm_head logits in the same row blocks. Ours minus this is the
  log-softmax and the search itself;
- transformers 4.56.2's generate on the same weights with the same constraint, only where
  HARNESS_TRANSFORMERS_456_PYTHON names a Python that has it. It runs in a subprocess that stays up, and its
  rounds alternate with rounds of ours, so both see the same machine load; the speed-up is the median of the
  per-round ratios. Its first, untimed call also checks that ours returns the same sequences and scores.
The summary printed at the end gives the medians and ratios per thread count.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import textwrap
import time

import pytest
import torch

from harness.generative.decoder_steps import open_steps
from harness.generative.decoding import diverse_beam_search
from harness.generative.trie import PrefixTrie

VOCAB, ITEMS, BATCH, INPUT_LEN, BEAMS, GROUPS, STEPS = 18_000, 15_000, 64, 20, 30, 15, 2
PAD, EOS = 0, 1
CONFIG = dict(vocab_size=VOCAB, d_model=256, d_ff=1024, d_kv=32, num_layers=4, num_decoder_layers=4, num_heads=8,
              dropout_rate=0.0, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
THREADS = (1, 2)
OURS_PER_456_ROUND = 3  # rounds of ours before each round of 4.56 (ours is ~20x faster)
MEDIANS: dict[int, dict[str, float]] = {}  # threads -> name -> seconds
NOTES: dict[int, list[str]] = {}


@pytest.fixture(scope="module")
def setup():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**CONFIG)).eval()
    trie = PrefixTrie([[token] for token in range(VOCAB - ITEMS, VOCAB)], eos_token_id=EOS)
    input_ids = torch.randint(2, VOCAB - ITEMS, (BATCH, INPUT_LEN), generator=torch.Generator().manual_seed(0))
    yield model, trie, input_ids, torch.ones_like(input_ids)
    _print_summary(sum(p.numel() for p in model.parameters()))


@pytest.fixture(params=THREADS, ids=lambda n: f"threads{n}")
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _decode(model, trie, input_ids, attention_mask):
    return diverse_beam_search(model, input_ids, attention_mask, num_beams=BEAMS, num_beam_groups=GROUPS,
                               diversity_penalty=0.25, max_new_tokens=STEPS, constraint=trie,
                               decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD)


@torch.no_grad()
def _bare_passes(model, input_ids, attention_mask):
    """transformers' forward: encoder + 2 cached decoder steps, every step on batch x beams rows."""
    from transformers.modeling_outputs import BaseModelOutput

    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    hidden, mask = hidden.repeat_interleave(BEAMS, 0), attention_mask.repeat_interleave(BEAMS, 0)
    cache, tokens = None, torch.full((hidden.shape[0], 1), PAD, dtype=torch.long)
    for _ in range(STEPS):
        out = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                    decoder_input_ids=tokens, past_key_values=cache, use_cache=True)
        cache, tokens = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    return tokens


@torch.no_grad()
def _our_passes(model, input_ids, attention_mask, second_step_rows: list[tuple[int, int]]):
    """What ours runs of the model: step 1 on one row per query, step 2 on the given (query, item) rows, each
    row's logits computed in the blocks ours computes them in (ours then takes their log-softmax)."""
    steps = open_steps(model, input_ids, attention_mask)
    logprobs = steps.step(torch.full((input_ids.shape[0],), PAD, dtype=torch.long))
    for _ in logprobs.logits_in_blocks():
        pass
    queries = torch.tensor([query for query, _ in second_step_rows])
    steps.reorder(queries, queries)  # step 1 had one row per query, so a row's parent is its query
    logprobs = steps.step(torch.tensor([item for _, item in second_step_rows]))
    for _ in logprobs.logits_in_blocks():
        pass


def _record(threads: int, name: str, seconds: float) -> None:
    MEDIANS.setdefault(threads, {})[name] = seconds


def test_ours(benchmark, setup, threads):
    out = benchmark.pedantic(_decode, args=setup, rounds=7, warmup_rounds=1)
    assert out.sequences.shape == (BATCH, BEAMS, STEPS)
    _record(threads, "ours", benchmark.stats.stats.median)


def test_bare_passes(benchmark, setup, threads):
    model, _, input_ids, attention_mask = setup
    benchmark.pedantic(_bare_passes, args=(model, input_ids, attention_mask), rounds=5, warmup_rounds=1)
    _record(threads, "bare passes", benchmark.stats.stats.median)


def test_our_passes(benchmark, setup, threads):
    """With atomic IDs ours runs step 2 once per distinct (query, item) among the beams, which are exactly the
    first tokens of its 30 outputs per query."""
    model, _, input_ids, attention_mask = setup
    first_tokens = _decode(*setup).sequences[:, :, 0].tolist()
    rows = [(query, item) for query, items in enumerate(first_tokens) for item in dict.fromkeys(items)]
    NOTES.setdefault(threads, []).append(f"decoder rows at step 2: {len(rows)} distinct (query, item) of {BATCH * BEAMS} beams")
    benchmark.pedantic(_our_passes, args=(model, input_ids, attention_mask, rows), rounds=7, warmup_rounds=1)
    _record(threads, "our passes", benchmark.stats.stats.median)


# ---------------------------------------------------------------------------------------------- transformers 4.56

_GENERATE_456 = textwrap.dedent(
    """
    import json, sys, time, torch, transformers
    from transformers import T5Config, T5ForConditionalGeneration
    transformers.logging.set_verbosity_error()  # 4.56 warns on every call that group beam search will move out
    spec = torch.load(sys.argv[1])
    model = T5ForConditionalGeneration(T5Config(**spec["config"])).eval()
    model.load_state_dict(spec["state_dict"], strict=False)
    items = set(range(spec["first_item"], spec["config"]["vocab_size"]))
    item_list, eos = sorted(items), spec["config"]["eos_token_id"]
    def allowed(batch_id, sent):  # the usual trie function: items at depth 1, then EOS
        return item_list if len(sent) == 1 else [eos] if len(sent) == 2 and int(sent[1]) in items else [0]
    def generate(**extra):
        return model.generate(input_ids=spec["input_ids"], attention_mask=spec["attention_mask"], num_beams=30,
                              num_beam_groups=15, diversity_penalty=0.25, max_new_tokens=2, num_return_sequences=30,
                              prefix_allowed_tokens_fn=allowed, do_sample=False, **extra)
    # untimed first call (warm-up), with the scores, for the output check
    torch.set_num_threads(1)
    out = generate(output_scores=True, return_dict_in_generate=True)
    torch.save({"sequences": out.sequences, "scores": out.sequences_scores}, sys.argv[2])
    print(json.dumps({"version": transformers.__version__}), flush=True)
    for line in sys.stdin:  # one timed generate per line, at the thread count it names
        torch.set_num_threads(int(line))
        start = time.perf_counter()
        generate()
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
    """
)


class _Transformers456:
    """transformers 4.56's generate in a subprocess that stays up between timed calls."""

    def __init__(self, python: str, setup, folder):
        model, _, input_ids, attention_mask = setup
        torch.save({"config": CONFIG, "state_dict": model.state_dict(), "first_item": VOCAB - ITEMS,
                    "input_ids": input_ids, "attention_mask": attention_mask}, folder / "in.pt")
        (folder / "generate.py").write_text(_GENERATE_456)
        self.output = folder / "out.pt"
        self.process = subprocess.Popen([python, str(folder / "generate.py"), str(folder / "in.pt"), str(self.output)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = self._reply()["version"]
        self.expected = torch.load(self.output)

    def seconds(self, threads: int) -> float:
        self.process.stdin.write(f"{threads}\n")
        self.process.stdin.flush()
        return self._reply()["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"transformers 4.56 subprocess ended (exit code {self.process.wait()})")
        return json.loads(line)


@pytest.fixture(scope="module")
def transformers_456(setup, tmp_path_factory):
    python = os.environ.get("HARNESS_TRANSFORMERS_456_PYTHON")
    if not python:
        pytest.skip("set HARNESS_TRANSFORMERS_456_PYTHON to a Python with transformers 4.56.x")
    process = _Transformers456(python, setup, tmp_path_factory.mktemp("transformers_456"))
    yield process
    process.close()


def test_transformers_4_56(benchmark, setup, threads, transformers_456):
    expected = transformers_456.expected
    ours = _decode(*setup)
    assert ours.sequences.view(BATCH * BEAMS, STEPS).tolist() == expected["sequences"][:, 1:].tolist()
    torch.testing.assert_close(ours.scores.view(-1), expected["scores"], atol=1e-5, rtol=0)

    ours_rounds: list[float] = []
    theirs_rounds: list[float] = []

    def run_ours():  # pytest-benchmark's untimed setup before each timed 4.56 round
        times = []
        for _ in range(OURS_PER_456_ROUND):
            start = time.perf_counter()
            _decode(*setup)
            times.append(time.perf_counter() - start)
        ours_rounds.append(statistics.median(times))

    def run_theirs():
        theirs_rounds.append(transformers_456.seconds(threads))

    benchmark.pedantic(run_theirs, setup=run_ours, rounds=3, warmup_rounds=0)
    name = f"transformers {transformers_456.version}"
    _record(threads, name, statistics.median(theirs_rounds))
    _record(threads, "ours, beside it", statistics.median(ours_rounds))
    ratios = [theirs / ours for theirs, ours in zip(theirs_rounds, ours_rounds)]
    NOTES.setdefault(threads, []).append(
        f"speed-up over {name}, side by side: median {statistics.median(ratios):.1f}x "
        f"(rounds: {', '.join(f'{r:.1f}x' for r in ratios)}); same sequences and scores (atol 1e-5)"
    )


def _print_summary(parameters: int) -> None:
    if not MEDIANS:
        return
    lines = [f"\ndecoding K={BEAMS} ({GROUPS} groups), {BATCH} queries x {INPUT_LEN} tokens, T5 {parameters / 1e6:.1f}M "
             f"parameters, vocabulary {VOCAB} ({ITEMS} items); load average {os.getloadavg()[0]:.1f} at the end"]
    for threads, medians in sorted(MEDIANS.items()):
        lines.append(f" torch threads {threads}")
        for name, seconds in medians.items():
            lines.append(f"  {name:<22} median {seconds:7.3f} s   {BATCH / seconds:8.1f} queries/s")
        if "ours" in medians:
            for name in ("bare passes", "our passes"):
                if name in medians:
                    ratio = medians["ours"] / medians[name]
                    lines.append(f"  ours / {name}: {ratio:.2f}x (overhead {100 * (ratio - 1):+.0f}%)")
        lines.extend(f"  {note}" for note in NOTES.get(threads, []))
    print("\n".join(lines))
