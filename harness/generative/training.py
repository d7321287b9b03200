"""The training loop: teacher-forced cross-entropy on (input tokens -> target tokens), always through DeepSpeed ZeRO.

Read it top to bottom: (1) the distributed environment, (2) the DeepSpeed config, (3) optimizer and
schedule, (4) the data order and batches, (5) the loop with its per-epoch validation and checkpoints.

One process on a CPU (what `python -m harness run` is): RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT
are set here when unset (a free port), gloo backend, fp32; `train` removes the ones it set when it returns, so
nothing after it (the runner's rank check, a subprocess) mistakes the process for a launcher's rank. Under the
`deepspeed` launcher (several GPUs or nodes) the launcher's variables are used as given and left alone; bf16
where the GPU supports it unless the DeepSpeed JSON says otherwise. Each rank takes its share of every global
batch. Checkpoints assume a filesystem all ranks share (one node, or a shared workdir): DeepSpeed's
save_checkpoint is collective (each rank writes its own ZeRO shard), and every file we write ourselves
(harness.json, the rename into place, pruning) is written by rank 0 only, with a barrier before other ranks
read it.

One source of truth for the batch: [params].batch_size (the paper's 128) is the global batch. The DeepSpeed
JSON may leave `train_batch_size` out (it is filled in) or repeat the same value; a different value is an
error naming both. `train_micro_batch_size_per_gpu` (optional, default batch_size / world size) sets the
gradient accumulation: batch_size = micro x accumulation x world size.

The optimizer is a torch.optim.AdamW handed to DeepSpeed as a client optimizer, with the learning rate and
weight decay from [params]: DeepSpeed's own "AdamW" would compile its fused_adam C++ op with g++ on first
use (~55 s measured on the 2-core machine) for no gain at this size, so an "optimizer" block in the JSON is
refused (one source of truth again). With a single process we also skip building DeepSpeed's shared-memory
collective op (another ~45 s g++ compile, and a hard g++ dependency): with one rank there is nothing to
share, and collectives go through gloo.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.generative import checkpoint as ckpt

IGNORE_INDEX = -100  # label value cross-entropy skips (target padding)


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = 5
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 128
    lr_schedule: str = "linear"  # "linear" (decay to 0, transformers Trainer's default) | "constant"
    seed: int = 0


@dataclass
class Seq2SeqData:
    """Tokenised training examples: encoder input ids (EOS included) and target ids [n, target_len]."""

    sources: list[list[int]]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class TrainResult:
    curve: list[dict[str, Any]]
    best_epoch: int | None
    resumed_from_epoch: int | None
    deepspeed_config: dict[str, Any]
    world_size: int
    device: str
    precision: str
    optimizer: str = "torch.optim.AdamW (DeepSpeed client optimizer)"
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# ---- (1) distributed environment --------------------------------------------------------------------
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def set_missing_dist_env() -> dict[str, str]:
    """Give a plain process the variables torch.distributed reads (rank 0 of 1, a free local port).

    Returns only what it set: a launcher's variables are never touched, and `restore_dist_env` removes just these.
    """
    defaults = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    set_here = {}
    for name in DIST_ENV:
        if name not in os.environ:
            os.environ[name] = defaults[name] if name in defaults else str(_free_port())
            set_here[name] = os.environ[name]
    return set_here


def restore_dist_env(set_here: dict[str, str]) -> None:
    """Remove what `set_missing_dist_env` set (a variable changed since by someone else is left as it is)."""
    for name, value in set_here.items():
        if os.environ.get(name) == value:
            del os.environ[name]


@contextlib.contextmanager
def distributed_env():
    """The span of work that needs the distributed variables (a training; a ZeRO-3 model's forward passes and
    gathers, whose hooks read LOCAL_RANK): a plain process's missing ones are set on entry and removed on exit.

    The process group itself stays initialised (DeepSpeed initialises it once per process; ZeRO-3 models still
    need it to gather their partitioned parameters when decoding).
    """
    set_here = set_missing_dist_env()
    try:
        yield
    finally:
        restore_dist_env(set_here)


def setup_distributed() -> tuple[int, int]:
    """Initialise torch.distributed through DeepSpeed once per process; returns (rank, world size).

    Sets the variables of a plain process when unset and leaves them set; `train` wraps it in `distributed_env`.
    """
    import torch

    import deepspeed

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    set_missing_dist_env()
    if int(os.environ["WORLD_SIZE"]) == 1:
        _skip_shm_comm_op()
    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(dist_backend=None if torch.cuda.is_available() else "gloo", verbose=False)
    return deepspeed.comm.get_rank(), deepspeed.comm.get_world_size()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_shm_comm_op() -> None:
    """Single process: tell DeepSpeed its CPU shared-memory collective op is unavailable (see module doc)."""
    import deepspeed.ops

    compatible = getattr(deepspeed.ops, "__compatible_ops__", None)
    if isinstance(compatible, dict):
        compatible["deepspeed_shm_comm"] = False


def _barrier() -> None:
    import deepspeed

    deepspeed.comm.barrier()


@contextlib.contextmanager
def full_parameters(*params):
    """Read whole parameters inside this block, whatever the ZeRO stage.

    ZeRO-3 partitions every parameter across ranks (outside a forward pass a rank holds an empty tensor); this
    gathers the full tensors for reading (deepspeed.zero.GatheredParameters, modifier_rank=None: nothing is
    written back) and repartitions them on exit. Collective under ZeRO-3: every rank must enter it. For
    ZeRO-1/2 and plain modules the parameters are whole already and this does nothing.
    """
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(params), modifier_rank=None):
        yield


# ---- (2) the DeepSpeed config -----------------------------------------------------------------------
def read_deepspeed_config(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"params.deepspeed_config: cannot read {path} ({exc.strerror or exc})") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a DeepSpeed config must be a JSON object")
    return raw


def resolve_deepspeed_config(
    raw: dict[str, Any], *, path: Path, batch_size: int, world_size: int, bf16_available: bool
) -> dict[str, Any]:
    """The config handed to deepspeed.initialize: batch size from [params], ZeRO stage 2 unless set, precision."""
    for key in ("optimizer", "scheduler"):
        if key in raw:
            raise HarnessError(
                f"{path}: remove '{key}': the optimizer is torch AdamW with the learning rate, weight decay and "
                f"schedule of the submission's [params] (one source of truth; see docs/generative.md)"
            )
    cfg = json.loads(json.dumps(raw))  # a deep copy
    if "train_batch_size" in cfg and cfg["train_batch_size"] != batch_size:
        raise HarnessError(
            f"{path}: train_batch_size = {cfg['train_batch_size']!r} disagrees with params.batch_size = "
            f"{batch_size}; the global batch size comes from params.batch_size: drop train_batch_size from "
            f"the DeepSpeed config or make them equal"
        )
    micro = cfg.get("train_micro_batch_size_per_gpu")
    if micro is None:
        if batch_size % world_size:
            raise HarnessError(
                f"params.batch_size = {batch_size} is not divisible by the world size {world_size}; set "
                f"train_micro_batch_size_per_gpu in {path}"
            )
        micro = batch_size // world_size
    if not isinstance(micro, int) or micro < 1 or batch_size % (micro * world_size):
        raise HarnessError(
            f"{path}: train_micro_batch_size_per_gpu = {micro!r} does not divide params.batch_size = "
            f"{batch_size} over {world_size} rank(s)"
        )
    accumulation = batch_size // (micro * world_size)
    if cfg.get("gradient_accumulation_steps", accumulation) != accumulation:
        raise HarnessError(
            f"{path}: gradient_accumulation_steps = {cfg['gradient_accumulation_steps']!r}, but params.batch_size "
            f"= {batch_size} with micro batch {micro} on {world_size} rank(s) needs {accumulation}; leave it out"
        )
    cfg.update(train_batch_size=batch_size, train_micro_batch_size_per_gpu=micro,
               gradient_accumulation_steps=accumulation)
    cfg.setdefault("zero_optimization", {"stage": 2})
    cfg["zero_allow_untested_optimizer"] = True  # our client torch AdamW is not on DeepSpeed's tested list
    if "bf16" not in cfg and "fp16" not in cfg:
        cfg["bf16"] = {"enabled": bool(bf16_available)}
    cfg.setdefault("steps_per_print", 10**9)  # progress comes from our bar, not DeepSpeed's log
    return cfg


def check_deepspeed_accepts(cfg: dict[str, Any], path: Path) -> None:
    """Let DeepSpeed validate the config now, so a bad file fails with its message and name."""
    from deepspeed.runtime.config import DeepSpeedConfig

    try:
        DeepSpeedConfig(cfg)
    except Exception as exc:  # noqa: BLE001 - DeepSpeed raises pydantic, assertion and value errors alike
        message = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise HarnessError(f"DeepSpeed rejected the config {path}: {type(exc).__name__}: {message}") from exc


def precision_of(cfg: dict[str, Any]) -> str:
    if cfg.get("bf16", {}).get("enabled"):
        return "bf16"
    if cfg.get("fp16", {}).get("enabled"):
        return "fp16"
    return "fp32"


# ---- (3) optimizer and schedule ---------------------------------------------------------------------
def make_optimizer(model, hp: Hyperparameters):
    """AdamW; no weight decay on layer-norm scales (1-d tensors), as transformers' Trainer does."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.learning_rate)


