"""Semantic item IDs: residual k-means (RQ-k-means) codes of item vectors, one token per level.

The paper names each item with one new token (atomic IDs, tokenizer.ItemVocabulary) and leaves other identifiers
open (§8). Its authors' follow-up (Penha et al., RecSys'25, arXiv 2508.10478) names items by Semantic IDs: a short
sequence of codes, so that similar items share a prefix. Here:

    level 0   k-means with C centroids over the item vectors            -> code c0
    level l   k-means with C centroids over the residual of level l-1   -> code cl   (l < L)
    level L   disambiguation: 0, 1, 2, ... among items whose L codes are all equal (item id order), 0 elsewhere

Every item's ID is L + 1 tokens, `<s{l}_{c}>` for level l and code c (each level has its own tokens, as in TIGER),
so the vocabulary grows by L x C + (largest collision group) tokens instead of one token per item. IDs are unique
by construction; the decoder's prefix trie holds exactly the catalogue's IDs, so constrained decoding can only
return catalogue items.

The k-means is scikit-learn's (Lloyd, k-means++ seeding, a fixed random_state per level): a well-kept
implementation whose result depends only on the vectors and the seed. The codes are cached per dataset
fingerprint, vector source and settings (`<cache>/semantic_ids/...`), so Gen_R, Gen_S and Gen_R+S, and every
seed, name the items alike: only then does joint vs task-specific compare models, not identifiers.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.io import atomic_path, canonical_json, write_json_atomic
from harness.settings import cache_dir

CODES_FORMAT = 1  # bump when the way codes are computed from the same vectors changes
LEVEL_TOKEN_FORMAT = "<s{}_{}>"  # level, code

# [params.semantic_ids] keys owned here; the rest go to the vector source (harness.generative.item_vectors)
CODE_SETTINGS = {"source": "content", "levels": 2, "codes": 8, "seed": 0, "kmeans_iters": 100}


def level_token(level: int, code: int) -> str:
    return LEVEL_TOKEN_FORMAT.format(int(level), int(code))


@dataclass(frozen=True)
class SemanticCodes:
    """codes[i] is item i's ID: L k-means codes and one disambiguation index (int64 [n_items, L + 1])."""

    codes: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def length(self) -> int:
        """Tokens per ID (L + 1)."""
        return int(self.codes.shape[1])

    def level_sizes(self) -> list[int]:
        """Tokens each level needs: the largest code used + 1 (the disambiguation level: the largest group)."""
        return [int(self.codes[:, level].max()) + 1 for level in range(self.length)]

    def stats(self, codebook: int) -> dict[str, Any]:
        """What the record says about the IDs: sizes, collisions, usage."""
        levels = self.length - 1
        prefix = self.codes[:, :levels]
        _, group_of, group_size = np.unique(prefix, axis=0, return_inverse=True, return_counts=True)
        colliding = group_size[group_of.ravel()] > 1
        usage = []
        for level in range(levels):
            used = np.bincount(self.codes[:, level], minlength=codebook)
            p = used[used > 0] / self.n_items
            usage.append({
                "codes_used": int((used > 0).sum()),
                "codebook": codebook,
                "max_items_per_code": int(used.max()),
                "perplexity": round(float(np.exp(-(p * np.log(p)).sum())), 3),
            })
        return {
            "levels": levels,
            "codes_per_level": codebook,
            "tokens_per_id": self.length,
            "level_sizes": self.level_sizes(),
            "distinct_prefixes": int(len(group_size)),
            "collision_rate": round(float(colliding.mean()), 6),  # items sharing all L codes with another item
            "largest_collision_group": int(group_size.max()),
            "code_usage": usage,
            "codes_sha256": hashlib.sha256(np.ascontiguousarray(self.codes).tobytes()).hexdigest(),
        }


