"""The DeepSpeed training loop: it learns, it resumes exactly, it refuses foreign checkpoints and bad configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.generative import checkpoint as ckpt
from harness.generative import training
from harness.generative.backbones import load_backbone
from harness.generative.tokenizer import encode_sources, rec_source, target_ids

N_ITEMS = 10
STAGE2 = {"zero_optimization": {"stage": 2}, "gradient_clipping": 1.0}


class Interrupted(Exception):
    pass



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is shared: two spinning torch threads per process slow everyone down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def _ds_config(tmp_path: Path, config: dict | None = None, name: str = "deepspeed.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(STAGE2 if config is None else config))
    return path


def _toy_task(seed: int = 0):
    """A learnable toy task: "<item_a> <item_b>" -> item (a + b) mod N, on a tiny model."""
    bb = load_backbone("t5-offline-tiny", n_items=N_ITEMS, tokenizer_texts=["a b c"], seed=seed,
                       model_overrides={"d_model": 32, "d_ff": 64})
    pairs = [(a, b) for a in range(N_ITEMS) for b in range(N_ITEMS)]
    sources = encode_sources(bb.tokenizer, [rec_source(p) for p in pairs], max_length=8)
    targets = target_ids(np.array([(a + b) % N_ITEMS for a, b in pairs]), bb.items, bb.eos_token_id)
    return bb, training.Seq2SeqData(sources, targets)


def _identity(fingerprint: str = "sha256:data", tokenizer: str = "sha256:tok") -> ckpt.Identity:
    return ckpt.Identity(fingerprint, tokenizer, "sha256:setup")


def _train(tmp_path, workdir, epochs=2, identity=None, on_epoch_end=None, lr=0.01, batch=20, validate=None):
    bb, data = _toy_task()
    hp = training.Hyperparameters(epochs=epochs, learning_rate=lr, batch_size=batch, seed=0)
    return training.train(
        bb.model, data, hp=hp, deepspeed_config=_ds_config(tmp_path), checkpoint_dir=workdir / "checkpoints",
        identity=identity or _identity(), pad_token_id=bb.pad_token_id, on_epoch_end=on_epoch_end,
        validate=validate, progress=False,
    )


def test_training_through_deepspeed_reduces_the_loss(tmp_path):
    model, result = _train(tmp_path, tmp_path / "w", epochs=6)
    losses = [r["train_loss"] for r in result.curve]
    assert len(losses) == 6 and result.best_epoch == 6
    assert losses[-1] < 0.6 * losses[0], losses
    assert result.deepspeed_config["zero_optimization"]["stage"] == 2
    assert result.deepspeed_config["train_batch_size"] == 20 and result.precision == "fp32"
    assert type(model).__name__ == "T5ForConditionalGeneration" and not model.training
    assert all(r["samples_per_s"] > 0 for r in result.curve)


def test_a_checkpoint_per_epoch_and_the_best_epoch_is_kept(tmp_path):
    scores = iter([0.2, 0.9, 0.4])  # epoch 2 is the best
    seen = []

    def validate(module):
        seen.append(float(next(module.parameters()).detach().sum()))
        return {"rec": next(scores)}

    model, result = _train(tmp_path, tmp_path / "w", epochs=3, validate=validate)
    assert result.best_epoch == 2 and [r["valid"]["rec"] for r in result.curve] == [0.2, 0.9, 0.4]
    assert ckpt.complete_epochs(tmp_path / "w" / "checkpoints") == [2, 3]  # the best and the last stay
    # The returned weights are epoch 2's: what validation saw after epoch 2.
    assert float(next(model.parameters()).detach().sum()) == pytest.approx(seen[1], abs=0)


def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    reference, _ = _train(tmp_path, tmp_path / "uninterrupted", epochs=3)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        _train(tmp_path, tmp_path / "interrupted", epochs=3, on_epoch_end=stop_after_first)
    assert ckpt.complete_epochs(tmp_path / "interrupted" / "checkpoints") == [1]
    # A kill mid-save leaves a partial folder: it must be ignored.
    (tmp_path / "interrupted" / "checkpoints" / ".partial" / "epoch-0002").mkdir(parents=True)

    resumed, result = _train(tmp_path, tmp_path / "interrupted", epochs=3)
    assert result.resumed_from_epoch == 1 and [r["epoch"] for r in result.curve] == [1, 2, 3]
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_finished_training_is_not_repeated(tmp_path):
    _train(tmp_path, tmp_path / "w", epochs=1)
    _, result = _train(tmp_path, tmp_path / "w", epochs=1)
    assert result.resumed_from_epoch == 1 and len(result.curve) == 1


@pytest.mark.parametrize(
    "other",
    [_identity(fingerprint="sha256:other-data"), _identity(tokenizer="sha256:other-tok")],
    ids=["fingerprint", "tokenizer"],
)
def test_a_foreign_checkpoint_is_refused(tmp_path, other):
    _train(tmp_path, tmp_path / "w", epochs=1)
    with pytest.raises(HarnessError, match=r"checkpoint .*epoch-0001.*refusing to resume"):
        _train(tmp_path, tmp_path / "w", epochs=1, identity=other)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"zero_optimization": {"stage": 7}}, r"DeepSpeed rejected the config .*bad\.json.*stage"),
        ({"zero_optimization": {"stgae": 2}}, r"DeepSpeed rejected the config .*bad\.json.*stgae"),
        ({"train_batch_size": 64}, r"bad\.json: train_batch_size = 64 disagrees with params\.batch_size = 20"),
        ({"train_micro_batch_size_per_gpu": 3}, r"bad\.json: train_micro_batch_size_per_gpu = 3 does not divide"),
        ({"optimizer": {"type": "Adam"}}, r"bad\.json: remove 'optimizer'"),
    ],
    ids=["bad-stage", "unknown-key", "batch-mismatch", "micro-batch", "optimizer-block"],
)
def test_a_config_deepspeed_or_we_reject_names_the_file(tmp_path, config, message):
    bb, data = _toy_task()
    hp = training.Hyperparameters(epochs=1, batch_size=20)
    with pytest.raises(HarnessError, match=message):
        training.train(bb.model, data, hp=hp, deepspeed_config=_ds_config(tmp_path, config, "bad.json"),
                       checkpoint_dir=tmp_path / "c", identity=_identity(), pad_token_id=0, progress=False)


def test_config_that_is_not_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "zero_optimization": {"stage": 2},\n}\n')
    with pytest.raises(HarnessError, match=r"broken\.json: not valid JSON \(line 3"):
        training.read_deepspeed_config(path)


def test_batch_size_resolution_is_one_source_of_truth(tmp_path):
    path = tmp_path / "ds.json"
    cfg = training.resolve_deepspeed_config({"train_micro_batch_size_per_gpu": 16}, path=path, batch_size=128,
                                            world_size=2, bf16_available=False)
    assert (cfg["train_batch_size"], cfg["gradient_accumulation_steps"]) == (128, 4)
    assert cfg["zero_optimization"] == {"stage": 2} and cfg["bf16"] == {"enabled": False}
    cfg = training.resolve_deepspeed_config({}, path=path, batch_size=128, world_size=1, bf16_available=True)
    assert cfg["train_micro_batch_size_per_gpu"] == 128 and cfg["bf16"] == {"enabled": True}
    cfg = training.resolve_deepspeed_config({"bf16": {"enabled": False}}, path=path, batch_size=8, world_size=1,
                                            bf16_available=True)
    assert cfg["bf16"] == {"enabled": False}  # an explicit choice in the JSON wins


def test_a_plain_process_gets_its_distributed_variables_removed_after_training(tmp_path, monkeypatch):
    for name in training.DIST_ENV:
        monkeypatch.delenv(name, raising=False)
    _train(tmp_path, tmp_path / "w", epochs=1)
    assert not set(training.DIST_ENV) & set(os.environ)


def test_a_launchers_distributed_variables_are_left_alone(tmp_path, monkeypatch):
    launcher_env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(training._free_port())}
    for name, value in launcher_env.items():
        monkeypatch.setenv(name, value)
    _train(tmp_path, tmp_path / "w", epochs=1)
    assert {name: os.environ.get(name) for name in launcher_env} == launcher_env


class _FakeEngine:
    """What _save_epoch needs of a DeepSpeed engine: save_checkpoint writes this rank's shard."""

    def __init__(self, rank: int):
        self.rank = rank

    def save_checkpoint(self, save_dir, tag, save_latest):
        folder = Path(save_dir) / tag
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"zero_pp_rank_{self.rank}_optim_states.pt").write_text("shard")


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_0_writes_our_own_checkpoint_files(tmp_path, monkeypatch, rank):
    """DeepSpeed's save is collective (every rank writes its shard); harness.json, the rename into place and
    pruning are plain file IO and must come from rank 0 alone, each followed by a barrier."""
    barriers = []
    monkeypatch.setattr(training, "_barrier", lambda: barriers.append(1))
    root = tmp_path / "checkpoints"
    (root / "epoch-0001").mkdir(parents=True)
    (root / "epoch-0001" / ckpt.META_FILE).write_text("{}")  # an older complete checkpoint, prunable
    (root / ".partial" / "epoch-0002").mkdir(parents=True)
    (root / ".partial" / "epoch-0002" / "stale-from-a-killed-save").write_text("x")
    meta = ckpt.CheckpointMeta(_identity(), 2, [{"epoch": 1}, {"epoch": 2}], 2)
    training._save_epoch(_FakeEngine(rank), root, meta, rank, keep={2})
    assert len(barriers) == 3
    partial = root / ".partial" / "epoch-0002"
    if rank == 0:
        assert ckpt.complete_epochs(root) == [2]  # committed, epoch 1 pruned
        assert not (root / "epoch-0002" / "stale-from-a-killed-save").exists()  # cleared before the save
        assert (root / "epoch-0002" / "zero_pp_rank_0_optim_states.pt").is_file()
    else:
        assert ckpt.complete_epochs(root) == [1]  # rank 1 committed, pruned and cleared nothing
        assert (partial / "stale-from-a-killed-save").is_file()
        assert (partial / "zero_pp_rank_1_optim_states.pt").is_file()
        assert not (partial / ckpt.META_FILE).exists()