def make_schedule(optimizer, total_steps: int, kind: str):
    import torch

    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "linear":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / max(1, total_steps)))
    raise HarnessError(f"params.lr_schedule = {kind!r}; allowed: 'linear', 'constant'")


# ---- (4) data order and batches ---------------------------------------------------------------------
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's shuffled example order; depends only on (seed, epoch), so a resumed run sees the same."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def global_batches(order: np.ndarray, batch_size: int, min_size: int) -> list[np.ndarray]:
    """Consecutive global batches; a last batch too small to give every micro-step an example is dropped."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) >= min_size]


def rank_micro_batches(batch: np.ndarray, rank: int, world_size: int, accumulation: int) -> list[np.ndarray]:
    """This rank's `accumulation` micro-batches of a global batch (equal sizes up to one example)."""
    parts = np.array_split(batch, world_size * accumulation)
    return parts[rank * accumulation : (rank + 1) * accumulation]


def collate(data: Seq2SeqData, idx: np.ndarray, pad_token_id: int, device) -> dict[str, Any]:
    """Right-padded input ids, attention mask and labels (target padding ignored by the loss)."""
    import torch

    sources = [data.sources[i] for i in idx]
    width = max(len(s) for s in sources)
    input_ids = torch.full((len(idx), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(idx), width), dtype=torch.long)
    for row, ids in enumerate(sources):
        input_ids[row, : len(ids)] = torch.as_tensor(ids)
        attention[row, : len(ids)] = 1
    labels = torch.as_tensor(data.targets[idx], dtype=torch.long)
    labels = labels.masked_fill(labels == pad_token_id, IGNORE_INDEX)  # pad is never a real target token
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device), "labels": labels.to(device)}