def rq_kmeans(vectors: np.ndarray, *, levels: int, codes: int, seed: int, max_iter: int = 100) -> SemanticCodes:
    """Residual k-means codes of `vectors` [n, d], plus the disambiguation level."""
    from sklearn.cluster import KMeans

    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0 or not np.isfinite(x).all():
        raise HarnessError(f"semantic IDs: item vectors must be a finite [n_items, d] array, got shape {x.shape}")
    residual = x.copy()
    out = np.zeros((len(x), levels + 1), dtype=np.int64)
    for level in range(levels):
        distinct = len(np.unique(residual.round(12), axis=0))
        k = min(codes, distinct)
        if k <= 1:
            continue  # nothing left to split: every item gets code 0 here, the disambiguation level tells them apart
        km = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed * 1000 + level, algorithm="lloyd")
        labels = km.fit_predict(residual)
        out[:, level] = _relabel_by_first_item(labels)
        residual -= km.cluster_centers_[labels]
    out[:, levels] = _disambiguation(out[:, :levels])
    return SemanticCodes(out)


def _relabel_by_first_item(labels: np.ndarray) -> np.ndarray:
    """Cluster numbers in order of each cluster's first item: the same partition always gets the same codes."""
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    rename = np.empty(labels.max() + 1, dtype=np.int64)
    rename[np.unique(labels)[order]] = np.arange(len(order))
    return rename[labels]