def test_each_rank_gets_its_share_of_every_global_batch():
    batch = np.arange(10)
    shares = [training.rank_micro_batches(batch, r, world_size=2, accumulation=2) for r in range(2)]
    flat = np.concatenate([m for share in shares for m in share])
    np.testing.assert_array_equal(np.sort(flat), batch)
    assert all(len(share) == 2 for share in shares)
    order = training.epoch_order(50, seed=3, epoch=2)
    np.testing.assert_array_equal(order, training.epoch_order(50, seed=3, epoch=2))
    assert not np.array_equal(order, training.epoch_order(50, seed=3, epoch=3))
    assert [len(b) for b in training.global_batches(np.arange(50), 16, min_size=4)] == [16, 16, 16]


_KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import test_t5_training as t
from harness.generative import checkpoint as ckpt

real_commit = ckpt.commit
def commit_then_die(root, meta):
    if meta.epoch == 2:  # DeepSpeed has written epoch 2 into .partial/: die before it is renamed into place
        os.kill(os.getpid(), signal.SIGKILL)
    return real_commit(root, meta)
ckpt.commit = commit_then_die
tmp = Path(sys.argv[1])
t._train(tmp, tmp / "killed", epochs=3)
"""


def test_sigkill_during_a_checkpoint_save_resumes_from_the_last_complete_one(tmp_path):
    """A real kill mid-save (not an exception): the half-written epoch is ignored, epoch 1 is resumed."""
    import os
    import subprocess
    import sys

    tests_dir = Path(__file__).resolve().parent
    # A fresh single process: not this one's rank/port (our own process group already listens on that port).
    dist_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in dist_vars}
    env["PYTHONPATH"] = str(tests_dir.parent)
    env["TORCH_EXTENSIONS_DIR"] = str(tmp_path / "torch_extensions")  # where a g++ build would land
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path), str(tests_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    root = tmp_path / "killed" / "checkpoints"
    assert ckpt.complete_epochs(root) == [1]
    assert (root / ".partial" / "epoch-0002").is_dir()  # the save in flight when it died
    # A single process builds no DeepSpeed C++ op: no shm collective op, no fused Adam (training.py).
    assert not any((tmp_path / "torch_extensions").rglob("*.so"))

    resumed, result = _train(tmp_path, tmp_path / "killed", epochs=3)
    assert result.resumed_from_epoch == 1
    reference, _ = _train(tmp_path, tmp_path / "reference", epochs=3)
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


_RANK_SCRIPT = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
import test_t5_training as t

out, epochs, stop = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def hook(record):
    if record["epoch"] == stop:
        sys.exit(3)
launcher_env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
model, result = t._train(out, out / "w", epochs=epochs, on_epoch_end=hook)
checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
kept = all(os.environ.get(k) == v for k, v in launcher_env.items())
# One file per rank: the two ranks' stdout lines interleave.
(out / f"result-rank{os.environ['RANK']}.txt").write_text(
    f"rank={os.environ['RANK']} world={result.world_size} resumed={result.resumed_from_epoch} "
    f"micro={result.deepspeed_config['train_micro_batch_size_per_gpu']} env_kept={kept} checksum={checksum!r}")
"""