# ---- (5) the loop -----------------------------------------------------------------------------------
def train(
    model,
    data: Seq2SeqData,
    *,
    hp: Hyperparameters,
    deepspeed_config: Path,
    checkpoint_dir: Path,
    identity: ckpt.Identity,
    pad_token_id: int,
    validate: Callable[[Any], dict[str, float]] | None = None,
    select_best: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    keep_all_checkpoints: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, TrainResult]:
    """Train `model` on `data`; returns (the trained module holding the best epoch's weights, the result).

    `validate(module) -> {task: recall}` runs after every epoch; with `select_best` the best mean recall
    picks the weights kept, otherwise (or without validation) the last epoch's. Resumes from the newest complete
    checkpoint in `checkpoint_dir`. Under ZeRO-3 the returned module's parameters stay partitioned: read them inside
    `full_parameters(...)`.
    """
    import torch

    import deepspeed

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    with distributed_env():  # a plain process's RANK etc. are removed again when training ends
        rank, world_size = setup_distributed()
        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        raw = read_deepspeed_config(deepspeed_config)
        cfg = resolve_deepspeed_config(raw, path=deepspeed_config, batch_size=hp.batch_size,
                                       world_size=world_size, bf16_available=bf16_ok)
        check_deepspeed_accepts(cfg, deepspeed_config)
        accumulation = cfg["gradient_accumulation_steps"]

        min_batch = world_size * accumulation
        steps_per_epoch = len(global_batches(np.arange(len(data)), hp.batch_size, min_batch))
        if steps_per_epoch == 0:
            raise HarnessError(f"no training batch: {len(data)} training examples for {world_size} x {accumulation} micro-steps")
        optimizer = make_optimizer(model, hp)
        schedule = make_schedule(optimizer, steps_per_epoch * hp.epochs, hp.lr_schedule)
        torch.manual_seed(hp.seed)
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule, config=cfg)

        meta = _resume(engine, checkpoint_dir, identity, log)
        resumed_from = meta.epoch if meta else None
        curve = list(meta.curve) if meta else []
        best_epoch = meta.best_epoch if meta else None

        for epoch in range(len(curve) + 1, hp.epochs + 1):
            epoch_log = _train_one_epoch(engine, data, hp, epoch, steps_per_epoch, rank, world_size, accumulation,
                                         pad_token_id, progress)
            if validate is not None:
                t0 = time.perf_counter()
                epoch_log["valid"] = validate(engine.module)
                valid = epoch_log["valid"]
                epoch_log["valid_score"] = float(np.mean(list(valid.values()))) if valid else 0.0
                epoch_log["valid_s"] = round(time.perf_counter() - t0, 3)
                engine.train()
            curve.append(epoch_log)
            best_epoch = _best_epoch(curve) if select_best else epoch
            _save_epoch(engine, checkpoint_dir, ckpt.CheckpointMeta(identity, epoch, curve, best_epoch), rank,
                        keep=None if keep_all_checkpoints else {best_epoch})
            if rank == 0:
                log(_describe_epoch(epoch_log, hp.epochs, eta_s=_eta(curve, resumed_from or 0, hp.epochs)))
            if on_epoch_end is not None:
                on_epoch_end(epoch_log)

        if best_epoch is not None and best_epoch != len(curve):
            _load_weights_only(engine, checkpoint_dir, best_epoch, identity)
        engine.eval()
        result = TrainResult(
            curve=curve,
            best_epoch=best_epoch,
            resumed_from_epoch=resumed_from,
            deepspeed_config=cfg,
            world_size=world_size,
            device=str(engine.device),
            precision=precision_of(cfg),
            steps=steps_per_epoch * len(curve),
        )
        return engine.module, result