def _disambiguation(prefix: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... among items with the same prefix, in item id order."""
    _, group = np.unique(prefix, axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.empty(len(order), dtype=np.int64)
    out[order] = rank
    return out


# ---- settings, building and the cache --------------------------------------------------------------------
def check_settings(settings: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(code settings with defaults, the vector source's settings with its defaults); a bad key or value is an
    error naming `where`."""
    from harness.generative import item_vectors

    code = {**CODE_SETTINGS}
    rest = {}
    for key, value in settings.items():
        if key in CODE_SETTINGS:
            code[key] = value
        else:
            rest[key] = value
    if code["source"] not in item_vectors.SOURCES:
        raise HarnessError(f"{where}.source = {code['source']!r}; allowed: {', '.join(item_vectors.SOURCES)}")
    for key, low in (("levels", 1), ("codes", 2), ("seed", 0), ("kmeans_iters", 1)):
        value = code[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise HarnessError(f"{where}.{key} = {value!r}; give an integer >= {low}")
    return code, item_vectors.check_settings(rest, where)


def build_semantic_codes(train, settings: Mapping[str, Any], *, where: str, cache_root: Path | None = None,
                         log: Callable[[str], None] = lambda msg: None) -> tuple[SemanticCodes, dict[str, Any]]:
    """The catalogue's semantic IDs for `train` (a TrainView) under `settings` ([params.semantic_ids]), from the
    cache or built; and what the record says about them."""
    from harness.generative import item_vectors

    code, all_vector_settings = check_settings(settings, where)
    # Only what shapes the source's vectors keys the codes (not threads, device or the encoding batch).
    vector_settings = {k: all_vector_settings[k] for k in item_vectors.SOURCE_KEYS[code["source"]]}
    root = cache_root or cache_dir()
    key = {"format": CODES_FORMAT, "fingerprint": train.fingerprint, "n_items": len(train.catalogue),
           **code, "vectors": vector_settings}
    digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()[:24]
    path = root / "semantic_ids" / train.fingerprint.replace(":", "-").replace("/", "-") / f"{digest}.npy"
    t0 = time.perf_counter()
    cached = _read_codes(path, len(train.catalogue), code["levels"] + 1)
    vector_info: dict[str, Any] = {"source": code["source"]}
    if cached is None:
        vectors, vector_info = item_vectors.item_vectors(code["source"], train, settings=all_vector_settings,
                                                        seed=code["seed"], cache_root=root, log=log)
        if vectors.shape[0] != len(train.catalogue):
            raise HarnessError(f"semantic IDs: source {code['source']!r} gave {vectors.shape[0]} vectors for "
                               f"{len(train.catalogue)} items")
        log(f"[semantic ids] RQ-k-means: {code['levels']} levels x {code['codes']} codes over {vectors.shape} vectors")
        codes = rq_kmeans(vectors, levels=code["levels"], codes=code["codes"], seed=code["seed"],
                          max_iter=code["kmeans_iters"])
        with atomic_path(path, suffix=".npy") as tmp:
            with open(tmp, "wb") as fh:  # a handle, so numpy does not append its own ".npy"
                np.save(fh, codes.codes, allow_pickle=False)
        write_json_atomic(path.with_suffix(".json"), {**key, "vectors_info": vector_info})
    else:
        codes = SemanticCodes(cached)
    info = {
        "scheme": "semantic",
        "method": "RQ-k-means (scikit-learn KMeans per level on the residual) + a disambiguation level",
        "settings": {**code, "vectors": vector_settings},
        "vectors": vector_info,
        "cache_hit": cached is not None,
        "seconds": round(time.perf_counter() - t0, 3),
        **codes.stats(code["codes"]),
    }
    return codes, info


def _read_codes(path: Path, n_items: int, length: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # unreadable: rebuild and overwrite
    if codes.shape != (n_items, length) or codes.dtype != np.int64 or len(np.unique(codes, axis=0)) != n_items:
        return None  # not this catalogue's IDs (or not unique): rebuild
    return codes


# ---- the vocabulary -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SemanticVocabulary:
    """Where the code tokens sit: level l's code c is token `offset + level_start[l] + c`."""

    offset: int
    codes: SemanticCodes
    level_start: tuple[int, ...]

    @classmethod
    def level_tokens(cls, codes: SemanticCodes) -> list[str]:
        return [level_token(level, c) for level, size in enumerate(codes.level_sizes()) for c in range(size)]

    @property
    def n_items(self) -> int:
        return self.codes.n_items

    @property
    def n_tokens(self) -> int:
        return sum(self.codes.level_sizes())

    @property
    def id_length(self) -> int:
        return self.codes.length

    def sequences(self, items: np.ndarray | Sequence[int]) -> np.ndarray:
        """[n, L + 1] token ids of the items' IDs."""
        return self.codes.codes[np.asarray(items, dtype=np.int64)] + self.offset + np.asarray(self.level_start)

    def item_text(self, item: int) -> str:
        return " ".join(level_token(level, c) for level, c in enumerate(self.codes.codes[int(item)]))

    def all_sequences(self) -> list[list[int]]:
        return self.sequences(np.arange(self.n_items)).tolist()

    def items_of_sequences(self, tokens: np.ndarray) -> np.ndarray:
        """Item id of each [..., L + 1] token sequence, -1 where it is no catalogue item's ID."""
        tokens = np.asarray(tokens, dtype=np.int64)
        flat = tokens.reshape(-1, self.id_length)
        lookup = self._lookup()
        out = np.array([lookup.get(tuple(row), -1) for row in flat.tolist()], dtype=np.int64)
        return out.reshape(tokens.shape[:-1])

    def _lookup(self) -> dict[tuple[int, ...], int]:
        cached = getattr(self, "_lookup_cache", None)
        if cached is None:
            cached = {tuple(seq): item for item, seq in enumerate(self.all_sequences())}
            object.__setattr__(self, "_lookup_cache", cached)  # frozen dataclass: a private memo
        return cached

    def item_token_rows(self) -> list[list[int]]:
        """Each item's token ids, for reading an item's vector as the mean of its tokens' rows."""
        return self.all_sequences()


def add_semantic_tokens(tokenizer, codes: SemanticCodes) -> SemanticVocabulary:
    """Add every level's code tokens to a transformers tokenizer (as special tokens, never split), contiguous."""
    from tokenizers import AddedToken

    tokens = SemanticVocabulary.level_tokens(codes)
    first = len(tokenizer)
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=True) for t in tokens], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids([tokens[0], tokens[-1]])
    if ids != [first, first + len(tokens) - 1]:
        raise RuntimeError(f"semantic ID tokens are not contiguous in the vocabulary (first {ids[0]}, last {ids[1]}, "
                           f"expected {first}..{first + len(tokens) - 1})")
    sizes = codes.level_sizes()
    starts = tuple(int(s) for s in np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    return SemanticVocabulary(offset=first, codes=codes, level_start=starts)