@pytest.mark.slow
def test_two_ranks_under_the_deepspeed_launcher_agree_and_resume(tmp_path):
    """The multi-rank path on CPU: `deepspeed --num_gpus 2 --no_local_rank`, gloo. Both ranks end with the same
    weights, each takes half of every global batch, and a relaunch after an interruption resumes bit-exactly."""
    import shutil
    import subprocess

    launcher = shutil.which("deepspeed")
    if launcher is None:
        pytest.skip("the deepspeed launcher is not on PATH")
    script = tmp_path / "ranks.py"
    script.write_text(_RANK_SCRIPT)
    dist_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in dist_vars}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])

    def launch(out: Path, epochs: int, stop: int = 0) -> list[dict[str, str]]:
        out.mkdir(exist_ok=True)
        for old in out.glob("result-rank*.txt"):
            old.unlink()
        proc = subprocess.run(
            [launcher, "--num_gpus", "2", "--no_local_rank", "--master_port", str(training._free_port()),
             str(script), str(Path(__file__).resolve().parent), str(out), str(epochs), str(stop)],
            env=env, capture_output=True, text=True, timeout=400,
        )
        rows = [dict(kv.split("=") for kv in f.read_text().split()) for f in sorted(out.glob("result-rank*.txt"))]
        assert stop or len(rows) == 2, (proc.stdout + proc.stderr)[-3000:]
        return rows

    reference = launch(tmp_path / "uninterrupted", epochs=2)
    assert {r["world"] for r in reference} == {"2"} and {r["micro"] for r in reference} == {"10"}
    assert {r["env_kept"] for r in reference} == {"True"}  # the launcher's RANK etc. survive training
    assert reference[0]["checksum"] == reference[1]["checksum"]
    assert launch(tmp_path / "interrupted", epochs=2, stop=1) == []
    assert ckpt.complete_epochs(tmp_path / "interrupted" / "w" / "checkpoints") == [1]
    resumed = launch(tmp_path / "interrupted", epochs=2)
    assert {r["resumed"] for r in resumed} == {"1"}
    assert {r["checksum"] for r in resumed} == {reference[0]["checksum"]}


def test_each_epoch_line_says_loss_speed_validation_and_time_left():
    curve = [{"epoch": e, "train_loss": 1.0 / e, "train_s": 100.0, "valid_s": 20.0, "samples_per_s": 1234.4,
              "valid": {"rec": 0.25}} for e in (1, 2, 3)]
    # Resumed after epoch 1: only epochs 2 and 3 were timed here; 7 of 10 are left at 120 s each.
    eta = training._eta(curve, resumed_from=1, epochs=10)
    assert eta == pytest.approx(840.0)
    line = training._describe_epoch(curve[-1], 10, eta_s=eta)
    assert line == "epoch 3/10: loss 0.3333, 1234 samples/s, valid recall rec 0.250, ETA 14:00"
    assert training._clock(3 * 3600 + 5) == "3:00:05"
    assert "ETA" not in training._describe_epoch({**curve[-1], "epoch": 10}, 10, eta_s=0.0)  # the last epoch
    assert training._eta(curve[:1], resumed_from=1, epochs=10) is None  # nothing timed in this process yet