def _train_one_epoch(engine, data, hp, epoch, steps_per_epoch, rank, world_size, accumulation, pad_id, progress):
    import torch
    from tqdm import tqdm

    torch.manual_seed(hp.seed * 100_003 + epoch)  # dropout: the same per epoch whether resumed or not
    engine.train()
    batches = global_batches(epoch_order(len(data), hp.seed, epoch), hp.batch_size, world_size * accumulation)
    # disable=None: tqdm shows the bar only on a terminal, so logs are not flooded.
    bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{hp.epochs}",
               disable=True if (not progress or rank != 0) else None, leave=False, file=sys.stderr, mininterval=1.0)
    losses, seen, t0 = [], 0, time.perf_counter()
    for batch in batches:
        for micro in rank_micro_batches(batch, rank, world_size, accumulation):
            loss = engine(**collate(data, micro, pad_id, engine.device)).loss
            engine.backward(loss)
            engine.step()
            losses.append(float(loss.detach()))
        seen += len(batch)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-accumulation * 20:]):.4f}",
                        samples_s=f"{seen / (time.perf_counter() - t0):.0f}")
    bar.close()
    train_s = time.perf_counter() - t0
    return {
        "epoch": epoch,
        "train_loss": float(np.mean(losses)),
        "train_s": round(train_s, 3),
        "samples_per_s": round(seen / train_s, 1),
    }


