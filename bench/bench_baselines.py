"""Speed of the reference baselines: BM25 and bi-encoder indexing and querying, SASRec/BERT4Rec training steps.

    python -m pytest bench/bench_baselines.py --benchmark-only -s

Synthetic catalogues of 10k and 100k items: each text 6-14 words drawn from a Zipf(1.1) vocabulary of 30k
made-up words (like titles plus a few genres); 1,000 queries of 1-3 words from the same vocabulary.
- BM25: building the index (bm25s tokenise + index + our sparse matrices), then ranking the 1,000 queries
  at K = 30 in one batch.
- Bi-encoder: encoding is measured on a 1,000-text sample with the bundled all-MiniLM-L6-v2 and extrapolated
  linearly to 10k and 100k (encoding cost is linear in the number of texts; encoding 100k texts on 2 CPU cores
  would take many minutes). Exact search (normalised matrix product + deterministic top-30) is measured for
  real on 384-d random unit vectors at 10k and 100k items for the 1,000 queries (query encoding excluded).
- SASRec / BERT4Rec: training steps per second on an ml-small-sized problem (9,700 items, batch 128, max_len
  50, d_model 64, 2 layers, 2 heads), SASRec with both losses; one thread (see the docstring of
  SASRec's `loss` for why BCE is the default on CPU).
The lines printed with -s give the derived rates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.baselines.bm25 import BM25Index
from harness.baselines.topk import top_k_rows

N_QUERIES, K = 1_000, 30
VOCAB = 30_000


def _words(rng: np.random.Generator, n: int) -> np.ndarray:
    ranks = np.minimum(rng.zipf(1.1, size=n), VOCAB) - 1
    return ranks


def synthetic_texts(n: int, lo: int, hi: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi + 1, size=n)
    words = _words(rng, int(lengths.sum()))
    out, pos = [], 0
    for length in lengths:
        out.append(" ".join(f"w{w}x" for w in words[pos : pos + length]))
        pos += length
    return out


@pytest.fixture(scope="module")
def queries() -> list[str]:
    return synthetic_texts(N_QUERIES, 1, 3, seed=1)


def _report(name: str, seconds: float, count: int, unit: str) -> None:
    print(f"\n[bench_baselines] {name}: {seconds:.3f} s, {count / seconds:,.0f} {unit}/s")


@pytest.mark.parametrize("n_items", [10_000, 100_000])
def test_bm25_index(benchmark, n_items):
    texts = synthetic_texts(n_items, 6, 14, seed=0)
    build = lambda: BM25Index(texts, k1=1.2, b=0.75, method="lucene", stopwords="en", stemmer="none")  # noqa: E731
    benchmark.pedantic(build, rounds=3, iterations=1)
    _report(f"BM25 index {n_items:,} items", benchmark.stats.stats.median, n_items, "items")


@pytest.mark.parametrize("n_items", [10_000, 100_000])
def test_bm25_query(benchmark, n_items, queries):
    index = BM25Index(synthetic_texts(n_items, 6, 14, seed=0), k1=1.2, b=0.75, method="lucene", stopwords="en", stemmer="none")
    out = benchmark.pedantic(index.search, args=(queries, K), rounds=3, iterations=1)
    assert len(out) == N_QUERIES
    _report(f"BM25 query {N_QUERIES:,} queries over {n_items:,} items", benchmark.stats.stats.median, N_QUERIES, "queries")


def test_biencoder_encode_sample(benchmark):
    from harness.baselines.biencoder import load_encoder

    encoder, _ = load_encoder("default", allow_download=False, device="cpu", max_seq_length=None)
    sample = synthetic_texts(1_000, 6, 14, seed=0)
    encode = lambda: encoder.encode(sample, batch_size=64, normalize_embeddings=True, show_progress_bar=False)  # noqa: E731
    benchmark.pedantic(encode, rounds=1, iterations=1, warmup_rounds=0)
    per_item = benchmark.stats.stats.median / len(sample)
    _report("bi-encoder encode 1,000-text sample", benchmark.stats.stats.median, len(sample), "texts")
    for n in (10_000, 100_000):
        print(f"[bench_baselines] bi-encoder encode {n:,} items (extrapolated): {per_item * n:,.0f} s")


@pytest.mark.parametrize("n_items", [10_000, 100_000])
def test_biencoder_exact_search(benchmark, n_items):
    rng = np.random.default_rng(0)
    items = rng.normal(size=(n_items, 384)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    q = rng.normal(size=(N_QUERIES, 384)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    def search():
        out = []
        for start in range(0, N_QUERIES, 256):  # the adapter's blocking, bounding the score matrix
            out.extend(top_k_rows(q[start : start + 256] @ items.T, K))
        return out

    benchmark.pedantic(search, rounds=3, iterations=1)
    _report(f"bi-encoder exact search {N_QUERIES:,} queries over {n_items:,} items", benchmark.stats.stats.median, N_QUERIES, "queries")


def _sequential_step(kind: str):
    import torch

    from harness.baselines.bert4rec import BERT4RecAdapter
    from harness.baselines.sasrec import SASRecAdapter
    from harness.baselines.toydata import toy_view

    torch.set_num_threads(1)
    n_items, batch = 9_700, 128
    rng = np.random.default_rng(0)
    # 128 users of 52 items: one full window of 50 positions each, so a batch is exactly one step's worth.
    seqs = [rng.choice(n_items, size=54, replace=False).tolist() for _ in range(batch)]
    view, _, _ = toy_view(seqs, n_items)
    cls, extra = {"sasrec-bce": (SASRecAdapter, {"loss": "bce"}), "sasrec-ce": (SASRecAdapter, {"loss": "ce"}),
                  "bert4rec": (BERT4RecAdapter, {})}[kind]
    params = {"max_len": 50, "batch_size": batch, "threads": 1, **extra}
    adapter = cls(params=params, seed=0, workdir=Path("/nonexistent"), tasks=frozenset({"rec"}), submission_dir=Path("."))
    adapter.prepare(view)  # what fit() does before its first epoch; no training, no checkpoint
    model = adapter._model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch_np = next(adapter.epoch_batches(rng))
    tensors = {k: torch.as_tensor(v) for k, v in batch_np.items()}

    def step():
        loss = adapter.batch_loss(model, tensors)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


@pytest.mark.parametrize("kind", ["sasrec-bce", "sasrec-ce", "bert4rec"])
def test_sequential_training_steps(benchmark, kind):
    step = _sequential_step(kind)
    step()  # warm-up
    benchmark.pedantic(step, rounds=5, iterations=1)
    median = benchmark.stats.stats.median
    print(f"\n[bench_baselines] {kind} training: {1 / median:.2f} steps/s (batch 128 x 50 positions, 9,700 items, 1 thread)")

