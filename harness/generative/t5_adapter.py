"""The generative T5 submissions (Gen_R, Gen_S, Gen_R+S): atomic item IDs, DeepSpeed training, diverse beam search.

One adapter serves the three submissions; `tasks` (from the submission config) decides what it trains on
and serves. Training data (paper §4, Table 1):

    rec    one example per training instance: "<item_4> <item_17> <item_2>" -> <item_9> EOS
           (the history's last `max_history` items; 0 = the whole history, as the paper)
    search one example per (query, relevant item) pair (SearchExamples.pairs()): "query text" -> <item_3> EOS
    joint  both lists concatenated; every epoch shuffles them together (seeded by the unit's seed)

`cap_per_item = { search = 5 }` keeps at most 5 training instances per target item of that task before
training (paper Figure 4: "limiting the number of training instances per item" of the added task): a seeded
permutation of the task's instances (one per rec example, one per (query, item) pair), then the first N of
each item, kept in their original order. Validation examples are never capped.

Retrieval decodes with diverse (group) beam search constrained to the item tokens: num_beams = K,
num_beam_groups = K / 2, diversity penalty 0.25 (the paper's settings; overridable in [params]), K
returned sequences of which the first occurrence of each item is kept, best first. Under the protocol's
"distinct" decoding (`--decoding distinct`, harness.protocol.decodings) it is plain constrained beam search
with K beams instead (one group, no diversity penalty): K distinct items. Validation during training always
decodes the first way, so the trained model (and its checkpoints) is the same under either decoding.

`item_embeddings()` gives the learned input-embedding rows of the item ID tokens (the paper's Figures 1 and 3).

Under the `deepspeed` launcher every rank runs this adapter: training is data-parallel; validation, retrieval
and item_embeddings are computed by every rank alike (each rank decodes every request: correct, and needed
under ZeRO-3, whose forward passes are collective). The adapter writes no file of its own outside training.py's
checkpoints, where DeepSpeed's shards are written collectively and our own files by rank 0 only.

[params] (all optional; unknown keys are errors) -- see `T5Params` (generative/params.py) for types and
defaults. Settings for one dataset go in a table of their own, `[params.by_dataset.ml-small]` (a base name, or a
quoted canonical name such as "sim2:q_match=0.5", which wins), over the others: a unit trains, records and hashes
the resolved settings.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# torch (and the decoder, which needs it) is imported inside the methods that use it: the runner imports every adapter
# to check a submission before anything trains, and that must not cost torch's start-up (seconds).
from harness.data.views import TASKS, RecExamples, SearchExamples, Task, TrainView
from harness.errors import HarnessError
from harness.generative import training
from harness.generative.backbones import load_backbone
from harness.generative.checkpoint import Identity
from harness.generative.params import T5Params
from harness.generative.tokenizer import encode_sources, rec_source, search_source, target_ids
from harness.generative.training import Seq2SeqData, distributed_env, full_parameters
from harness.io import canonical_json
from harness.metrics.measures import Metric
from harness.metrics.scoring import recall_at_k
from harness.protocol.adapter import Adapter
from harness.protocol.decodings import check_decoding

ATOMIC_DESCRIPTION = "atomic: one new token <item_i> per catalogue item"
DEFAULT_VALID_K = 10  # when neither params.valid_k nor the training view names the dataset's headline K
_CAP_STREAM = 11  # random stream of the per-item cap (validation sampling uses 7): [seed, stream, task]


class GenerativeT5Adapter(Adapter):
    @classmethod
    def check_config(cls, params, *, tasks, submission_dir) -> None:
        """Every dataset's settings, the tasks and the DeepSpeed file, as the constructor checks them (it loads
        nothing: the model is built in fit)."""
        cls(params=params, seed=0, workdir=Path(submission_dir), tasks=frozenset(tasks), submission_dir=submission_dir)

    def __init__(self, *, params, seed, workdir, tasks, submission_dir):
        super().__init__(params=params, seed=seed, workdir=Path(workdir), tasks=tasks,
                         submission_dir=Path(submission_dir))
        self.where = str(self.submission_dir / "config.toml")
        self.hp = T5Params.parse(self.params, self.where)
        self.all_params = self.hp  # by_dataset unresolved; fit() resolves self.hp for the unit's dataset
        self._use_params(self.hp)
        for dataset in self.hp.by_dataset:
            self._use_params(self.all_params.for_dataset(dataset))  # every dataset's settings checked up front
        self._use_params(self.all_params)
        self.backbone = None
        self.model = None
        self._trie_cache = None  # the decoder's prefix trie of item IDs, built once per fitted backbone
        self._info: dict[str, Any] = {}
        self._item_ids_info: dict[str, Any] = {"scheme": "atomic", "description": ATOMIC_DESCRIPTION}
        self._cap_report: dict[str, dict[str, int]] = {}

    def _use_params(self, hp: T5Params) -> None:
        hp.check_tasks(self.tasks, self.where)
        path = self.submission_dir / hp.deepspeed_config
        if not path.is_file():
            raise HarnessError(f"{self.where}: params.deepspeed_config = {hp.deepspeed_config!r}: {path} does not exist")
        self.hp, self.deepspeed_config_path = hp, path

    # ---- training -------------------------------------------------------------------------------------
    def fit(self, train: TrainView) -> None:
        t0 = time.perf_counter()
        self._use_params(self.all_params.for_dataset(train.dataset))
        self._trie_cache = None
        if self.hp.threads:
            import torch

            torch.set_num_threads(self.hp.threads)
        self.n_items = len(train.catalogue)
        semantic_codes = self._semantic_codes(train)
        self.backbone = load_backbone(
            self.hp.backbone,
            n_items=self.n_items,
            tokenizer_texts=tokenizer_corpus(train),
            seed=self.seed,
            model_overrides=self.hp.model,
            local_path=self.hp.backbone_path,
            allow_download=self.hp.allow_download,
            semantic_codes=semantic_codes,
        )
        self._initial_item_rows = self._item_rows(self.backbone.model)  # before training: partitioned by none yet
        data, counts = self._training_data(train)
        valid_k = self.hp.valid_k or int(train.extra.get("headline_k", DEFAULT_VALID_K))
        validate = self._validation(train, valid_k) if self.hp.valid_max_examples else None
        hyper = training.Hyperparameters(
            epochs=self.hp.epochs, learning_rate=self.hp.learning_rate, weight_decay=self.hp.weight_decay,
            batch_size=self.hp.batch_size, lr_schedule=self.hp.lr_schedule, seed=self.seed,
        )
        identity = Identity(train.fingerprint, self.backbone.tokenizer_hash, self._setup_hash())
        setup_s = time.perf_counter() - t0
        self.model, result = training.train(
            self.backbone.model,
            data,
            hp=hyper,
            deepspeed_config=self.deepspeed_config_path,
            checkpoint_dir=self.workdir / "checkpoints",
            identity=identity,
            pad_token_id=self.backbone.pad_token_id,
            validate=validate,
            select_best=self.hp.select_best,
            keep_all_checkpoints=self.hp.keep_all_checkpoints,
            progress=self.hp.progress,
        )
        self._info = {
            "training_examples": counts,
            "cap_per_item": self._cap_report,
            "valid_k": valid_k,
            "setup_hash": identity.setup_hash,
            "setup_s": round(setup_s, 3),
            "train": {
                "curve": result.curve,
                "best_epoch": result.best_epoch,
                "resumed_from_epoch": result.resumed_from_epoch,
                "optimizer_steps": result.steps,
                "optimizer": result.optimizer,
                "deepspeed_config": result.deepspeed_config,
                "world_size": result.world_size,
                "device": result.device,
                "precision": result.precision,
            },
        }

    def _semantic_codes(self, train: TrainView):
        """The catalogue's semantic IDs (None under atomic IDs), from the cache or built; shared by every unit and
        submission with the same dataset and settings (semantic_ids.py)."""
        self._item_ids_info = {"scheme": "atomic", "description": ATOMIC_DESCRIPTION}
        if self.hp.item_ids != "semantic":
            return None
        from harness.generative.semantic_ids import build_semantic_codes

        log = (lambda msg: print(msg, flush=True)) if self.hp.progress else (lambda msg: None)
        codes, self._item_ids_info = build_semantic_codes(train, self.hp.semantic_ids,
                                                          where=f"{self.where}: params.semantic_ids", log=log)
        return codes

    def _training_data(self, train: TrainView):
        """Tokenised (source, target) pairs of the tasks served, concatenated (the loop shuffles per epoch)."""
        sources: list[list[int]] = []
        targets: list[np.ndarray] = []
        counts = {}
        self._cap_report = {}
        for task in sorted(self.tasks):
            if task == "rec":
                examples, items = train.rec_train, np.asarray(train.rec_train.target)
                kept = self._capped(task, items)
                if kept is not None:
                    examples, items = examples.select(kept), items[kept]
                src = self._encode("rec", examples)
            else:
                query_index, items = train.search_train.pairs()
                kept = self._capped(task, items)
                if kept is not None:
                    query_index, items = query_index[kept], items[kept]
                encoded = self._encode("search", train.search_train)
                src = [encoded[i] for i in query_index]
            sources += src
            targets.append(target_ids(items, self.backbone.items, self.backbone.eos_token_id))
            counts[task] = len(src)
        if not sources:
            raise HarnessError(f"{train.dataset}: no training examples for tasks {sorted(self.tasks)}")
        return Seq2SeqData(sources, np.concatenate(targets)), counts

    def _capped(self, task: Task, items: np.ndarray) -> np.ndarray | None:
        """Indices of the task's training instances kept under params.cap_per_item (None: not capped)."""
        cap = self.hp.cap_per_item.get(task)
        if cap is None:
            return None
        kept = cap_per_item(items, cap, np.random.default_rng([self.seed, _CAP_STREAM, TASKS.index(task)]))
        per_item = np.bincount(items, minlength=1)
        self._cap_report[task] = {
            "cap": cap,
            "instances": len(items),
            "kept": len(kept),
            "dropped": len(items) - len(kept),
            "items_capped": int((per_item > cap).sum()),
        }
        return kept

    def _encode(self, task: Task, examples: RecExamples | SearchExamples) -> list[list[int]]:
        if task == "rec":
            vocab = self.backbone.items
            texts = [rec_source(h, vocab) for h in examples.histories(self.hp.max_history or None)]
        else:
            texts = [search_source(t) for t in examples.text]
        return encode_sources(self.backbone.tokenizer, texts, self.hp.max_source_tokens, keep_end=task == "rec",
                              eos=self.hp.source_eos)

    def _validation(self, train: TrainView, k: int):
        """validate(module) -> {task: R@k} on a seeded sample of each served task's validation examples."""
        rng = np.random.default_rng([self.seed, 7])
        samples = {}
        for task in sorted(self.tasks):
            examples = train.rec_valid if task == "rec" else train.search_valid
            if len(examples) == 0:
                continue
            n = min(len(examples), self.hp.valid_max_examples)
            picked = np.sort(rng.choice(len(examples), size=n, replace=False))
            chosen = examples.select(picked)
            relevant = ([np.array([t]) for t in chosen.target] if task == "rec"
                        else [chosen.relevant(i) for i in range(len(chosen))])
            offsets = np.concatenate([[0], np.cumsum([len(r) for r in relevant])]).astype(np.int64)
            samples[task] = (self._encode(task, chosen), offsets, np.concatenate(relevant).astype(np.int64))
        if not samples:
            return None
        k = min(k, self.n_items - self.n_items % 2)
        if k < 2:
            return None

        no_head = np.zeros(self.n_items, dtype=bool)  # validation reports recall over all targets only

        def validate(module) -> dict[str, float]:
            out = {}
            for task, (sources, offsets, items) in samples.items():
                ranked = self._decode(module, sources, k)
                values = recall_at_k(ranked, offsets, items, no_head, [k])[Metric("R", k, "all")]
                out[task] = float(np.nanmean(values))
            return out

        return validate

    def _setup_hash(self) -> str:
        """Everything that shapes the trained weights; a checkpoint from another setup is refused."""
        shaping = {k: v for k, v in asdict(self.hp).items()
                   if k not in ("backbone_path", "allow_download", "eval_batch_size", "progress",
                                "keep_all_checkpoints", "threads")}
        for key, unset in (("cap_per_item", {}), ("by_dataset", {}), ("source_eos", True), ("item_ids", "atomic"),
                           ("semantic_ids", {})):
            if shaping[key] == unset:
                # A setting added later hashes, at its default, exactly as before it existed, so checkpoints
                # written before it stay resumable (by_dataset is always empty once fit() resolved it).
                del shaping[key]
        setup = {
            "params": shaping,
            "tasks": sorted(self.tasks),
            "seed": self.seed,
            "deepspeed_config": self.deepspeed_config_path.read_text(encoding="utf-8"),
        }
        if self.hp.item_ids == "semantic":
            # The IDs themselves: the same settings over other vectors (another version of a vector source) give
            # other codes with the same tokens, and a checkpoint trained on those must not be resumed.
            setup["semantic_codes"] = self._item_ids_info.get("codes_sha256")
        return "sha256:" + hashlib.sha256(canonical_json(setup).encode()).hexdigest()

    # ---- retrieval ------------------------------------------------------------------------------------
    def retrieve(self, task: Task, requests: RecExamples | SearchExamples, k: int) -> np.ndarray:
        if self.model is None:
            raise HarnessError("GenerativeT5Adapter.retrieve called before fit")
        if task not in self.tasks:
            raise HarnessError(f"this submission serves {sorted(self.tasks)}, not {task!r}")
        self._check_k(k)
        with distributed_env():  # ZeRO-3's forward hooks read LOCAL_RANK; a plain process has it only meanwhile
            return self._decode(self.model, self._encode(task, requests), k, distinct=self._distinct())

    def _distinct(self) -> bool:
        return check_decoding(self.decoding, f"{self.where}: the run's decoding") == "distinct"

    def _check_k(self, k: int) -> None:
        if not isinstance(k, (int, np.integer)) or k < 2 or k % 2:
            raise HarnessError(
                f"K = {k!r}: diverse beam search uses K / 2 beam groups (paper §5), so K must be an even integer >= 2"
            )
        if k > self.n_items:
            raise HarnessError(f"K = {k} is larger than the catalogue ({self.n_items} items): cannot rank {k} distinct items")
        if self._distinct():
            return  # K beams in one group: params.num_beams / num_beam_groups configure the paper's decoding only
        beams = self.hp.num_beams or k
        groups = self.hp.num_beam_groups or beams // 2
        if beams < k or beams % groups:
            raise HarnessError(
                f"{self.where}: params.num_beams = {beams} and params.num_beam_groups = {groups} do not fit K = {k}: "
                f"need num_beams >= K and num_beam_groups dividing num_beams"
            )

    def _decode(self, module, sources: Sequence[Sequence[int]], k: int, *, distinct: bool = False) -> np.ndarray:
        """[n, k] item ids, best first, -1 padded: diverse beam search with the first occurrence of each item kept,
        or (distinct) plain constrained beam search with K beams, whose K hypotheses are K distinct items."""
        from harness.generative.decoding import PrefixTrie, diverse_beam_search  # imports torch: only when decoding

        bb = self.backbone
        trie = self._trie(PrefixTrie)
        if distinct:
            # One group with no diversity penalty is plain beam search (transformers' num_beam_groups = 1); each of
            # the K beams holds a different item after the first step, and the trie allows only EOS after it.
            beams, groups, penalty = k, 1, 0.0
        else:
            beams = self.hp.num_beams or k
            groups = self.hp.num_beam_groups or beams // 2
            penalty = self.hp.diversity_penalty
        out = np.full((len(sources), k), -1, dtype=np.int64)
        device = next(module.parameters()).device
        for start in range(0, len(sources), self.hp.eval_batch_size):
            chunk = sources[start : start + self.hp.eval_batch_size]
            input_ids, mask = pad_batch(chunk, bb.pad_token_id, device)
            decoded = diverse_beam_search(
                module, input_ids, mask,
                num_beams=beams, num_beam_groups=groups, diversity_penalty=penalty,
                max_new_tokens=bb.items.id_length + 1,  # the item ID's tokens, then EOS
                constraint=trie, num_return_sequences=beams, length_penalty=self.hp.length_penalty,
                decoder_start_token_id=bb.decoder_start_token_id, eos_token_id=bb.eos_token_id,
                pad_token_id=bb.pad_token_id,
            )
            id_tokens = decoded.sequences[:, :, : bb.items.id_length].cpu().numpy()
            for row, tokens in enumerate(id_tokens):
                items = unique_in_order(bb.items.items_of_sequences(tokens))[:k]
                out[start + row, : len(items)] = items
        return out

    def _trie(self, trie_cls):
        if self._trie_cache is None:
            self._trie_cache = trie_cls(self.backbone.items.all_sequences(), self.backbone.eos_token_id)
        return self._trie_cache

    # ---- item vectors (paper Figures 1 and 3) -----------------------------------------------------------
    def item_embeddings(self) -> np.ndarray:
        """float32 [n_items, d_model]: row i is the input-embedding row of item i's ID token `<item_i>`.

        Read from the trained module retrieval decodes with (the best epoch's weights, or a resumed finished
        checkpoint's). Offline presets tie the output layer to these rows; flan-t5-base's output layer is separate
        and not included. Under ZeRO-3 the embedding is partitioned across ranks, so it is gathered for the read
        (`training.full_parameters`, collective: every rank calls this, as every rank runs the runner).
        """
        if self.model is None:
            raise HarnessError("GenerativeT5Adapter.item_embeddings called before fit")
        return self._item_rows(self.model)

    def initial_item_embeddings(self) -> np.ndarray:
        """The item rows as load_backbone built them (seeded: the same on a resumed run), before any training."""
        if self.model is None:
            raise HarnessError("GenerativeT5Adapter.initial_item_embeddings called before fit")
        return self._initial_item_rows

    def _item_rows(self, module) -> np.ndarray:
        import torch

        weight = module.get_input_embeddings().weight
        # [n_items, id_length] token ids; an atomic ID is one row, a semantic ID the mean of its tokens' rows
        token_ids = torch.as_tensor(self.backbone.items.sequences(np.arange(self.n_items)))
        with distributed_env(), full_parameters(weight), torch.no_grad():
            rows = weight.index_select(0, token_ids.reshape(-1).to(weight.device))
            return rows.reshape(*token_ids.shape, -1).float().mean(dim=1).cpu().numpy()

    # ---- the record -----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        versions = {}
        for dist in ("torch", "transformers", "deepspeed", "tokenizers"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
        return {
            "params": asdict(self.hp),
            "backbone": self.backbone.info if self.backbone else None,
            "item_ids": self._item_ids_info["description"] if self.hp.item_ids == "atomic" else self._item_ids_info,
            "decoding": self._decoding_info(),
            "versions": versions,
            **self._info,
        }


    def _decoding_info(self) -> dict[str, Any]:
        paper = {
            "method": "diverse (group) beam search, Hamming diversity, constrained to item tokens",
            "num_beams": self.hp.num_beams or "K",
            "num_beam_groups": self.hp.num_beam_groups or "num_beams / 2",
            "diversity_penalty": self.hp.diversity_penalty,
            "dedupe": "first occurrence of each item",
        }
        if not self._distinct():
            return {"protocol": self.decoding, **paper}
        return {
            "protocol": self.decoding,
            "method": "plain beam search (one group, no diversity penalty), constrained to item tokens",
            "num_beams": "K",
            "num_beam_groups": 1,
            "diversity_penalty": 0.0,
            "validation": {"note": "validation during training decodes as the paper does", **paper},
        }


# ---- small helpers ----------------------------------------------------------------------------------
def tokenizer_corpus(train: TrainView) -> list[str]:
    """The offline tokenizer's training text: training queries and catalogue text (never validation/test)."""
    texts = list(train.search_train.text) + list(train.catalogue.title) + list(train.catalogue.text)
    return [t for t in texts if t]


def pad_batch(sources: Sequence[Sequence[int]], pad_id: int, device):
    import torch

    width = max(len(s) for s in sources)
    ids = torch.full((len(sources), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sources), width), dtype=torch.long)
    for row, s in enumerate(sources):
        ids[row, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids.to(device), mask.to(device)


def cap_per_item(items: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Ascending indices of the instances kept when each target item keeps at most `cap` of its instances.

    Which ones: the instances are put in a random order (`rng`), and each item keeps its first `cap` there; an
    item with `cap` or fewer keeps them all. The result is sorted, so the kept instances keep their order.
    """
    items = np.asarray(items, dtype=np.int64)
    shuffled = rng.permutation(len(items))
    by_item = shuffled[np.argsort(items[shuffled], kind="stable")]  # grouped by item, shuffled order within
    grouped = items[by_item]
    group_start = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(grouped) else np.zeros(0, int)
    sizes = np.diff(np.r_[group_start, len(grouped)])
    rank_in_item = np.arange(len(grouped)) - np.repeat(group_start, sizes)
    return np.sort(by_item[rank_in_item < cap])


def unique_in_order(items: np.ndarray) -> np.ndarray:
    """Valid (>= 0) items, each at its first occurrence, order kept."""
    items = items[items >= 0]
    _, first = np.unique(items, return_index=True)
    return items[np.sort(first)]