def _best_epoch(curve: Sequence[dict[str, Any]]) -> int:
    """The epoch with the best validation score (earliest on ties); the last one without validation."""
    if not curve or "valid_score" not in curve[-1]:
        return len(curve)
    scores = [r["valid_score"] for r in curve]
    return int(np.argmax(scores)) + 1


def _describe_epoch(epoch_log: dict[str, Any], epochs: int, eta_s: float | None = None) -> str:
    valid = ", ".join(f"{t} {v:.3f}" for t, v in epoch_log.get("valid", {}).items())
    eta = f", ETA {_clock(eta_s)}" if eta_s is not None and epoch_log["epoch"] < epochs else ""
    return (f"epoch {epoch_log['epoch']}/{epochs}: loss {epoch_log['train_loss']:.4f}, "
            f"{epoch_log['samples_per_s']:.0f} samples/s" + (f", valid recall {valid}" if valid else "") + eta)


def _eta(curve: Sequence[dict[str, Any]], resumed_from: int, epochs: int) -> float | None:
    """Seconds left: the mean time (training + validation) of the epochs this process ran, times those left."""
    ran = curve[resumed_from:]
    if not ran:
        return None
    per_epoch = float(np.mean([r["train_s"] + r.get("valid_s", 0.0) for r in ran]))
    return per_epoch * (epochs - len(curve))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _resume(engine, root: Path, identity: ckpt.Identity, log) -> ckpt.CheckpointMeta | None:
    epochs = ckpt.complete_epochs(root)
    if not epochs:
        return None
    meta = ckpt.read_meta(root, epochs[-1])
    ckpt.check_identity(meta, identity, root / ckpt.epoch_tag(epochs[-1]) / ckpt.META_FILE)
    path, _ = engine.load_checkpoint(str(root), tag=ckpt.epoch_tag(meta.epoch))
    if path is None:
        raise HarnessError(f"checkpoint {root / ckpt.epoch_tag(meta.epoch)}: DeepSpeed could not load it; delete it")
    log(f"resumed from the checkpoint of epoch {meta.epoch} in {root}")
    return meta


def _save_epoch(engine, root: Path, meta: ckpt.CheckpointMeta, rank: int, keep: set[int] | None) -> None:
    if rank == 0:
        ckpt.clear_partial(root, meta.epoch)
    _barrier()
    engine.save_checkpoint(str(ckpt.partial_dir(root)), tag=ckpt.epoch_tag(meta.epoch), save_latest=False)
    _barrier()
    if rank == 0:
        ckpt.commit(root, meta)
        if keep is not None:
            ckpt.prune(root, keep)
    _barrier()


def _load_weights_only(engine, root: Path, epoch: int, identity: ckpt.Identity) -> None:
    meta = ckpt.read_meta(root, epoch)
    ckpt.check_identity(meta, identity, root / ckpt.epoch_tag(epoch) / ckpt.META_FILE)
    path, _ = engine.load_checkpoint(str(root), tag=ckpt.epoch_tag(epoch), load_module_only=True,
                                     load_optimizer_states=False, load_lr_scheduler_states=False)
    if path is None:
        raise HarnessError(f"checkpoint {root / ckpt.epoch_tag(epoch)}: DeepSpeed could not load the best epoch's weights")
