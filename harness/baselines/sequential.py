"""What SASRec and BERT4Rec share: training sequences, batching, the early-stopping loop, full-catalogue ranking.

Why our own PyTorch and not RecBole (which the paper used): RecBole 1.2.1, its latest release, cannot run on
this stack. Its Config sets `np.float_`, `np.complex_` and `np.unicode_`, removed in numpy 2, so constructing
any model fails; it pins colorlog==4.7.2, colorama==0.4.4 and ray<=2.6.3; and it reloads its best checkpoint
with torch.load of pickled objects, which torch >= 2.6 refuses by default (weights_only=True). The two models
are small, so they are written here, one file each, against their papers and the authors' code.

Data. TrainView.rec_train holds, per user, every prefix instance of the training sequence 1..t-2. The user's
longest instance (history + target) is that whole sequence, and it contains all the shorter ones: a causal
model trained at every position of it (SASRec) sees each prefix instance exactly once per epoch, and a Cloze
model (BERT4Rec) sees every item of it. So each user contributes their longest training prefix, cut into
windows of at most `max_len` positions counted back from the most recent item (the papers keep only the
last window; older windows here keep the rest of a long history in training, with a shorter context).

Ranking. Every item of the catalogue is scored (no sampled metrics). Items already in the history are left
out or not by one rule for both models, `exclude_history`: "auto" (the default) leaves them out exactly when
no training sequence repeats an item, i.e. when the data shows no repeat consumption (MovieLens rates a film
once; MPD playlists and listening logs can repeat). true/false force it. The resolved value is recorded.

Early stopping. After every epoch, Recall@K on TrainView.rec_valid (predict item t-1 from 1..t-2) with the
same ranking rule (an epoch is at least `min_epoch_steps` optimiser steps: several passes over a tiny
dataset). Training stops after `patience_steps` optimiser steps without a gain of more than `tolerance_hits`
validation hits, and keeps the latest epoch within `tolerance_hits` of the best (harness.baselines.stopping
says why: one-hit differences were float noise that moved the stopping epoch between machines). K is the
dataset's headline cutoff when the view carries it (extra["headline_k"]), else `valid_k`.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Literal

import numpy as np

from harness.baselines.stopping import ValidationStopper
from harness.baselines.topk import top_k_rows
from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.errors import HarnessError
from harness.io import atomic_path, canonical_json
from harness.protocol.adapter import Adapter
from harness.protocol.params import parse_params
from harness.protocol.units import is_writing_rank

CHECKPOINT = "model.pt"
CHECKPOINT_FORMAT = 2  # 2: the stopping rule's facts are saved with the weights

@dataclass(frozen=True)
class SequentialParams:
    """The [params] every sequential model takes; a model adds its own in a subclass (SASRecParams, ...)."""

    max_len: int = 50  # items of history the model reads (the papers: 200 on ML-1M, 50 on sparser data)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 100
    # Stopping (harness.baselines.stopping): optimiser steps without a gain of more than tolerance_hits
    # validation hits. 400 steps is ~22 epochs of ml-small (18 steps each) and 25 of a simulation (16).
    patience_steps: int = 400
    tolerance_hits: int = 1
    # Keep the latest epoch within this many binomial standard errors of the best validation score (0: within
    # tolerance_hits only); for validation splits too noisy to pick an epoch by (stopping.py's docstring).
    keep_within_se: float = 0.0
    # An "epoch" (one validation) is as many passes over the training windows as it takes to make at least
    # this many optimiser steps: on the simulations (a few hundred users) one pass is 2 steps, and early
    # stopping after 5 such "epochs" would stop a model that has barely started.
    min_epoch_steps: int = 16
    valid_k: int = 30  # used only when the view does not carry the dataset's headline cutoff
    exclude_history: Literal["auto"] | bool = "auto"  # see the module docstring
    eval_batch: int = 256  # histories scored at a time
    device: str = "auto"  # "auto": cuda when available, else cpu
    threads: int = 0  # torch CPU threads (process-wide); 0 keeps torch's default

    def check(self, fail) -> None:
        for key in ("max_len", "d_model", "n_layers", "n_heads", "batch_size", "max_epochs", "patience_steps",
                    "min_epoch_steps", "valid_k", "eval_batch"):
            if getattr(self, key) < 1:
                fail(key, "give an integer >= 1")
        if self.d_model % self.n_heads:
            fail("d_model", f"not divisible by params.n_heads = {self.n_heads}")
        if self.max_len < 2:
            fail("max_len", "give at least 2")
        if not 0 <= self.dropout < 1:
            fail("dropout", "give a number in [0, 1)")
        for key in ("lr", "weight_decay"):
            if getattr(self, key) < 0:
                fail(key, "give a number >= 0")
        if self.threads < 0:
            fail("threads", "give an integer >= 0")
        if self.tolerance_hits < 0:
            fail("tolerance_hits", "give an integer >= 0")
        if not 0 <= self.keep_within_se <= 5:
            fail("keep_within_se", "give a number in [0, 5] (binomial standard errors)")



def seed_torch(torch, seed: int, device) -> None:
    """Seed torch; on a GPU also ask for its deterministic kernels.

    On CPU the kernels these models use are deterministic for a fixed thread count already (same seed, same
    rankings: tested), and the deterministic mode there only swaps in slower sort-based paths. On a GPU it
    rules out the atomic-add kernels (index_add, scatter reductions) whose summation order varies run to run;
    warn_only: a kernel without a deterministic version warns rather than stops the run. cuBLAS needs
    CUBLAS_WORKSPACE_CONFIG set before its first call for the same."""
    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


# ---- parameters -------------------------------------------------------------------------------------------
def resolve_params(params_class: type[SequentialParams], params: dict[str, Any], where: str) -> dict[str, Any]:
    return asdict(parse_params(params_class, params, where=where))


# ---- training data ----------------------------------------------------------------------------------------
def training_sequences(rec_train: RecExamples) -> tuple[np.ndarray, list[np.ndarray]]:
    """(user index, that user's training sequence) for every user with a training instance.

    The sequence is the user's longest instance: its history followed by its target.
    """
    if rec_train.target is None:
        raise HarnessError("TrainView.rec_train carries no targets; cannot build training sequences")
    n = len(rec_train)
    if n == 0:
        return np.zeros(0, dtype=np.int64), []
    # Longest instance per user: sort by (user, history_len) and take each user's last row.
    order = np.lexsort((rec_train.history_len, rec_train.user))
    users = rec_train.user[order]
    last = np.flatnonzero(np.r_[users[1:] != users[:-1], True])
    picked = order[last]
    seqs = [
        np.append(rec_train.history(int(i)), rec_train.target[i]).astype(np.int64)
        for i in picked
    ]
    return rec_train.user[picked].astype(np.int64), seqs


def windows_from_end(length: int, size: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `size` covering 0..length, the last span ending at `length`."""
    spans = []
    end = length
    while end > 0:
        spans.append((max(0, end - size), end))
        end -= size
    return spans[::-1]


def has_repeats(seqs: list[np.ndarray]) -> bool:
    return any(len(np.unique(s)) < len(s) for s in seqs)


def left_pad(rows: list[np.ndarray], width: int, pad: int = 0) -> np.ndarray:
    """Right-align each row in a [len(rows), width] array (the most recent item in the last column)."""
    out = np.full((len(rows), width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        r = r[-width:]
        if len(r):
            out[i, width - len(r) :] = r
    return out


# ---- the transformer pieces both models use ---------------------------------------------------------------
def _torch():
    import torch

    return torch


def build_attention_block():
    """Return the SelfAttention module class (built lazily so importing this file never imports torch)."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class SelfAttention(nn.Module):
        """Multi-head self-attention with an explicit boolean mask [B, L, L] (True = may attend)."""

        def __init__(self, d_model: int, n_heads: int, dropout: float):
            super().__init__()
            self.n_heads = n_heads
            self.q = nn.Linear(d_model, d_model)
            self.k = nn.Linear(d_model, d_model)
            self.v = nn.Linear(d_model, d_model)
            self.out = nn.Linear(d_model, d_model)
            self.dropout = dropout

        def forward(self, x, allowed, query=None):
            """Keys and values from x; queries from `query` (SASRec: the layer-normalised x), else x."""
            b, l, d = x.shape
            heads = lambda t: t.view(b, l, self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731
            att = F.scaled_dot_product_attention(
                heads(self.q(x if query is None else query)),
                heads(self.k(x)),
                heads(self.v(x)),
                attn_mask=allowed[:, None],
                dropout_p=self.dropout if self.training else 0.0,
            )
            return self.out(att.transpose(1, 2).reshape(b, l, d))

    return SelfAttention


def attention_mask(tokens, *, causal: bool):
    """True where a query may attend a key: real keys (and itself, so padded rows are never empty)."""
    torch = _torch()
    b, l = tokens.shape
    real = tokens != 0
    allowed = real[:, None, :].expand(b, l, l)
    if causal:
        allowed = allowed & torch.ones(l, l, dtype=torch.bool, device=tokens.device).tril()
    return allowed | torch.eye(l, dtype=torch.bool, device=tokens.device)


# ---- the shared adapter -----------------------------------------------------------------------------------
@dataclass
class EpochLog:
    epoch: int
    loss: float
    valid_recall: float
    seconds: float


class SequentialAdapter(Adapter):
    """Training loop, early stopping, checkpoint reuse and full-catalogue ranking for a sequential model.

    A subclass gives its name, its params class, the model, how one epoch's batches are built, the loss of a
    batch, and how histories become model inputs for scoring.
    """

    name = "sequential"
    params_class: type[SequentialParams] = SequentialParams  # a model with params of its own subclasses it

    # -- what a model supplies --
    @abc.abstractmethod
    def make_model(self, n_items: int):
        """The torch module; items are tokens 1..n_items, 0 is padding."""

    @abc.abstractmethod
    def epoch_batches(self, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of training batches (numpy arrays) built from self._windows."""

    @abc.abstractmethod
    def batch_loss(self, model, batch: dict[str, Any]):
        """The scalar training loss of one batch (tensors on the device)."""

    @abc.abstractmethod
    def score_histories(self, model, histories: list[np.ndarray]):
        """Scores [n, n_items] (a tensor) of every catalogue item for each history."""

    def item_table(self, model):
        """The model's item embedding rows [n_items, d], row i = catalogue item i (no padding or mask rows)."""
        return model.item_weights()

    def model_facts(self) -> dict[str, Any]:
        return {}

    # -- fit --
    def fit(self, train: TrainView) -> None:
        self.prepare(train)
        key = self._checkpoint_key(train)
        self._history: list[EpochLog] = []
        self._stopping: dict | None = None
        if self._load_checkpoint(key):
            self._reused = True
            return
        self._reused = False
        self._train(train.rec_valid)
        self._save_checkpoint(key)

    def prepare(self, train: TrainView) -> None:
        """Everything before the first epoch: parameters, training windows, ranking rule, a fresh model."""
        torch = _torch()
        self._p = p = resolve_params(self.params_class, self.params, f"{self.name}: {self.submission_dir / 'config.toml'}")
        if p["threads"]:
            torch.set_num_threads(p["threads"])
        self._device = torch.device("cuda" if p["device"] == "auto" and torch.cuda.is_available() else
                                    ("cpu" if p["device"] == "auto" else p["device"]))
        self._n_items = n_items = len(train.catalogue)
        users, seqs = training_sequences(train.rec_train)
        if not seqs:
            raise HarnessError(f"{self.name}: {train.dataset} has no recommendation training instances")
        self._seq_users, self._seqs = users, seqs
        self._user_items = [np.unique(s) for s in seqs]  # for negatives that avoid the user's own items
        self._windows = self.make_windows(seqs)
        repeats = has_repeats(seqs)
        self._exclude = (not repeats) if p["exclude_history"] == "auto" else bool(p["exclude_history"])
        self._valid_k = int(train.extra.get("headline_k", p["valid_k"]))

        seed_torch(torch, self.seed, self._device)
        self._model = self.make_model(n_items).to(self._device)

    def make_windows(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        """Training windows: each sequence cut into spans of at most max_len, counted from its end."""
        out = []
        for s in seqs:
            out.extend(s[a:b] for a, b in windows_from_end(len(s), self._p["max_len"]))
        return out

    def _train(self, valid: RecExamples) -> None:
        torch = _torch()
        p = self._p
        model = self._model
        opt = torch.optim.Adam(model.parameters(), lr=p["lr"], betas=(0.9, 0.98), weight_decay=p["weight_decay"])
        rng = np.random.default_rng(self.seed)
        stopper = ValidationStopper(p["patience_steps"], p["tolerance_hits"], p["keep_within_se"], len(valid))
        kept_state = None
        for epoch in range(1, p["max_epochs"] + 1):
            t0 = time.perf_counter()
            model.train()
            total, steps = 0.0, 0
            while steps < p["min_epoch_steps"]:  # a small dataset is passed over several times per epoch
                if not self._windows:
                    raise HarnessError(f"{self.name}: no training window has a target (every sequence is one item)")
                for batch in self.epoch_batches(rng):
                    batch = {k: torch.as_tensor(v, device=self._device) for k, v in batch.items()}
                    loss = self.batch_loss(model, batch)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item()
                    steps += 1
            self._steps_per_epoch = steps
            hits = self.validation_hits(valid)
            recall = hits / len(valid) if len(valid) else 0.0
            self._history.append(EpochLog(epoch, total / max(steps, 1), recall, time.perf_counter() - t0))
            keep, stop = stopper.observe(epoch, hits, steps)
            if keep:
                kept_state = copy.deepcopy(model.state_dict())
            if stop:
                break
        assert kept_state is not None
        model.load_state_dict(kept_state)
        self._best_epoch = stopper.kept_epoch
        self._stopping = stopper.describe()

    def validation_hits(self, valid: RecExamples) -> int:
        """Validation users whose target is in the top valid_k (Recall@K = hits / users)."""
        if len(valid) == 0 or valid.target is None:
            return 0
        rankings = self.rank(valid, self._valid_k)
        return sum(int(t in r) for t, r in zip(valid.target, rankings))

    # -- retrieve --
    def retrieve(self, task: Task, requests: RecExamples | SearchExamples, k: int) -> list[np.ndarray]:
        if task != "rec" or not isinstance(requests, RecExamples):
            raise HarnessError(f"{self.name} serves recommendation only; asked for {task!r} (set tasks = [\"rec\"])")
        return self.rank(requests, k)

    def rank(self, requests: RecExamples, k: int) -> list[np.ndarray]:
        torch = _torch()
        model = self._model
        model.eval()
        out: list[np.ndarray] = []
        step = self._p["eval_batch"]
        with torch.no_grad():
            for start in range(0, len(requests), step):
                full = [requests.history(i) for i in range(start, min(start + step, len(requests)))]
                scores = self.score_histories(model, [h[-self._p["max_len"] :] for h in full]).float()
                if self._exclude:
                    for row, h in enumerate(full):
                        if len(h):
                            scores[row, torch.as_tensor(h, dtype=torch.long, device=scores.device)] = -math.inf
                out.extend(top_k_rows(scores.cpu().numpy(), k))
        return out

    # -- item vectors (paper Figures 1 and 3) --
    def item_embeddings(self) -> np.ndarray:
        """float32 [n_items, d_model]: the trained (or reused) model's item embedding table, row i = item i."""
        torch = _torch()
        if getattr(self, "_model", None) is None:
            raise HarnessError(f"{self.name}: item_embeddings called before fit")
        with torch.no_grad():
            return self.item_table(self._model).float().cpu().numpy()

    # -- checkpoint reuse in the unit's workdir --
    def _checkpoint_key(self, train: TrainView) -> str:
        facts = {
            "format": CHECKPOINT_FORMAT,
            "model": type(self).__name__,
            "fingerprint": train.fingerprint,
            "params": self._p,
            "seed": self.seed,
            "n_items": self._n_items,
            "valid_k": self._valid_k,
        }
        return hashlib.sha256(canonical_json(facts).encode()).hexdigest()

    def _load_checkpoint(self, key: str) -> bool:
        torch = _torch()
        path = self.workdir / CHECKPOINT
        if not path.is_file():
            return False
        try:
            saved = torch.load(path, map_location=self._device, weights_only=True)
            if saved.get("key") != key:
                return False
            self._model.load_state_dict(saved["state"])
        except (OSError, RuntimeError, KeyError, ValueError):
            return False  # unreadable or stale: train again
        self._best_epoch = int(saved["best_epoch"])
        self._steps_per_epoch = saved.get("steps_per_epoch")
        self._history = [EpochLog(*row) for row in saved["history"]]
        self._stopping = saved.get("stopping")
        return True

    def _save_checkpoint(self, key: str) -> None:
        torch = _torch()
        if not is_writing_rank():
            # Under a multi-process launcher every rank trains its own copy: only rank 0 writes the file
            # (the same rule as the runner's); the atomic rename would keep it whole anyway.
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        saved = {
            "key": key,
            "state": self._model.state_dict(),
            "best_epoch": self._best_epoch,
            "steps_per_epoch": getattr(self, "_steps_per_epoch", None),
            "history": [[h.epoch, h.loss, h.valid_recall, h.seconds] for h in self._history],
            "stopping": self._stopping,
        }
        with atomic_path(self.workdir / CHECKPOINT, suffix=".pt") as tmp:
            torch.save(saved, tmp)

    # -- record --
    def describe(self) -> dict[str, Any]:
        n_params = sum(int(t.numel()) for t in self._model.parameters())
        return {
            "implementation": "harness PyTorch (RecBole does not run on numpy 2 / torch >= 2.6)",
            "params": self._p,
            **self.model_facts(),
            "n_parameters": n_params,
            "training_sequences": len(self._seqs),
            "training_windows": len(self._windows),
            "exclude_history": self._exclude,
            "valid_metric": f"R@{self._valid_k} on rec_valid",
            "best_epoch": self._best_epoch,  # the epoch whose weights are kept (stopping rule above)
            "stopping": self._stopping,
            "steps_per_epoch": getattr(self, "_steps_per_epoch", None),
            "epochs_run": len(self._history),
            "valid_recall_per_epoch": [round(h.valid_recall, 6) for h in self._history],
            "train_seconds": round(sum(h.seconds for h in self._history), 3),
            "reused_checkpoint": self._reused,
            "ties": "item id ascending",
        }
