"""Learning curves of a from-scratch T5 on one compiled dataset: R@K after every epoch, cheaply.

    python tools/t5_learning_curves.py --dataset ml-small --tasks rec --epochs 8 --source-eos 0 --layers 1

What it is for: sizing an offline preset (docs/generative.md, "ml-small"). It trains the harness's own backbone
(`t5-offline-small` with `--d/--layers/...` overrides, the same tokenizer, inputs and targets as the T5 adapter) with a
plain PyTorch AdamW loop (the adapter trains the same model through DeepSpeed ZeRO; on one CPU rank the two agree
within noise, docs/generative.md "Training throughput") and, after each epoch, scores the validation and test
requests by the top-K of the first decoding step's item scores: one forward pass, no beam search, so a curve costs
seconds per epoch. `--beam` adds, after the last epoch, the protocol's diverse beam search on the test requests
(the number the leaderboard would show) and the mean number of distinct items it returns.

It writes nothing but the JSON lines it prints (and `--out FILE`, a JSON of the arguments and the curve). It is an
exploration tool, not the benchmark: numbers that matter are re-measured through `python -m harness run`.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from harness.data.store import CompiledDataset
from harness.generative.backbones import load_backbone
from harness.generative.decoding import PrefixTrie, diverse_beam_search
from harness.generative.t5_adapter import pad_batch, tokenizer_corpus, unique_in_order
from harness.generative.tokenizer import encode_sources, rec_source, target_ids


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-small")
    p.add_argument("--tasks", default="rec", help="rec, search or rec,search (the joint model)")
    p.add_argument("--hist", type=int, default=1, help="last N history items (0: whole history)")
    p.add_argument("--source-eos", type=int, default=1, help="1: EOS appended to every input (T5's convention)")
    p.add_argument("--target-eos-loss", type=int, default=1, help="0: the loss skips the EOS after the item")
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--layers", type=int, default=2, help="decoder layers (and encoder layers, see --enc-layers)")
    p.add_argument("--enc-layers", type=int, default=-1, help="encoder layers when not --layers")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--sched", choices=("linear", "constant", "cosine"), default="linear")
    p.add_argument("--warmup", type=float, default=0.0, help="share of the steps with a linear warm-up")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beam", action="store_true", help="after the last epoch, the protocol's diverse beam search")
    p.add_argument("--eos-attention", action="store_true",
                   help="after every epoch, each decoder head's mean cross-attention weight on the inputs' EOS (the "
                        "last input position) at the first decoding step, over the first task's test requests")
    p.add_argument("--out", default="", help="also write the arguments and the curve to this JSON file")
    return p.parse_args()


def main() -> None:
    a = parse_args()
    torch.set_num_threads(a.threads)
    ds = CompiledDataset.open(a.dataset)
    tv = ds.train_view()
    n, k = len(tv.catalogue), ds.headline_k
    overrides = dict(d_model=a.d, d_ff=4 * a.d, d_kv=a.d // a.heads, num_heads=a.heads, dropout_rate=a.dropout,
                     num_layers=a.layers if a.enc_layers < 0 else a.enc_layers, num_decoder_layers=a.layers)
    bb = load_backbone("t5-offline-small", n_items=n, tokenizer_texts=tokenizer_corpus(tv), seed=a.seed,
                       model_overrides=overrides)
    model, tok = bb.model, bb.tokenizer
    if a.eos_attention:
        model.set_attn_implementation("eager")  # the fused kernels return no attention weights
    tasks = a.tasks.split(",")

    def encode(task, examples):
        if task == "rec":
            texts = [rec_source(h) for h in examples.histories(a.hist or None)]
        else:
            texts = list(examples.text)
        return encode_sources(tok, texts, 512, keep_end=task == "rec", eos=bool(a.source_eos))

    sources, items = [], []
    if "rec" in tasks:
        sources += encode("rec", tv.rec_train)
        items.append(np.asarray(tv.rec_train.target))
    if "search" in tasks:
        query, item = tv.search_train.pairs()
        encoded = encode("search", tv.search_train)
        sources += [encoded[i] for i in query]
        items.append(np.asarray(item))
    targets = target_ids(np.concatenate(items), bb.items, bb.eos_token_id)
    evals = {}
    for task in tasks:
        for split in ("valid", "test"):
            if task == "rec":
                requests, t = ds.rec_requests(split), ds.rec_targets(split)
                evals[f"{task}/{split}"] = (task, encode(task, requests), [np.array([x]) for x in t])
            else:
                requests = ds.search_requests(split)
                off, rel = ds.search_qrels(split)
                evals[f"{task}/{split}"] = (task, encode(task, requests), [rel[off[i]:off[i + 1]] for i in range(len(requests))])
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters()), "examples": len(sources)}), flush=True)

    head = {"rec": tv.catalogue.head_rec, "search": tv.catalogue.head_search}

    def recall(rankings, relevant, task):
        """(all, head, torso) recall: mean over requests of the share of relevant items ranked."""
        overall, heads, torsos = [], [], []
        for row, rel in zip(rankings, relevant):
            hit = np.isin(rel, row[row >= 0])
            overall.append(hit.mean())
            is_head = head[task][rel]
            if is_head.any():
                heads.append(hit[is_head].mean())
            if (~is_head).any():
                torsos.append(hit[~is_head].mean())
        return [round(float(np.mean(x)), 4) if x else None for x in (overall, heads, torsos)]

    def first_step_topk(srcs):
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(srcs), 256):
                ids, mask = pad_batch(srcs[s:s + 256], bb.pad_token_id, "cpu")
                start = torch.full((ids.shape[0], 1), bb.decoder_start_token_id)
                logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=start).logits[:, 0]
                out.append(torch.topk(logits[:, bb.items.offset:bb.items.offset + n], k).indices.numpy())
        model.train()
        return np.concatenate(out)

    def eos_attention(srcs):
        """[decoder layer][head]: mean weight of the first decoding step's cross-attention on the last input token."""
        model.eval()
        ids, mask = pad_batch(srcs, bb.pad_token_id, "cpu")
        last = mask.sum(1) - 1
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_attentions=True,
                        decoder_input_ids=torch.full((ids.shape[0], 1), bb.decoder_start_token_id))
        model.train()
        rows = torch.arange(ids.shape[0])
        return [[round(float(w), 3) for w in layer[rows, :, 0, last].mean(0)] for layer in out.cross_attentions]

    def beam(srcs):
        trie = PrefixTrie(bb.items.all_sequences(), bb.eos_token_id)
        model.eval()
        out = np.full((len(srcs), k), -1)
        for s in range(0, len(srcs), 64):
            ids, mask = pad_batch(srcs[s:s + 64], bb.pad_token_id, "cpu")
            decoded = diverse_beam_search(
                model, ids, mask, num_beams=k, num_beam_groups=k // 2, diversity_penalty=0.25, max_new_tokens=2,
                constraint=trie, num_return_sequences=k, length_penalty=1.0,
                decoder_start_token_id=bb.decoder_start_token_id, eos_token_id=bb.eos_token_id,
                pad_token_id=bb.pad_token_id)
            for r, tokens in enumerate(decoded.sequences[:, :, 0].numpy()):
                found = unique_in_order(bb.items.items_of(tokens))[:k]
                out[s + r, :len(found)] = found
        return out

    torch.manual_seed(a.seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr)
    steps_per_epoch = len(sources) // a.bs
    total = steps_per_epoch * a.epochs
    warm = int(a.warmup * total)

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        f = (step - warm) / max(1, total - warm)
        return {"linear": max(0.0, 1 - f), "cosine": 0.5 * (1 + math.cos(math.pi * min(1.0, f))), "constant": 1.0}[a.sched]

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    curve = []
    for epoch in range(1, a.epochs + 1):
        order = np.random.default_rng([a.seed, epoch]).permutation(len(sources))
        losses, t0 = [], time.time()
        model.train()
        for b in range(steps_per_epoch):
            idx = order[b * a.bs:(b + 1) * a.bs]
            ids, mask = pad_batch([sources[i] for i in idx], bb.pad_token_id, "cpu")
            labels = torch.as_tensor(targets[idx])
            if not a.target_eos_loss:
                labels[:, 1] = -100
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the submissions' deepspeed.json clips at 1.0
            opt.step()
            schedule.step()
            losses.append(loss.item())
        row = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "train_s": round(time.time() - t0, 1)}
        for name, (task, srcs, rel) in evals.items():
            row[f"{name} R@{k} (first step)"] = recall(first_step_topk(srcs), rel, task)
            if a.beam and epoch == a.epochs and name.endswith("test"):
                ranked = beam(srcs)
                row[f"{name} R@{k} (diverse beam)"] = recall(ranked, rel, task)
                row[f"{name} distinct items"] = round(float((ranked >= 0).sum(1).mean()), 2)
        if a.eos_attention:
            row["cross-attention on the last input token"] = eos_attention(evals[f"{tasks[0]}/test"][1])
        print(json.dumps(row), flush=True)
        curve.append(row)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(a), "curve": curve}, fh, indent=1)


if __name__ == "__main__":
    main()
