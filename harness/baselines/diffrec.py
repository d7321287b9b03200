"""DiffRec (Wang, Xu, Feng, Lin, He & Chua, SIGIR 2023, "Diffusion Recommender Model"), the paper's Table 5.

As in the authors' code (github.com/YiyanXu/DiffRec, DiffRec/main.py, models/DNN.py,
models/gaussian_diffusion.py):

- Input: a user's interaction vector x0, multi-hot over the catalogue (here: the items of the request's
  history; at training, of the user's training sequence 1..t-2).
- Forward process: q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I) over `steps` steps. Schedule
  "linear-var" (the authors' default): the variance 1 - abar_t runs linearly from noise_scale * noise_min to
  noise_scale * noise_max, betas derived from it (capped at 0.999); "linear": the betas themselves run linearly
  (RecBole's default). beta_1 is fixed to 1e-5 (`beta_fixed`, their default).
- Denoiser: an MLP over [dropout(x_t) ; Linear(sinusoidal timestep embedding of emb_size)], `dims` read as
  the authors do (dims [200, 600]: n+10 -> 600 -> 200 -> 600 -> n; dims [300]: n+10 -> 300 -> n), tanh
  between layers, no activation on the output; Xavier-normal weights, N(0, 0.001) biases.
- Loss (mean_type "x0"): MSE between x0 and the prediction, per user; with `reweight`, weighted by
  SNR(t-1) - SNR(t) (1 at t = 0). Timesteps are drawn uniformly until every step has
  `history_num_per_term` recorded losses, then by importance sampling: p(t) proportional to the RMS of the last
  losses at t (mixed with 0.1% uniform), the loss divided by p(t) * steps. mean_type "eps" predicts the noise.
- Inference: with sampling_steps 0 (their default) the observed vector itself is x_T; with s > 0 it is
  noised to step s first. Then `steps` reverse steps, each taking the posterior mean given the predicted x0
  (no sampling noise unless `sampling_noise`). The final x is the score of every catalogue item.
- Optimiser: AdamW(lr, weight_decay).

Defaults are the authors' released ML-1M (clean) checkpoint's settings (DiffRec/inference.py: lr 1e-3,
weight decay 0, batch 400, dims [200, 600], emb 10, x0, steps 40, noise_scale 0.005, noise_min 0.005,
noise_max 0.01, sampling_steps 0, reweight true); dropout 0.5 and norm false are their DNN defaults. RecBole's
DiffRec (which Penha et al. ran) defaults to schedule "linear", steps 5, noise_scale 0.001, noise_min 0.0005,
noise_max 0.005, dims [300]: all settable here, and submissions/diffrec uses them (better on validation).

Ranking, early stopping and seeds follow harness.baselines.sequential: full catalogue; history items left out
when no training sequence repeats an item (exclude_history "auto"; the authors always mask them); after every
"epoch" (at least `min_epoch_steps` optimiser steps) Recall@K on rec_valid; stop after `patience_steps`
optimiser steps without a gain of more than `tolerance_hits` validation hits, keeping the latest epoch within
`tolerance_hits` of the best (harness.baselines.stopping; the authors: validation every 5 epochs, stop 20
epochs after the best). A request's user needs no training row: the model reads only the request's history.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from harness.baselines.sequential import EpochLog, has_repeats, seed_torch, training_sequences
from harness.baselines.stopping import ValidationStopper
from harness.baselines.topk import top_k_rows
from harness.data.views import RecExamples, SearchExamples, Task, TrainView
from harness.errors import HarnessError
from harness.io import atomic_path, canonical_json
from harness.protocol.adapter import Adapter
from harness.protocol.params import parse_params
from harness.protocol.units import is_writing_rank

CHECKPOINT = "diffrec.pt"
CHECKPOINT_FORMAT = 2  # 2: the stopping rule's facts are saved with the weights


@dataclass(frozen=True)
class DiffRecParams:
    dims: list[int] = field(default_factory=lambda: [200, 600])  # hidden dims of the denoiser's encoder half
    emb_size: int = 10  # timestep embedding size
    dropout: float = 0.5  # on the input vector
    norm: bool = False  # L2-normalise the input vector first
    mean_type: Literal["x0", "eps"] = "x0"
    noise_schedule: Literal["linear-var", "linear"] = "linear-var"
    steps: int = 40
    noise_scale: float = 0.005
    noise_min: float = 0.005
    noise_max: float = 0.01
    beta_fixed: bool = True
    sampling_steps: int = 0
    sampling_noise: bool = False
    reweight: bool = True
    history_num_per_term: int = 10  # recorded losses per step before importance sampling starts
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 400
    max_epochs: int = 200
    patience_steps: int = 100  # optimiser steps without a gain of more than tolerance_hits (harness.baselines.stopping)
    tolerance_hits: int = 1
    min_epoch_steps: int = 10  # optimiser steps per epoch, at least (one pass may be 2 steps on a small dataset)
    valid_k: int = 30  # used only when the view does not carry the dataset's headline cutoff
    exclude_history: Literal["auto"] | bool = "auto"
    eval_batch: int = 256
    device: str = "auto"
    threads: int = 0  # torch CPU threads (process-wide); 0 keeps torch's default

    def check(self, fail) -> None:
        if not self.dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.dims):
            fail("dims", "give a non-empty list of integers >= 1")
        for key in ("emb_size", "steps", "history_num_per_term", "batch_size", "max_epochs", "patience_steps",
                    "min_epoch_steps", "valid_k", "eval_batch"):
            if getattr(self, key) < 1:
                fail(key, "give an integer >= 1")
        if not 0 <= self.dropout < 1:
            fail("dropout", "give a number in [0, 1)")
        if self.noise_scale <= 0:
            fail("noise_scale", "give a number > 0")
        if not 0 < self.noise_min < self.noise_max:
            fail("noise_min", f"give 0 < noise_min < noise_max (= {self.noise_max})")
        if self.noise_scale * self.noise_max >= 1:
            fail("noise_max", "noise_scale * noise_max must be < 1")
        if not 0 <= self.sampling_steps <= self.steps:
            fail("sampling_steps", f"give an integer in [0, steps = {self.steps}]")
        for key in ("lr", "weight_decay"):
            if getattr(self, key) < 0:
                fail(key, "give a number >= 0")
        if self.threads < 0:
            fail("threads", "give an integer >= 0")


# ---- the diffusion schedule (numpy, float64 as the authors) ----------------------------------------------
def make_betas(p: dict[str, Any]) -> np.ndarray:
    start, end = p["noise_scale"] * p["noise_min"], p["noise_scale"] * p["noise_max"]
    steps = p["steps"]
    if p["noise_schedule"] == "linear":
        betas = np.linspace(start, end, steps, dtype=np.float64)
    else:  # linear variance: 1 - abar_t linear, betas from consecutive ratios
        abar = 1 - np.linspace(start, end, steps, dtype=np.float64)
        betas = np.r_[1 - abar[0], np.minimum(1 - abar[1:] / abar[:-1], 0.999)]
    if p["beta_fixed"]:
        betas[0] = 1e-5  # "the variance of the first step is fixed to a small constant to prevent overfitting"
    return betas


@dataclass
class Schedule:
    betas: np.ndarray

    def __post_init__(self) -> None:
        b = self.betas
        self.abar = np.cumprod(1 - b)
        self.abar_prev = np.r_[1.0, self.abar[:-1]]
        self.post_var = b * (1 - self.abar_prev) / (1 - self.abar)
        self.post_logvar = np.log(np.r_[self.post_var[1], self.post_var[1:]]) if len(b) > 1 else np.log(self.post_var)
        self.coef1 = b * np.sqrt(self.abar_prev) / (1 - self.abar)  # posterior mean: coef1 * x0 + coef2 * x_t
        self.coef2 = (1 - self.abar_prev) * np.sqrt(1 - b) / (1 - self.abar)
        self.snr = self.abar / (1 - self.abar)


# ---- the denoiser ------------------------------------------------------------------------------------------
def build_denoiser(n_items: int, dims: list[int], emb_size: int, dropout: float, norm: bool):
    import torch  # imported here so that importing this module never imports torch
    from torch import nn
    import torch.nn.functional as F

    def timestep_embedding(t, dim: int, max_period: int = 10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb

    class DNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # the authors' reading of `dims`: out_dims = dims + [n], in_dims = its reverse (dims [200, 600]:
            # n+emb -> 600 -> 200 -> 600 -> n)
            in_dims = [n_items + emb_size] + dims[::-1]
            out_dims = dims + [n_items]
            self.emb_layer = nn.Linear(emb_size, emb_size)
            self.in_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(in_dims[:-1], in_dims[1:]))
            self.out_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(out_dims[:-1], out_dims[1:]))
            self.drop = nn.Dropout(dropout)
            for layer in [*self.in_layers, *self.out_layers, self.emb_layer]:
                fan_out, fan_in = layer.weight.shape
                nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
                nn.init.normal_(layer.bias, 0.0, 0.001)

        def forward(self, x, t):
            emb = self.emb_layer(timestep_embedding(t, emb_size))
            if norm:
                x = F.normalize(x)
            h = torch.cat([self.drop(x), emb], dim=-1)
            for layer in self.in_layers:
                h = torch.tanh(layer(h))
            for i, layer in enumerate(self.out_layers):
                h = layer(h)
                if i != len(self.out_layers) - 1:
                    h = torch.tanh(h)
            return h

    return DNN()


# ---- the adapter -------------------------------------------------------------------------------------------
class DiffRecAdapter(Adapter):
    """Recommendation only; [params] in DiffRecParams. See the module docstring and docs/baselines.md."""

    name = "DiffRec"
    params_class = DiffRecParams

    def _where(self) -> str:
        return str(self.submission_dir / "config.toml")

    def fit(self, train: TrainView) -> None:
        import torch  # imported here so that importing this module never imports torch

        self._p = p = asdict(parse_params(DiffRecParams, self.params, where=self._where()))
        if p["threads"]:
            torch.set_num_threads(p["threads"])
        self._device = torch.device("cuda" if p["device"] == "auto" and torch.cuda.is_available() else
                                    ("cpu" if p["device"] == "auto" else p["device"]))
        self._n_items = len(train.catalogue)
        _, seqs = training_sequences(train.rec_train)
        if not seqs:
            raise HarnessError(f"{self.name}: {train.dataset} has no recommendation training instances")
        self._rows = [np.unique(s) for s in seqs]  # one multi-hot row per training user
        self._exclude = (not has_repeats(seqs)) if p["exclude_history"] == "auto" else bool(p["exclude_history"])
        self._valid_k = int(train.extra.get("headline_k", p["valid_k"]))
        self._sched = Schedule(make_betas(p))
        self._t = {k: torch.as_tensor(getattr(self._sched, k), dtype=torch.float32, device=self._device)
                   for k in ("abar", "coef1", "coef2", "post_logvar", "snr")}
        seed_torch(torch, self.seed, self._device)
        self._model = build_denoiser(self._n_items, p["dims"], p["emb_size"], p["dropout"], p["norm"]).to(self._device)
        self._history: list[EpochLog] = []
        self._stopping: dict | None = None
        key = self._checkpoint_key(train)
        self._reused = self._load_checkpoint(key)
        if not self._reused:
            self._train(train.rec_valid)
            self._save_checkpoint(key)

    # -- training --
    def _multi_hot(self, rows: list[np.ndarray]):
        import torch

        x = torch.zeros(len(rows), self._n_items, device=self._device)
        if rows:
            r = np.repeat(np.arange(len(rows)), [len(v) for v in rows])
            c = np.concatenate(rows).astype(np.int64)
            x[torch.as_tensor(r, device=self._device), torch.as_tensor(c, device=self._device)] = 1.0
        return x

    def _sample_t(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Timesteps and their p(t) * steps: uniform until every step has its loss history, then importance."""
        steps = self._p["steps"]
        if not (self._lt_count == self._p["history_num_per_term"]).all():
            return rng.integers(0, steps, size=n), np.ones(n)
        rms = np.sqrt(np.mean(self._lt_history ** 2, axis=-1))
        pt = rms / rms.sum() * (1 - 0.001) + 0.001 / steps
        t = rng.choice(steps, size=n, replace=True, p=pt / pt.sum())
        return t, pt[t] * steps

    def _record_losses(self, t: np.ndarray, losses: np.ndarray) -> None:
        """The authors' per-sample update: a step's last `history_num_per_term` weighted losses, oldest dropped."""
        cap = self._p["history_num_per_term"]
        for step, value in zip(t, losses):
            if self._lt_count[step] == cap:
                self._lt_history[step, :-1] = self._lt_history[step, 1:]
                self._lt_history[step, -1] = value
            else:
                self._lt_history[step, self._lt_count[step]] = value
                self._lt_count[step] += 1

    def batch_loss(self, x0, rng: np.random.Generator):
        import torch

        p = self._p
        t_np, pt = self._sample_t(rng, x0.shape[0])
        t = torch.as_tensor(t_np, device=self._device)
        noise = torch.randn_like(x0)
        abar = self._t["abar"][t][:, None]
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        out = self._model(x_t, t)
        mse = ((x0 if p["mean_type"] == "x0" else noise) - out).pow(2).mean(-1)
        if not p["reweight"]:
            weight, loss = torch.ones_like(mse), mse
        elif p["mean_type"] == "x0":
            weight = torch.where(t == 0, torch.ones_like(mse), self._t["snr"][(t - 1).clamp(min=0)] - self._t["snr"][t])
            loss = mse
        else:  # eps: the authors' weight, and at t = 0 the x0 likelihood term
            abar_prev = torch.as_tensor(self._sched.abar_prev, dtype=torch.float32, device=self._device)[t]
            beta = torch.as_tensor(self._sched.betas, dtype=torch.float32, device=self._device)[t]
            weight = torch.where(t == 0, torch.ones_like(mse), (1 - abar[:, 0]) / ((1 - abar_prev) ** 2 * (1 - beta)))
            x0_hat = (x_t - (1 - abar).sqrt() * out) / abar.sqrt()
            loss = torch.where(t == 0, ((x0 - x0_hat) ** 2 / 2).mean(-1), mse)
        weighted = weight * loss
        self._record_losses(t_np, weighted.detach().double().cpu().numpy())
        return (weighted / torch.as_tensor(pt, dtype=torch.float32, device=self._device)).mean()

    def _train(self, valid: RecExamples) -> None:
        import torch

        p = self._p
        model = self._model
        opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        rng = np.random.default_rng(self.seed)
        self._lt_history = np.zeros((p["steps"], p["history_num_per_term"]), dtype=np.float64)
        self._lt_count = np.zeros(p["steps"], dtype=np.int64)
        stopper = ValidationStopper(p["patience_steps"], p["tolerance_hits"])
        kept_state = None
        for epoch in range(1, p["max_epochs"] + 1):
            t0 = time.perf_counter()
            model.train()
            total, steps = 0.0, 0
            while steps < p["min_epoch_steps"]:
                order = rng.permutation(len(self._rows))
                for start in range(0, len(order), p["batch_size"]):
                    x0 = self._multi_hot([self._rows[i] for i in order[start : start + p["batch_size"]]])
                    loss = self.batch_loss(x0, rng)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item()
                    steps += 1
            self._steps_per_epoch = steps
            hits = self.validation_hits(valid)
            recall = hits / len(valid) if len(valid) else 0.0
            self._history.append(EpochLog(epoch, total / steps, recall, time.perf_counter() - t0))
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

    # -- inference --
    def denoise(self, x):
        """The authors' p_sample: from the observed vector (noised to sampling_steps if > 0), `steps` reverse
        steps of posterior means given the predicted x0; Gaussian noise added only with sampling_noise."""
        import torch

        p = self._p
        n = x.shape[0]
        if p["sampling_steps"]:
            abar = self._t["abar"][p["sampling_steps"] - 1]
            x = abar.sqrt() * x + (1 - abar).sqrt() * torch.randn_like(x)
        for i in reversed(range(p["steps"])):
            t = torch.full((n,), i, dtype=torch.long, device=x.device)
            out = self._model(x, t)
            if p["mean_type"] == "x0":
                x0_hat = out
            else:
                abar = self._t["abar"][i]
                x0_hat = (x - (1 - abar).sqrt() * out) / abar.sqrt()
            mean = self._t["coef1"][i] * x0_hat + self._t["coef2"][i] * x
            if p["sampling_noise"] and i > 0:
                x = mean + torch.exp(0.5 * self._t["post_logvar"][i]) * torch.randn_like(x)
            else:
                x = mean
        return x

    def retrieve(self, task: Task, requests: RecExamples | SearchExamples, k: int) -> list[np.ndarray]:
        if task != "rec" or not isinstance(requests, RecExamples):
            raise HarnessError(f"{self.name} serves recommendation only; asked for {task!r} (set tasks = [\"rec\"])")
        return self.rank(requests, k)

    def rank(self, requests: RecExamples, k: int) -> list[np.ndarray]:
        import torch

        self._model.eval()
        out: list[np.ndarray] = []
        step = self._p["eval_batch"]
        with torch.no_grad():
            for start in range(0, len(requests), step):
                hist = [np.unique(requests.history(i)) for i in range(start, min(start + step, len(requests)))]
                x = self._multi_hot(hist)
                scores = self.denoise(x).float()
                if self._exclude:
                    scores[x > 0] = -math.inf
                out.extend(top_k_rows(scores.cpu().numpy(), k))
        return out

    def item_embeddings(self) -> np.ndarray:
        """float32 [n_items, dims[-1]]: the output layer's weight rows (each item's score is its row . h)."""
        if getattr(self, "_model", None) is None:
            raise HarnessError(f"{self.name}: item_embeddings called before fit")
        return self._model.out_layers[-1].weight.detach().float().cpu().numpy()

    # -- checkpoint reuse in the unit's workdir --
    def _checkpoint_key(self, train: TrainView) -> str:
        facts = {"format": CHECKPOINT_FORMAT, "model": type(self).__name__, "fingerprint": train.fingerprint,
                 "params": self._p, "seed": self.seed, "n_items": self._n_items, "valid_k": self._valid_k}
        return hashlib.sha256(canonical_json(facts).encode()).hexdigest()

    def _load_checkpoint(self, key: str) -> bool:
        import torch

        path = self.workdir / CHECKPOINT
        if not path.is_file():
            return False
        try:
            saved = torch.load(path, map_location=self._device, weights_only=True)
            if saved.get("key") != key:
                return False
            self._model.load_state_dict(saved["state"])
            self._best_epoch = int(saved["best_epoch"])
            self._steps_per_epoch = saved.get("steps_per_epoch")
            self._history = [EpochLog(*row) for row in saved["history"]]
            self._stopping = saved.get("stopping")
        except (OSError, RuntimeError, KeyError, ValueError):
            return False  # unreadable or stale: train again
        return True

    def _save_checkpoint(self, key: str) -> None:
        import torch

        if not is_writing_rank():
            return  # under a multi-process launcher only rank 0 writes (the runner's rule)
        self.workdir.mkdir(parents=True, exist_ok=True)
        saved = {"key": key, "state": self._model.state_dict(), "best_epoch": self._best_epoch,
                 "steps_per_epoch": getattr(self, "_steps_per_epoch", None),
                 "history": [[h.epoch, h.loss, h.valid_recall, h.seconds] for h in self._history],
                 "stopping": self._stopping}
        with atomic_path(self.workdir / CHECKPOINT, suffix=".pt") as tmp:
            torch.save(saved, tmp)

    def describe(self) -> dict[str, Any]:
        return {
            "model": "DiffRec (Wang et al., SIGIR 2023), MLP denoiser, Gaussian diffusion over interaction vectors",
            "implementation": "harness PyTorch, after the authors' code (github.com/YiyanXu/DiffRec)",
            "params": self._p,
            "n_parameters": sum(int(t.numel()) for t in self._model.parameters()),
            "training_users": len(self._rows),
            "exclude_history": self._exclude,
            "valid_metric": f"R@{self._valid_k} on rec_valid",
            "best_epoch": self._best_epoch,  # the epoch whose weights are kept (harness.baselines.stopping)
            "stopping": self._stopping,
            "steps_per_epoch": getattr(self, "_steps_per_epoch", None),
            "epochs_run": len(self._history),
            "valid_recall_per_epoch": [round(h.valid_recall, 6) for h in self._history],
            "train_seconds": round(sum(h.seconds for h in self._history), 3),
            "reused_checkpoint": self._reused,
            "ties": "item id ascending",
        }
